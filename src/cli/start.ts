// `tributary start`: run a node in the foreground until SIGTERM/SIGINT, then
// shut down cleanly (stop accepting, finish acks, close the store) and exit 0.
// Under systemd (NOTIFY_SOCKET) it reports readiness, status, watchdog pings
// and stopping (src/service/notify.ts); SIGHUP re-reads the configuration and
// applies what can change while running (src/service/reload.ts), and reads
// the cluster.tls certificate files again.

import type { Command } from 'commander'
import { ConfigError } from '../config/load.ts'
import type { Config } from '../config/schema.ts'
import { TributaryError } from '../errors.ts'
import type { TributaryNode } from '../index.ts'
import { createNode } from '../index.ts'
import { createLogger, type Logger } from '../observability/logger.ts'
import { RecentLogEvents } from '../observability/recent-log.ts'
import { ServiceNotifier } from '../service/notify.ts'
import { applyReload } from '../service/reload.ts'
import { configFrom, parseHttpPort, withStoreOptions } from './shared.ts'

interface StartOptions {
  config?: string
  dataDir?: string
  mqttPort?: number
  mqttHost?: string
  logLevel?: string
  sink?: string[]
  cluster?: string
  clusterSecretFile?: string
  clusterCert?: string
  clusterKey?: string
  clusterCa?: string
  peer?: string[]
  replicationPort?: number
  httpPort?: number | 'off'
  httpHost?: string
}

export function registerStart(program: Command): void {
  withStoreOptions(program.command('start'))
    .description('run the broker in the foreground')
    .option('--mqtt-port <port>', 'MQTT TCP port (default 1883; 0 picks a free one)', (v) =>
      Number.parseInt(v, 10),
    )
    .option('--mqtt-host <host>', 'address to listen on (default 0.0.0.0)')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent')
    .option(
      '--http-port <port>',
      'admin HTTP API port (default 8080; 0 picks a free one; off disables)',
      parseHttpPort,
    )
    .option(
      '--http-host <host>',
      'admin HTTP API address (default 127.0.0.1; anything else needs http.token)',
    )
    .option(
      '--sink <url>',
      'forward every stream upstream (repeatable): kafka://HOST:PORT[?exactlyOnce=true], mqtt://HOST:PORT, http://HOST:PORT/PATH',
      (url: string, previous: string[] = []) => [...previous, url],
    )
    .option(
      '--cluster <name>',
      'replicate with the nodes of this cluster on the LAN (needs --cluster-secret-file, or the three --cluster-cert/-key/-ca)',
    )
    .option('--cluster-secret-file <file>', 'the cluster secret (tributary cluster init writes one)')
    .option('--cluster-cert <file>', "mutual TLS instead of a secret: this node's certificate (PEM)")
    .option('--cluster-key <file>', "mutual TLS: this node's private key (PEM, mode 0600)")
    .option('--cluster-ca <file>', "mutual TLS: the CA that signs every node's certificate (PEM)")
    .option(
      '--peer <host:port>',
      'a node to replicate with where mDNS is blocked (repeatable)',
      (peer: string, previous: string[] = []) => [...previous, peer],
    )
    .option('--replication-port <port>', `replication port (default 7625; 0 picks a free one)`, (v) =>
      Number.parseInt(v, 10),
    )
    .action(async (options: StartOptions) => {
      const flags = { ...options, sinks: options.sink, peers: options.peer }
      const config = configFrom(flags)
      const recent = new RecentLogEvents()
      const log = createLogger(config.logLevel, undefined, recent)
      const node = createNode(config, log, recent)
      const notifier = new ServiceNotifier(log)
      let stopping = false
      const exit = (code: number): void => {
        // Hand STOPPING=1 to systemd before exiting; close() never rejects.
        void notifier.close().then(() => process.exit(code))
      }
      const stop = (signal: string): void => {
        if (stopping) return
        stopping = true
        log.info({ signal }, 'shutting down')
        notifier.stopping(`stopping (${signal}): finishing in-flight appends`)
        node.close().then(
          () => exit(0),
          (err: unknown) => {
            log.error({ err }, 'shutdown failed')
            exit(1)
          },
        )
      }
      let running = config
      let listening = 'starting'
      process.on('SIGHUP', () => {
        const result = reload(running, () => configFrom(flags), node, log)
        running = result.running
        // `systemctl status` shows the last STATUS line: what runs, and what the reload did.
        notifier.status(`${listening}; SIGHUP at ${new Date().toISOString()}: ${result.summary}`)
      })
      process.on('unhandledRejection', (reason) => {
        // lmdb-js rejects every promise of a failed commit (disk full, I/O error),
        // also the shared commit promises of writes nobody awaits. The appends that
        // waited on that commit were already refused with TRIB_STORE_WRITE_FAILED,
        // so these are logged, not fatal. Anything else is a bug: crash as Node would.
        if (typeof reason === 'object' && reason !== null && 'commitError' in reason) {
          log.warn({ code: 'TRIB_STORE_WRITE_FAILED', err: String(reason) }, 'LMDB commit failed')
          return
        }
        log.fatal({ err: reason }, 'unhandled rejection')
        process.exit(1)
      })
      process.on('SIGTERM', () => stop('SIGTERM'))
      process.on('SIGINT', () => stop('SIGINT'))
      notifier.status('starting: opening the log store')
      notifier.startWatchdog()
      try {
        const { mqtt } = await node.start()
        listening = `accepting MQTT connections on ${mqtt.host}:${mqtt.port}`
        notifier.ready(listening)
      } catch (err) {
        // One line: a newline would start another VARIABLE= of the notification.
        const reason = err instanceof TributaryError ? `${err.code}: ${err.message}` : String(err)
        notifier.status(`start failed: ${reason.replace(/\s+/g, ' ')}`)
        await node.close().catch(() => undefined)
        await notifier.close()
        throw err
      }
    })
}

/** SIGHUP: loads the config again and applies the safe part; a bad file keeps the running config. */
function reload(
  running: Readonly<Config>,
  load: () => Readonly<Config>,
  node: TributaryNode,
  log: Logger,
): { running: Readonly<Config>; summary: string } {
  let next: Readonly<Config>
  try {
    next = load()
  } catch (err) {
    const problems = err instanceof ConfigError ? err.problems : undefined
    const code = err instanceof TributaryError ? err.code : undefined
    log.error(
      { code, problems, err: err instanceof Error ? err.message : String(err) },
      'SIGHUP: configuration not reloaded; the running configuration stays',
    )
    return { running, summary: 'configuration refused (see the log), the running one stays' }
  }
  const result = applyReload(running, next, {
    setLogLevel: (level) => {
      log.level = level
    },
    setRetention: (streams) => node.setRetention(streams),
  })
  const { applied, needsRestart } = result.plan
  const certificates = reloadCertificates(node, log)
  // Logged at the new level: a move to warn hides the info line, never the warning.
  if (needsRestart.length > 0)
    log.warn({ applied, needsRestart }, 'SIGHUP: configuration reloaded; some changes need a restart')
  else log.info({ applied, needsRestart }, 'SIGHUP: configuration reloaded')
  const summary = `${applied.length} change(s) applied, ${needsRestart.length} need a restart${certificates}`
  return { running: result.running, summary }
}

/** SIGHUP with cluster.tls: the certificate files are read again (renewed certificates need no restart). */
function reloadCertificates(node: TributaryNode, log: Logger): string {
  try {
    return node.reloadClusterCertificates() ? ', cluster certificates reloaded' : ''
  } catch (err) {
    const code = err instanceof TributaryError ? err.code : undefined
    log.error(
      { code, err: err instanceof Error ? err.message : String(err) },
      'SIGHUP: cluster certificates not reloaded; the running ones stay',
    )
    return ', cluster certificates refused (see the log)'
  }
}
