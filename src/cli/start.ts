// `tributary start`: run a node in the foreground until SIGTERM/SIGINT, then
// shut down cleanly (stop accepting, finish acks, close the store) and exit 0.

import type { Command } from 'commander'
import { createNode } from '../index.ts'
import { createLogger } from '../observability/logger.ts'
import { configFrom, withStoreOptions } from './shared.ts'

interface StartOptions {
  config?: string
  dataDir?: string
  mqttPort?: number
  mqttHost?: string
  logLevel?: string
  sink?: string[]
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
      '--sink <url>',
      'forward every stream upstream (repeatable): kafka://HOST:PORT[?exactlyOnce=true], mqtt://HOST:PORT, http://HOST:PORT/PATH',
      (url: string, previous: string[] = []) => [...previous, url],
    )
    .action(async (options: StartOptions) => {
      const config = configFrom({ ...options, sinks: options.sink })
      const log = createLogger(config.logLevel)
      const node = createNode(config, log)
      let stopping = false
      const stop = (signal: string): void => {
        if (stopping) return
        stopping = true
        log.info({ signal }, 'shutting down')
        node.close().then(
          () => process.exit(0),
          (err: unknown) => {
            log.error({ err }, 'shutdown failed')
            process.exit(1)
          },
        )
      }
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
      try {
        await node.start()
      } catch (err) {
        await node.close().catch(() => undefined)
        throw err
      }
    })
}
