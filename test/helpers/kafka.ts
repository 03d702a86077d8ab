// A real Apache Kafka 4.x broker as a test peer (../shared/TESTING.md): one
// JVM in combined KRaft mode (broker and controller, node 1) on free
// 127.0.0.1 ports, a fresh temp dir for its data, config and log. The jars
// come from test/kafka/pom.xml via scripts/install-kafka (Maven Central,
// cached in .cache/). The handle can stop and restart the same broker on the
// same ports and data (upstream outages) and freeze it with SIGSTOP (a peer
// that accepts connections but never answers). Only this module's own child
// process is ever signalled, by its pid.

import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { closeSync, openSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Admin } from '@platformatic/kafka'
import { REPO_ROOT } from './child.ts'
import { freePort } from './free-port.ts'
import { tempDir } from './temp-dir.ts'
import type { TestCerts } from './test-certs.ts'

const execFileAsync = promisify(execFile)

/** Bounds on the broker's life cycle; generous, because two cores are shared. */
const DEFAULT_START_TIMEOUT_MS = 90_000
const DEFAULT_STOP_TIMEOUT_MS = 20_000
const PROBE_INTERVAL_MS = 200

/**
 * Small heap, serial GC and C1 only: the broker starts in about 2 s instead
 * of 4 and stays under 512 MB. Throughput is not what these tests measure.
 */
const JVM_FLAGS: readonly string[] = [
  '-Xms64m',
  '-Xmx384m',
  '-XX:+UseSerialGC',
  '-XX:TieredStopAtLevel=1',
  '-XX:-UsePerfData',
  '-Xshare:auto',
  '-Djava.awt.headless=true',
  '-Djava.net.preferIPv4Stack=true',
]

/** A second listener that authenticates with SASL (PLAIN and SCRAM-SHA-256) for these users. */
export interface SaslUsers {
  readonly [username: string]: string
}

export interface KafkaOptions {
  /** Adds a SASL_PLAINTEXT listener (KafkaBroker.saslBootstrap) where these users log in. */
  readonly sasl?: SaslUsers
  /** Adds an SSL listener (KafkaBroker.tlsBootstrap) with this server certificate, requiring a client certificate. */
  readonly tls?: TestCerts
  /** Extra or overriding server.properties entries. */
  readonly properties?: Readonly<Record<string, string | number | boolean>>
  readonly startTimeoutMs?: number
}

export interface KafkaBroker {
  /** `127.0.0.1:PORT`, the plaintext listener clients use. */
  readonly bootstrap: string
  /** `127.0.0.1:PORT` of the SASL listener, when `sasl` users were given. */
  readonly saslBootstrap: string | null
  /** `127.0.0.1:PORT` of the SSL listener, when `tls` was given. */
  readonly tlsBootstrap: string | null
  readonly port: number
  readonly controllerPort: number
  /** The broker's log4j2 file (server, controller, request errors). */
  readonly logFile: string
  readonly dataDir: string
  /** PID of the running JVM, undefined while halted. */
  readonly pid: number | undefined
  /** Milliseconds the last (re)start took from spawn to a client seeing the broker. */
  readonly lastStartMs: number
  /** Stops the JVM (SIGTERM, SIGKILL after a bound) and keeps ports and data for restart(). */
  halt(options?: { signal?: 'SIGTERM' | 'SIGKILL' }): Promise<void>
  /** Starts the JVM again on the same ports and data; resolves when a client can reach it. */
  restart(): Promise<void>
  /** SIGSTOP: the kernel still accepts connections, the broker never answers. */
  pause(): void
  /** SIGCONT after pause(). */
  resume(): void
  /** Stops the JVM and removes the temp dir. Idempotent. */
  stop(): Promise<void>
  /** The last lines of the broker's log, for failure messages. */
  logTail(lines?: number): Promise<string>
}

/** The Kafka version test/kafka/pom.xml names: the one place it is set. */
export async function kafkaVersion(): Promise<string> {
  const pom = await readFile(join(REPO_ROOT, 'test', 'kafka', 'pom.xml'), 'utf8')
  const version = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(pom)?.[1]
  if (version === undefined) throw new Error('test/kafka/pom.xml names no <kafka.version>')
  return version
}

/** The broker's jars: runs scripts/install-kafka, which returns at once when they are cached. */
export async function kafkaLibs(): Promise<string> {
  try {
    const { stdout } = await execFileAsync(join(REPO_ROOT, 'scripts', 'install-kafka'), [], {
      cwd: REPO_ROOT,
      timeout: 600_000,
    })
    return stdout.trim()
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? ''
    throw new Error(`scripts/install-kafka failed: ${stderr.trim() || String(err)}`, { cause: err })
  }
}

/** Listener properties for PLAINTEXT (always) and the SASL and SSL listeners that are on. */
function listenerProperties(
  plaintextPort: number,
  controllerPort: number,
  extra: ReadonlyArray<{ name: 'SASL_PLAINTEXT' | 'SSL'; port: number }>,
) {
  const client = [{ name: 'PLAINTEXT', port: plaintextPort }, ...extra]
  const url = (l: { name: string; port: number }): string => `${l.name}://127.0.0.1:${l.port}`
  return {
    listeners: [...client.map(url), `CONTROLLER://127.0.0.1:${controllerPort}`].join(','),
    'advertised.listeners': client.map(url).join(','),
    'listener.security.protocol.map': [
      ...client.map((l) => `${l.name}:${l.name}`),
      'CONTROLLER:PLAINTEXT',
    ].join(','),
  }
}

/** The SSL listener's settings (PEM files; a client certificate is required). */
function tlsProperties(certs: TestCerts, dir: string) {
  return {
    'ssl.keystore.type': 'PEM',
    'ssl.keystore.location': join(dir, 'server-keystore.pem'),
    'ssl.truststore.type': 'PEM',
    'ssl.truststore.location': certs.ca,
    'ssl.client.auth': 'required',
    'ssl.endpoint.identification.algorithm': '',
  }
}

/** The SASL_PLAINTEXT listener's settings: PLAIN and SCRAM-SHA-256 logins for `users`. */
function saslProperties(users: SaslUsers) {
  const plainUsers = Object.entries(users)
    .map(([name, password]) => `user_${name}="${password}"`)
    .join(' ')
  return {
    'sasl.enabled.mechanisms': 'PLAIN,SCRAM-SHA-256',
    'listener.name.sasl_plaintext.plain.sasl.jaas.config': `org.apache.kafka.common.security.plain.PlainLoginModule required ${plainUsers};`,
    'listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config':
      'org.apache.kafka.common.security.scram.ScramLoginModule required;',
  }
}

function serverProperties(
  dataDir: string,
  port: number,
  controllerPort: number,
  extra: KafkaOptions['properties'],
): string {
  const props: Record<string, string | number | boolean> = {
    'process.roles': 'broker,controller',
    'node.id': 1,
    // A static voter set: one controller, this process. Formatted without
    // --standalone, which belongs to the dynamic-quorum alternative.
    'controller.quorum.voters': `1@127.0.0.1:${controllerPort}`,
    listeners: `PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    'advertised.listeners': `PLAINTEXT://127.0.0.1:${port}`,
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': 'PLAINTEXT',
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'log.dirs': join(dataDir, 'kraft-logs'),
    // The sink creates its topics explicitly; a topic that appears by itself
    // would hide a missing createTopics.
    'auto.create.topics.enable': false,
    'num.partitions': 1,
    'default.replication.factor': 1,
    'min.insync.replicas': 1,
    // One node: every internal topic has one replica, and one partition so
    // the first transaction or group does not wait for 50 partitions.
    'offsets.topic.replication.factor': 1,
    'offsets.topic.num.partitions': 1,
    'transaction.state.log.replication.factor': 1,
    'transaction.state.log.min.isr': 1,
    'transaction.state.log.num.partitions': 1,
    'share.coordinator.state.topic.replication.factor': 1,
    'share.coordinator.state.topic.min.isr': 1,
    'group.initial.rebalance.delay.ms': 0,
    // After a SIGKILL the controller refuses the restarted broker
    // (DUPLICATE_BROKER_REGISTRATION) until the old session times out:
    // 9 s by default, which made a restart take 11 s.
    'broker.session.timeout.ms': 3000,
    'broker.heartbeat.interval.ms': 500,
    // Abort expired transactions within a second of their timeout, not up
    // to 10 s later, so transaction-timeout tests wait seconds, not tens.
    'transaction.abort.timed.out.transaction.cleanup.interval.ms': 1000,
    // Fewer threads on a shared two-core machine.
    'num.network.threads': 2,
    'num.io.threads': 2,
    'background.threads': 2,
    'num.recovery.threads.per.data.dir': 1,
    'log.cleaner.threads': 1,
    ...extra,
  }
  return `${Object.entries(props)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n')}\n`
}

function log4jProperties(logFile: string): string {
  return [
    'status = warn',
    'appender.file.type = File',
    'appender.file.name = file',
    `appender.file.fileName = ${logFile}`,
    'appender.file.append = true',
    'appender.file.layout.type = PatternLayout',
    'appender.file.layout.pattern = [%d] %p %m (%c)%n',
    'rootLogger.level = info',
    'rootLogger.appenderRef.file.ref = file',
    // The request log and the state change log are noise at INFO.
    'logger.request.name = kafka.request.logger',
    'logger.request.level = warn',
    'logger.state.name = state.change.logger',
    'logger.state.level = warn',
    '',
  ].join('\n')
}

async function tail(path: string, lines: number): Promise<string> {
  try {
    return (await readFile(path, 'utf8'))
      .split('\n')
      .slice(-lines - 1)
      .join('\n')
  } catch {
    return `(no ${path})`
  }
}

/** Waits until an admin client sees node 1 in the cluster metadata, or the JVM exits, or time runs out. */
async function waitReachable(
  bootstrap: string,
  child: ChildProcess,
  deadline: number,
  describe: () => Promise<string>,
): Promise<void> {
  let exited: string | undefined
  const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
    exited = `exited with ${signal ?? `code ${code}`}`
  }
  child.once('exit', onExit)
  let lastError: unknown
  try {
    while (Date.now() < deadline) {
      if (exited !== undefined)
        throw new Error(`Kafka ${exited} before it was reachable\n${await describe()}`)
      const admin = new Admin({
        clientId: 'tributary-test-probe',
        bootstrapBrokers: [bootstrap],
        connectTimeout: 1_000,
        requestTimeout: 2_000,
        retries: 0,
      })
      try {
        const metadata = await admin.metadata({ topics: [] })
        if (metadata.brokers.has(1)) return
      } catch (err) {
        lastError = err
      } finally {
        await admin.close().catch(() => {})
      }
      await new Promise((resolve) => setTimeout(resolve, PROBE_INTERVAL_MS))
    }
    throw new Error(
      `Kafka at ${bootstrap} not reachable within the start bound (last error: ${String(lastError)})\n${await describe()}`,
    )
  } finally {
    child.off('exit', onExit)
  }
}

/**
 * A `sh` that SIGKILLs the JVM when its stdin, a pipe from this process,
 * reaches EOF: when this process dies however it dies (a SIGKILLed or
 * timed-out test runner runs no exit hook), the kernel closes the pipe and
 * the broker goes with it instead of living on as an orphan. A normal stop
 * kills the watchdog first. Unref'd, so it keeps no process alive.
 */
function startWatchdog(javaPid: number): ChildProcess {
  const watchdog = spawn(
    'sh',
    ['-c', 'read -r _; kill -KILL "$1" 2>/dev/null', 'kafka-watchdog', String(javaPid)],
    {
      stdio: ['pipe', 'ignore', 'ignore'],
    },
  )
  watchdog.once('error', () => {})
  watchdog.unref()
  ;(watchdog.stdin as { unref?: () => void } | null)?.unref?.()
  return watchdog
}

/**
 * Formats a fresh KRaft log dir and starts a single-node Kafka on free
 * 127.0.0.1 ports; resolves once a client sees the broker in the metadata.
 * Call stop() in teardown (it also runs if the test process exits).
 */
export async function startKafka(options: KafkaOptions = {}): Promise<KafkaBroker> {
  const [libs, dir] = await Promise.all([kafkaLibs(), tempDir('tributary-kafka-')])
  const classpath = join(libs, '*')
  // The kernel may hand the same free port out twice in a row: draw until they differ.
  const taken = new Set<number>()
  const distinctPort = async (): Promise<number> => {
    for (;;) {
      const candidate = await freePort()
      if (taken.has(candidate)) continue
      taken.add(candidate)
      return candidate
    }
  }
  const port = await distinctPort()
  const controllerPort = await distinctPort()
  const bootstrap = `127.0.0.1:${port}`
  const saslPort = options.sasl === undefined ? null : await distinctPort()
  const tlsPort = options.tls === undefined ? null : await distinctPort()
  if (options.tls !== undefined) {
    // Kafka's PEM keystore: the unencrypted PKCS#8 key and the certificate in one file.
    const key = execFileSync('openssl', ['pkcs8', '-topk8', '-nocrypt', '-in', options.tls.serverKey])
    await writeFile(
      join(dir.path, 'server-keystore.pem'),
      Buffer.concat([key, await readFile(options.tls.serverCert)]),
    )
  }
  const extraListeners = [
    ...(saslPort === null ? [] : [{ name: 'SASL_PLAINTEXT' as const, port: saslPort }]),
    ...(tlsPort === null ? [] : [{ name: 'SSL' as const, port: tlsPort }]),
  ]
  const properties = {
    ...(extraListeners.length === 0 ? {} : listenerProperties(port, controllerPort, extraListeners)),
    ...(options.sasl === undefined ? {} : saslProperties(options.sasl)),
    ...(options.tls === undefined ? {} : tlsProperties(options.tls, dir.path)),
    ...options.properties,
  }
  // SCRAM credentials live in the cluster metadata: the format step writes them.
  const scram = Object.entries(options.sasl ?? {}).flatMap(([name, password]) => [
    '--add-scram',
    `SCRAM-SHA-256=[name=${name},password=${password}]`,
  ])
  const configFile = join(dir.path, 'server.properties')
  const log4jFile = join(dir.path, 'log4j2.properties')
  const logFile = join(dir.path, 'kafka.log')
  const stdoutFile = join(dir.path, 'kafka.stdout')
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS
  await writeFile(configFile, serverProperties(dir.path, port, controllerPort, properties))
  await writeFile(log4jFile, log4jProperties(logFile))
  const java = [...JVM_FLAGS, `-Dlog4j2.configurationFile=${log4jFile}`, '-cp', classpath]

  const describe = async (): Promise<string> =>
    `--- ${logFile} (tail) ---\n${await tail(logFile, 40)}\n--- ${stdoutFile} (tail) ---\n${await tail(stdoutFile, 20)}`

  // A Kafka cluster id is a UUID in URL-safe base64 without padding.
  // One in 64 ids starts with "-", which the tool's argparse takes for an option
  // ("argument --cluster-id/-t: expected one argument"): draw again.
  let clusterId = randomBytes(16).toString('base64url')
  while (clusterId.startsWith('-')) clusterId = randomBytes(16).toString('base64url')
  try {
    await execFileAsync(
      'java',
      [...java, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', configFile, ...scram],
      {
        timeout: startTimeoutMs,
      },
    )
  } catch (err) {
    await dir.remove()
    const out = err as { stdout?: string; stderr?: string }
    throw new Error(`kafka-storage format failed: ${out.stderr ?? ''}${out.stdout ?? ''}`, { cause: err })
  }

  let child: ChildProcess | undefined
  let watchdog: ChildProcess | undefined
  let paused = false
  let stopped = false
  let lastStartMs = 0
  const running = (): boolean => child !== undefined && child.exitCode === null && child.signalCode === null
  const stopWatchdog = (): void => {
    if (watchdog?.pid !== undefined && watchdog.exitCode === null && watchdog.signalCode === null) {
      process.kill(watchdog.pid, 'SIGKILL')
    }
    watchdog = undefined
  }
  // If the test process exits without teardown, the JVM must not outlive it.
  const killOnExit = (): void => {
    stopWatchdog()
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
  process.once('exit', killOnExit)

  const launch = async (): Promise<void> => {
    const started = Date.now()
    const out = openSync(stdoutFile, 'a')
    try {
      child = spawn('java', [...java, 'kafka.Kafka', configFile], {
        cwd: dir.path,
        stdio: ['ignore', out, out],
      })
    } finally {
      closeSync(out)
    }
    const spawned = child
    // The spawn error (java missing) is reported through the exit wait below.
    spawned.once('error', () => {})
    if (spawned.pid !== undefined) watchdog = startWatchdog(spawned.pid)
    await waitReachable(bootstrap, spawned, started + startTimeoutMs, describe)
    lastStartMs = Date.now() - started
  }

  const halt = async (opts: { signal?: 'SIGTERM' | 'SIGKILL' } = {}): Promise<void> => {
    stopWatchdog()
    const jvm = child
    if (jvm?.pid === undefined || jvm.exitCode !== null || jvm.signalCode !== null) {
      child = undefined
      return
    }
    const exited = once(jvm, 'exit')
    if (paused) {
      process.kill(jvm.pid, 'SIGCONT')
      paused = false
    }
    process.kill(jvm.pid, opts.signal ?? 'SIGTERM')
    const timer = setTimeout(() => {
      if (jvm.pid !== undefined && jvm.exitCode === null) process.kill(jvm.pid, 'SIGKILL')
    }, DEFAULT_STOP_TIMEOUT_MS)
    try {
      await exited
    } finally {
      clearTimeout(timer)
      child = undefined
    }
  }

  const broker: KafkaBroker = {
    bootstrap,
    saslBootstrap: saslPort === null ? null : `127.0.0.1:${saslPort}`,
    tlsBootstrap: tlsPort === null ? null : `127.0.0.1:${tlsPort}`,
    port,
    controllerPort,
    logFile,
    dataDir: dir.path,
    get pid() {
      return child?.pid
    },
    get lastStartMs() {
      return lastStartMs
    },
    halt,
    async restart() {
      if (stopped) throw new Error('restart() after stop()')
      if (running()) throw new Error('restart() while the broker runs; halt() it first')
      await launch()
    },
    pause() {
      if (!running() || child?.pid === undefined) throw new Error('pause() while the broker is halted')
      process.kill(child.pid, 'SIGSTOP')
      paused = true
    },
    resume() {
      if (!running() || child?.pid === undefined) throw new Error('resume() while the broker is halted')
      process.kill(child.pid, 'SIGCONT')
      paused = false
    },
    async stop() {
      if (stopped) return
      stopped = true
      try {
        await halt()
      } finally {
        process.off('exit', killOnExit)
        await dir.remove()
      }
    },
    logTail: (lines = 40) => tail(logFile, lines),
  }

  try {
    await launch()
  } catch (err) {
    await broker.stop().catch(() => {})
    throw err
  }
  return broker
}
