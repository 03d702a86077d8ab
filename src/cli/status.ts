// `tributary status`: one screen about a node: health, streams, sinks, disk.
// Asked of the running node's admin API (GET /v1/status at http.host and
// http.port of the config, or --http-port / --http-host) so the figures are
// live; when no node answers there, the same shape is built from the store,
// opened read-only (health unknown, sink lag from the stored cursors), and
// the output says which source it came from.

import { statfs } from 'node:fs/promises'
import { join } from 'node:path'
import type { Command } from 'commander'
import { type NodeStatus, streamsOf } from '../admin/status.ts'
import type { Config } from '../config/schema.ts'
import { lockHolder, PID_FILE } from '../lib/pid-lock.ts'
import type { SinkFigures } from '../observability/metrics.ts'
import {
  apiGet,
  configFrom,
  nodeApi,
  openStoreReadOnly,
  parseHttpPort,
  printJson,
  printTable,
  withStoreOptions,
} from './shared.ts'
import { storedSinkRows } from './sinks.ts'

interface StatusOptions {
  config?: string
  dataDir?: string
  httpPort?: number | 'off'
  httpHost?: string
  json?: boolean
}

export type StatusReport =
  | (NodeStatus & { readonly source: 'api'; readonly api: string })
  | (Omit<
      NodeStatus,
      'health' | 'mqtt' | 'uptimeSeconds' | 'sinks' | 'recentErrors' | 'cluster' | 'peers' | 'incarnation'
    > & {
      readonly source: 'store'
      readonly api: string | null
      /** Why the API was not used. */
      readonly reason: string
      /** The pid of a node running on this data dir (its API is off or did not answer), else null. */
      readonly runningPid: number | null
      readonly health: null
      readonly sinks: Array<
        Pick<
          SinkFigures,
          'sink' | 'stream' | 'partition' | 'cursor' | 'nextOffset' | 'lagRecords' | 'lagBytes' | 'lagSeconds'
        >
      >
    })

async function fromStore(
  config: Readonly<Config>,
  api: string | null,
  reason: string,
): Promise<StatusReport> {
  const store = await openStoreReadOnly(config)
  try {
    const streams = streamsOf(store.partitions())
    let usedPercent: number | null = null
    try {
      const fs = await statfs(config.dataDir)
      usedPercent = fs.blocks === 0 ? 0 : (100 * (fs.blocks - fs.bavail)) / fs.blocks
    } catch {
      // Unknown: shown as "-".
    }
    return {
      source: 'store',
      api,
      reason,
      runningPid: lockHolder(join(config.dataDir, PID_FILE)),
      nodeId: store.origin,
      health: null,
      streams,
      sinks: storedSinkRows(config, store).map(({ type: _type, ...row }) => row),
      disk: {
        usedPercent,
        full: usedPercent !== null && usedPercent >= config.limits.diskHighWaterPercent,
        highWaterPercent: config.limits.diskHighWaterPercent,
        storedBytes: streams.reduce((sum, s) => sum + s.bytes, 0),
        writtenBytes: null,
        enduranceDays: null,
      },
    }
  } finally {
    await store.close()
  }
}

export async function nodeStatusReport(config: Readonly<Config>): Promise<StatusReport> {
  const api = nodeApi(config)
  if (api === null)
    return fromStore(
      config,
      null,
      config.http.port === null ? 'http.port is off' : 'http.port is 0 (a free port)',
    )
  const { base, token } = api
  const live = await apiGet<NodeStatus>(base, '/v1/status', token)
  if (live !== null) return { ...live, source: 'api', api: base }
  return fromStore(config, base, `no answer from ${base}`)
}

function bytes(n: number | null): string {
  if (n === null) return '-'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`
}

function duration(seconds: number): string {
  const d = Math.floor(seconds / 86_400)
  const h = Math.floor((seconds % 86_400) / 3600)
  const m = Math.floor((seconds % 3600) / 60)
  return d > 0 ? `${d}d${h}h` : h > 0 ? `${h}h${m}m` : `${m}m${Math.floor(seconds % 60)}s`
}

function print(report: StatusReport): void {
  const out = (line = ''): boolean => process.stdout.write(`${line}\n`)
  const disk = report.disk
  const used = disk.usedPercent === null ? '-' : `${disk.usedPercent.toFixed(1)}%`
  if (report.source === 'api') {
    const c = report.health.checks
    const word = (ok: boolean) => (ok ? 'ok' : 'FAIL')
    out(
      `node ${report.nodeId}${report.incarnation === null ? '' : ` incarnation ${report.incarnation.incarnation}`}  ${report.health.ready ? 'READY' : 'NOT READY'}  up ${duration(report.uptimeSeconds)}  (live, from ${report.api})`,
    )
    out(
      `checks: mqtt ${word(c.mqtt)}, store ${word(c.store)}, disk ${word(c.disk)}   mqtt connections: ${report.mqtt.connections}`,
    )
  } else {
    const running =
      report.runningPid === null ? 'no node runs on this data dir' : `a node runs as pid ${report.runningPid}`
    out(`node ${report.nodeId}  health unknown: ${report.reason}; ${running}  (from the store, read-only)`)
  }
  const endurance =
    disk.enduranceDays === null ? '' : `   endurance left: ${Math.round(disk.enduranceDays)} days`
  out(
    `disk: ${used} used (high-water ${disk.highWaterPercent}%${disk.full ? ', FULL' : ''})   stored: ${bytes(disk.storedBytes)}   written since start: ${bytes(disk.writtenBytes)}${endurance}`,
  )
  out()
  if (report.streams.length === 0) out('(no streams yet)')
  else
    printTable(
      ['STREAM', 'PARTITIONS', 'RECORDS', 'BYTES', 'LAST WRITE'],
      report.streams.map((s) => [
        s.name,
        s.partitions.length,
        s.records,
        bytes(s.bytes),
        s.partitions
          .map((p) => p.lastWrite ?? '')
          .sort()
          .at(-1) || '-',
      ]),
    )
  out()
  if (report.sinks.length === 0) out('(no sinks)')
  else
    printTable(
      ['SINK', 'STREAM', 'PARTITION', 'STATE', 'CURSOR', 'LAG', 'LAG BYTES', 'LAG SECONDS'],
      report.sinks.map((s) => [
        s.sink,
        s.stream,
        s.partition,
        'state' in s ? String(s.state) : '-',
        s.cursor,
        s.lagRecords,
        bytes(s.lagBytes),
        s.lagSeconds.toFixed(1),
      ]),
    )
  if (report.source !== 'api' || report.cluster === null) return
  const connected = report.peers.filter((p) => p.state === 'connected').length
  out()
  out(
    report.cluster.refused === null
      ? `cluster ${report.cluster.name}: ${connected} of ${report.peers.length} peers connected (tributary peers for more)`
      : `cluster ${report.cluster.name}: replication REFUSED: ${report.cluster.refused}`,
  )
}

export function registerStatus(program: Command): void {
  withStoreOptions(program.command('status'))
    .description(
      'one screen about the node: health, streams, sinks, disk (live from its admin API, else from the store)',
    )
    .option(
      '--http-port <port>',
      'where the running node serves its admin API (default: http.port of the config)',
      parseHttpPort,
    )
    .option('--http-host <host>', 'its address (default: http.host of the config)')
    .option('--json', 'one JSON object; "source" says whether it came from the admin API or the store')
    .action(async (options: StatusOptions) => {
      const config = configFrom(options)
      const report = await nodeStatusReport(config)
      if (options.json === true) printJson(report)
      else print(report)
    })
}
