// What every subcommand shares: the options that find the config and the
// store, opening the store read-only beside a running broker, and output.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Command } from 'commander'
import { readToken } from '../config/http-token.ts'
import { type ConfigFlags, loadConfig, parsePortOrOff } from '../config/load.ts'
import type { Config } from '../config/schema.ts'
import { type ErrorCode, TributaryError } from '../errors.ts'
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

/** The id of the node whose data dir this is: the origin of its own partitions. */
export function nodeIdOf(config: Readonly<Config>): string {
  try {
    return readFileSync(join(config.dataDir, 'node-id'), 'utf8').trim()
  } catch {
    throw new TributaryError(
      'TRIB_DATA_DIR_UNUSABLE',
      `no tributary data in ${config.dataDir} (start the broker first)`,
    )
  }
}

/** Opens the store of a (possibly running) node without writing to it. */
export async function openStoreReadOnly(config: Readonly<Config>): Promise<SegmentLogStore> {
  const origin = nodeIdOf(config)
  const store = new SegmentLogStore({ dataDir: config.dataDir, origin, maxPendingAppends: 1, readOnly: true })
  await store.open()
  return store
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`)
}

/** Prints rows as a left-aligned text table under a header line. */
export function printTable(header: readonly string[], rows: ReadonlyArray<readonly unknown[]>): void {
  const table = [header, ...rows.map((row) => row.map(String))]
  const widths = header.map((_, i) => Math.max(...table.map((row) => (row[i] ?? '').length)))
  for (const row of table) {
    const line = row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ')
    process.stdout.write(`${line.trimEnd()}\n`)
  }
}

/**
 * `--http-port N|off` (also for `tributary start`): a port, 0 for a free one, or
 * `off` (kept as the string: commander turns a parsed null into '').
 */
export function parseHttpPort(value: string): number | 'off' {
  const port = parsePortOrOff(value)
  if (port === undefined || (port !== null && (port < 0 || port > 65535)))
    throw new Error(`--http-port must be a port number (0 picks a free one) or "off", got "${value}"`)
  return port ?? 'off'
}

/** Where a client on this machine reaches a listener bound to `host` (a wildcard means loopback). */
export function clientHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1'
  if (host === '::' || host === '[::]') return '::1'
  return host
}

/** `host:port` as a URL authority (IPv6 in brackets). */
export function authority(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`
}

const API_TIMEOUT_MS = 3000

/**
 * Where this machine reaches the node's admin API, and the token to send;
 * null when http.port is off or 0 (no fixed address to ask).
 */
export function nodeApi(config: Readonly<Config>): { base: string; token: string | null } | null {
  const { port, host } = config.http
  if (port === null || port === 0) return null
  let token: string | null = null
  try {
    token = readToken(config.http)
  } catch {
    // A token file this user cannot read: ask without one; a node that needs it answers 401.
  }
  return { base: `http://${authority(clientHost(host), port)}`, token }
}

/**
 * GET `path` of a running node's admin API; null when nothing answers
 * (refused, timed out); throws the API's own error when it answers with one.
 */
export async function apiGet<T>(base: string, path: string, token: string | null): Promise<T | null> {
  let res: Response
  try {
    res = await fetch(`${base}${path}`, {
      headers: token === null ? {} : { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(API_TIMEOUT_MS),
    })
  } catch {
    return null
  }
  const body = (await res.json().catch(() => null)) as { error?: { code: ErrorCode; message: string } } | null
  if (res.ok && body !== null && body.error === undefined) return body as T
  const err = body?.error
  if (err !== undefined) throw new TributaryError(err.code, `${base}: ${err.message}`)
  throw new TributaryError('TRIB_NODE_UNREACHABLE', `${base} answered HTTP ${res.status}`)
}
