// What every subcommand shares: the options that find the config and the
// store, opening the store read-only beside a running broker, and output.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Command } from 'commander'
import { type ConfigFlags, loadConfig } from '../config/load.ts'
import type { Config } from '../config/schema.ts'
import { TributaryError } from '../errors.ts'
import { SegmentLogStore } from '../log/segment-log-store.ts'

export interface StoreOptions {
  readonly config?: string
  readonly dataDir?: string
}

export function withStoreOptions(command: Command): Command {
  return command
    .option('-c, --config <file>', 'config file (default /etc/tributary/tributary.yaml when present)')
    .option('-d, --data-dir <dir>', 'data directory (default ./data in a checkout, else /var/lib/tributary)')
}

export function configFrom(options: ConfigFlags): Readonly<Config> {
  return loadConfig(options)
}

/** Opens the store of a (possibly running) node without writing to it. */
export async function openStoreReadOnly(config: Readonly<Config>): Promise<SegmentLogStore> {
  let origin: string
  try {
    origin = readFileSync(join(config.dataDir, 'node-id'), 'utf8').trim()
  } catch {
    throw new TributaryError(
      'TRIB_DATA_DIR_UNUSABLE',
      `no tributary data in ${config.dataDir} (start the broker first)`,
    )
  }
  const store = new SegmentLogStore({ dataDir: config.dataDir, origin, maxPendingAppends: 1, readOnly: true })
  await store.open()
  return store
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`)
}

/** Text when the bytes are valid UTF-8, base64 otherwise: the encoding is reported beside the value. */
export function bytesForHumans(bytes: Buffer | null): { value: string | null; encoding: 'utf8' | 'base64' } {
  if (bytes === null) return { value: null, encoding: 'utf8' }
  const text = bytes.toString('utf8')
  return Buffer.from(text, 'utf8').equals(bytes)
    ? { value: text, encoding: 'utf8' }
    : { value: bytes.toString('base64'), encoding: 'base64' }
}
