// The systems under test, each started on free loopback ports with a fresh
// temp data dir and stopped by pid: the ack-only server (the generator's
// ceiling), Mosquitto (Debian package, persistence on), nats-server (MQTT
// listener on JetStream) and tributary in `durable` and `relaxed` ack mode.
// Optionally under strace with a delay injected into every sync syscall (an
// SD card's fsync); the process measured is then the broker, not strace.

import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { createInterface } from 'node:readline'
import { BROKER_NODE_FLAGS, CLI, REPO_ROOT } from '../helpers/child.ts'
import { freePort } from '../helpers/free-port.ts'
import { LOOPBACK, waitForConnack } from './mqtt-conn.ts'
import { childrenOf, executableName } from './proc-metrics.ts'
import { makeTempDir, removeTempDir, sleep, stopChild, track, trackPid, withDeadline } from './procs.ts'

export const SYSTEMS = ['ack-server', 'mosquitto', 'nats', 'tributary-durable', 'tributary-relaxed'] as const
export type SystemName = (typeof SYSTEMS)[number]

/** strace arguments that delay every sync syscall by `delayUs` (the SD-card condition). */
export function slowSyncWrapper(delayUs: number, logFile: string): string[] {
  const syncs = 'fsync,fdatasync,msync,sync_file_range'
  return [
    'strace',
    '-f',
    '--seccomp-bpf',
    '-e',
    `trace=${syncs}`,
    '-e',
    `inject=${syncs}:delay_exit=${delayUs}`,
    '-o',
    logFile,
  ]
}

export type TributaryEntry = 'src' | 'dist'

/** The CLI entry point: dist/ is what bin/tributary runs; src/ runs through Node's type stripping. */
export const TRIBUTARY_ENTRIES: Record<TributaryEntry, string> = {
  src: CLI,
  dist: join(REPO_ROOT, 'dist', 'cli', 'main.js'),
}

/** Newest modification time of the files under `dir`, ms. */
function newestMtimeMs(dir: string): number {
  let newest = statSync(dir).mtimeMs
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs)
  }
  return newest
}

/** dist/ was built (scripts/setup stamps it) after the last change under src/. */
export function distIsFresh(): boolean {
  const stamp = join(REPO_ROOT, 'dist', '.tributary-build-stamp')
  if (!existsSync(stamp) || !existsSync(TRIBUTARY_ENTRIES.dist)) return false
  return statSync(stamp).mtimeMs >= newestMtimeMs(join(REPO_ROOT, 'src'))
}

export interface StartOptions {
  /** Delay every sync syscall by this many microseconds (strace), or null. */
  readonly syncDelayUs: number | null
  /** Which build of tributary to run (default dist). */
  readonly tributaryEntry?: TributaryEntry
  /** Start-up deadline. */
  readonly timeoutMs: number
  /** tributary only: serve the admin API on a loopback port, for the /healthz probe. */
  readonly adminApi?: boolean
}

export interface StartedSystem {
  readonly name: SystemName
  readonly port: number
  /** The process measured: the broker itself, also when strace started it. */
  readonly pid: number
  readonly dataDir: string
  /** How the system is configured, in words, for the report. */
  readonly description: string
  /** Warnings and errors the system logged (at most 50). */
  problems(): string[]
  /** Sync syscalls seen so far (only under strace). */
  syncCount(): number | null
  /** The admin API's /healthz, when the system serves one for this run. */
  readonly healthUrl: string | null
  stop(): Promise<void>
}

const MAX_PROBLEMS = 50

function problemList(): { add: (line: string) => void; list: string[] } {
  const list: string[] = []
  return {
    list,
    add: (line) => {
      if (list.length < MAX_PROBLEMS) list.push(line.slice(0, 400))
    },
  }
}

function countSyncs(logFile: string): number {
  try {
    const text = readFileSync(logFile, 'utf8')
    let n = 0
    for (const line of text.split('\n')) {
      if (line.includes('resumed>')) continue
      if (/\b(fsync|fdatasync|msync|sync_file_range)\(/.test(line)) n++
    }
    return n
  } catch {
    return 0
  }
}

/** The environment without TRIBUTARY_* settings, so ambient config never reaches a child. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('TRIBUTARY_')))
}

function launch(command: readonly string[], options: StartOptions, dir: string): ChildProcess {
  const full =
    options.syncDelayUs === null
      ? command
      : [...slowSyncWrapper(options.syncDelayUs, join(dir, 'strace.log')), ...command]
  const [program, ...args] = full
  if (program === undefined) throw new Error('empty command')
  return track(spawn(program, args, { cwd: REPO_ROOT, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] }))
}

/** The broker's pid: the child itself, or the process strace started. */
async function measuredPid(
  child: ChildProcess,
  underStrace: boolean,
  expectedProgram: string,
): Promise<number> {
  const pid = child.pid
  if (pid === undefined) throw new Error('child has no pid')
  if (!underStrace) return pid
  for (let i = 0; i < 200; i++) {
    const found = childrenOf(pid).find((c) => executableName(c) === expectedProgram)
    if (found !== undefined) {
      trackPid(found)
      return found
    }
    await sleep(25)
  }
  throw new Error(`no ${expectedProgram} process under strace (pid ${pid})`)
}

function onLines(child: ChildProcess, each: (line: string, stream: 'stdout' | 'stderr') => void): void {
  if (child.stdout !== null) createInterface({ input: child.stdout }).on('line', (l) => each(l, 'stdout'))
  if (child.stderr !== null) createInterface({ input: child.stderr }).on('line', (l) => each(l, 'stderr'))
}

function exitedEarly(child: ChildProcess): Promise<never> {
  return new Promise((_, reject) => {
    child.once('exit', (code, sig) =>
      reject(new Error(`exited (code ${code}, signal ${sig}) while starting`)),
    )
  })
}

async function started(
  name: SystemName,
  child: ChildProcess,
  ready: Promise<number>,
  options: StartOptions,
  dir: string,
  expectedProgram: string,
  description: string,
  problems: { list: string[] },
  stopSignal: NodeJS.Signals,
  healthUrl: string | null = null,
): Promise<StartedSystem> {
  let port: number
  let pid: number
  try {
    port = await Promise.race([ready, exitedEarly(child)])
    pid = await measuredPid(child, options.syncDelayUs !== null, expectedProgram)
  } catch (err) {
    if (child.pid !== undefined) await stopChild(child, child.pid, 'SIGKILL', 5000)
    removeTempDir(dir)
    throw new Error(`${name}: ${err instanceof Error ? err.message : String(err)}`)
  }
  const straceLog = join(dir, 'strace.log')
  let stopped: Promise<void> | null = null
  return {
    name,
    port,
    pid,
    dataDir: dir,
    description,
    problems: () => [...problems.list],
    syncCount: () => (options.syncDelayUs === null ? null : countSyncs(straceLog)),
    healthUrl,
    stop: () => {
      stopped ??= stopChild(child, pid, stopSignal, 15_000).finally(() => removeTempDir(dir))
      return stopped
    },
  }
}

async function startAckServer(options: StartOptions): Promise<StartedSystem> {
  const dir = makeTempDir('ack')
  const child = launch(
    [process.execPath, join(import.meta.dirname, 'ack-server.ts'), '--max-seconds', '1800'],
    options,
    dir,
  )
  const problems = problemList()
  const ready = new Promise<number>((resolve) => {
    onLines(child, (line, stream) => {
      if (stream === 'stderr') problems.add(line)
      else if (line.startsWith('{')) resolve((JSON.parse(line) as { port: number }).port)
    })
  })
  return started(
    'ack-server',
    child,
    withDeadline(ready, options.timeoutMs, 'ack-server start'),
    options,
    dir,
    basename(process.execPath),
    'answers every packet at once, stores nothing',
    problems,
    'SIGTERM',
  )
}

async function startMosquitto(options: StartOptions): Promise<StartedSystem> {
  const dir = makeTempDir('mosquitto')
  const port = await freePort()
  const conf = join(dir, 'mosquitto.conf')
  const lines = [
    `listener ${port} ${LOOPBACK}`,
    'allow_anonymous true',
    'persistence true',
    `persistence_location ${dir}/`,
    'autosave_interval 1800',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'connection_messages false',
  ]
  // Started as root, Mosquitto would switch to the `mosquitto` user, which cannot write the temp dir.
  if (process.getuid?.() === 0) lines.push('user root')
  writeFileSync(conf, `${lines.join('\n')}\n`)
  const child = launch(['mosquitto', '-c', conf], options, dir)
  const problems = problemList()
  onLines(child, (line) => {
    // Our own choice (`user root` above), not a problem of the run.
    if (!line.includes('should not be run as root')) problems.add(line)
  })
  const ready = waitForConnack(port, 'bench-ready', options.timeoutMs, 20).then(() => port)
  return started(
    'mosquitto',
    child,
    ready,
    options,
    dir,
    'mosquitto',
    'persistence true, autosave_interval 1800 s (in-memory; a snapshot every 30 min and at shutdown), no fsync per message; default set_tcp_nodelay false, max_inflight_messages 20, max_queued_messages 1000',
    problems,
    'SIGTERM',
  )
}

async function startNats(options: StartOptions): Promise<StartedSystem> {
  const dir = makeTempDir('nats')
  const [clientPort, mqttPort] = [await freePort(), await freePort()]
  const conf = join(dir, 'nats.conf')
  writeFileSync(
    conf,
    [
      'server_name: "tributary-bench"',
      `listen: "${LOOPBACK}:${clientPort}"`,
      `jetstream { store_dir: "${join(dir, 'js')}" }`,
      `mqtt { listen: "${LOOPBACK}:${mqttPort}" }`,
      '',
    ].join('\n'),
  )
  const child = launch(['nats-server', '-c', conf], options, dir)
  const problems = problemList()
  onLines(child, (line) => {
    if (line.includes('[ERR]') || line.includes('[WRN]') || line.includes('[FTL]')) problems.add(line)
  })
  const ready = waitForConnack(mqttPort, 'bench-ready', options.timeoutMs, 50).then(() => mqttPort)
  return started(
    'nats',
    child,
    ready,
    options,
    dir,
    'nats-server',
    'MQTT on JetStream (file store, default sync_interval 2 min: no fsync per message)',
    problems,
    'SIGTERM',
  )
}

export interface TributaryOptions {
  readonly ack: 'durable' | 'relaxed'
  /** Keep every record (no retention), e.g. for the restart test. */
  readonly noRetention?: boolean
  /** Serve the admin API on this loopback port (default: no admin API). */
  readonly httpPort?: number
}

/** Writes tributary's config file for a run: the default stream with the given ack mode. */
export function tributaryConfig(dir: string, options: TributaryOptions): string {
  const file = join(dir, 'tributary.yaml')
  const retention = options.noRetention === true ? '\n    retention: { maxAgeMs: null, maxBytes: null }' : ''
  // No admin API unless asked for: the benchmark measures the broker alone.
  const http =
    options.httpPort === undefined ? 'port: null' : `host: ${LOOPBACK}\n  port: ${options.httpPort}`
  writeFileSync(file, `http:\n  ${http}\nstreams:\n  - name: default\n    ack: ${options.ack}${retention}\n`)
  return file
}

/** Spawns `tributary start` (from src, or another entry such as dist/cli/main.js) on a fixed port. */
export function launchTributary(
  entry: string,
  dataDir: string,
  configFile: string,
  port: number,
  options: StartOptions,
  straceDir: string,
): ChildProcess {
  return launch(
    [
      process.execPath,
      ...BROKER_NODE_FLAGS,
      entry,
      'start',
      '--data-dir',
      dataDir,
      '--config',
      configFile,
      '--mqtt-host',
      LOOPBACK,
      '--mqtt-port',
      String(port),
      '--log-level',
      'info',
    ],
    options,
    straceDir,
  )
}

/** Resolves when tributary logs that it accepts MQTT connections; collects its warnings and errors. */
export function watchTributaryLog(
  child: ChildProcess,
  problems: { add: (line: string) => void },
): Promise<void> {
  return new Promise<void>((resolve) => {
    onLines(child, (line, stream) => {
      if (stream === 'stderr') {
        problems.add(line)
        return
      }
      let entry: { level?: number; msg?: string }
      try {
        entry = JSON.parse(line) as { level?: number; msg?: string }
      } catch {
        problems.add(line)
        return
      }
      if ((entry.level ?? 0) >= 40) problems.add(line)
      if (entry.msg === 'tributary accepting MQTT connections') resolve()
    })
  })
}

async function startTributary(name: SystemName, options: StartOptions): Promise<StartedSystem> {
  const ack = name === 'tributary-relaxed' ? 'relaxed' : 'durable'
  const dir = makeTempDir(name)
  const dataDir = join(dir, 'data')
  const httpPort = options.adminApi === true ? await freePort() : undefined
  const configFile = tributaryConfig(dir, { ack, ...(httpPort === undefined ? {} : { httpPort }) })
  const port = await freePort()
  const entry = options.tributaryEntry ?? 'dist'
  const child = launchTributary(TRIBUTARY_ENTRIES[entry], dataDir, configFile, port, options, dir)
  const problems = problemList()
  const logged = watchTributaryLog(child, problems)
  const ready = withDeadline(logged, options.timeoutMs, `${name} start`).then(() => port)
  return started(
    name,
    child,
    ready,
    options,
    dir,
    basename(process.execPath),
    `default stream, ack: ${ack}; ${entry === 'dist' ? 'node dist/cli/main.js (the build bin/tributary runs)' : 'node src/cli/main.ts (Node type stripping)'}${httpPort === undefined ? '' : '; admin API on (the /healthz probe)'}`,
    problems,
    'SIGTERM',
    httpPort === undefined ? null : `http://${LOOPBACK}:${httpPort}/healthz`,
  )
}

export function startSystem(name: SystemName, options: StartOptions): Promise<StartedSystem> {
  switch (name) {
    case 'ack-server':
      return startAckServer(options)
    case 'mosquitto':
      return startMosquitto(options)
    case 'nats':
      return startNats(options)
    case 'tributary-durable':
    case 'tributary-relaxed':
      return startTributary(name, options)
  }
}
