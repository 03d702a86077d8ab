// `tributary sinks`: per sink and partition, the forwarding cursor and the lag
// in records, bytes (estimated) and seconds, read from the store and the
// stored cursors (works while the broker runs; cursors are saved about once a
// second, so a running node may be up to a second further). Sinks of the
// config file are shown even before their first delivery; sinks given only as
// --sink to a running node appear once they have a stored cursor.

import type { Command } from 'commander'
import type { Config } from '../config/schema.ts'
import { type PartitionStatus, samePartition } from '../log/log-store.ts'
import type { SegmentLogStore } from '../log/segment-log-store.ts'
import { listCursors } from '../upstream/cursors.ts'
import { lagOf } from '../upstream/lag.ts'
import { forwardedStreams } from '../upstream/upstream.ts'
import { configFrom, openStoreReadOnly, printJson, printTable, withStoreOptions } from './shared.ts'

export interface SinkRow {
  sink: string
  type: string
  stream: string
  partition: number
  cursor: number
  nextOffset: number
  lagRecords: number
  lagBytes: number
  lagSeconds: number
}

/** Per sink and partition, from the stored cursors: the figures of `tributary sinks` (and `status` without a node). */
export function storedSinkRows(config: Readonly<Config>, store: SegmentLogStore): SinkRow[] {
  const partitions = store.localPartitions()
  const cursors = listCursors(store.environment)
  const cursorOf = (sink: string, p: PartitionStatus): number =>
    cursors.find((c) => c.sink === sink && samePartition(c, p))?.offset ?? 0
  const row = (sink: string, type: string, p: PartitionStatus): SinkRow => {
    const cursor = cursorOf(sink, p)
    return {
      sink,
      type,
      stream: p.stream,
      partition: p.partition,
      cursor,
      nextOffset: p.nextOffset,
      ...lagOf(store, p, cursor),
    }
  }
  const rows: SinkRow[] = []
  for (const sink of config.sinks) {
    const streams = new Set(forwardedStreams(config, sink).map((s) => s.name))
    for (const p of partitions) if (streams.has(p.stream)) rows.push(row(sink.name, sink.type, p))
  }
  const configured = new Set(config.sinks.map((s) => s.name))
  for (const c of cursors) {
    const p = partitions.find((q) => samePartition(q, c))
    if (!configured.has(c.sink) && p !== undefined) rows.push(row(c.sink, '-', p))
  }
  return rows
}

export function registerSinks(program: Command): void {
  withStoreOptions(program.command('sinks'))
    .description('list sinks with their cursor and lag (records, bytes, seconds) per partition')
    .option('--json', 'one JSON object per sink and partition per line')
    .action(async (options: { config?: string; dataDir?: string; json?: boolean }) => {
      const config = configFrom(options)
      const store = await openStoreReadOnly(config)
      try {
        const rows = storedSinkRows(config, store)
        if (options.json === true) {
          for (const r of rows) printJson(r)
          return
        }
        if (rows.length === 0) {
          process.stdout.write('(no sinks: add one under sinks: in the config, or start with --sink URL)\n')
          return
        }
        printTable(
          ['SINK', 'TYPE', 'STREAM', 'PARTITION', 'CURSOR', 'NEXT', 'LAG', 'LAG BYTES', 'LAG SECONDS'],
          rows.map((r) => [
            r.sink,
            r.type,
            r.stream,
            r.partition,
            r.cursor,
            r.nextOffset,
            r.lagRecords,
            r.lagBytes,
            r.lagSeconds.toFixed(1),
          ]),
        )
      } finally {
        await store.close()
      }
    })
}
