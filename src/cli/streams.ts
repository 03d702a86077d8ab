// `tributary streams`: streams, partitions, offsets and bytes, read from the
// store (works while the broker runs).

import type { Command } from 'commander'
import { configFrom, openStoreReadOnly, printJson, printTable, withStoreOptions } from './shared.ts'

export function registerStreams(program: Command): void {
  withStoreOptions(program.command('streams'))
    .description('list streams and partitions with first/next offset and bytes')
    .option('--json', 'one JSON object per partition per line')
    .action(async (options: { config?: string; dataDir?: string; json?: boolean }) => {
      const config = configFrom(options)
      const store = await openStoreReadOnly(config)
      try {
        const rows = store.partitions().map((p) => ({
          stream: p.stream,
          partition: p.partition,
          firstOffset: p.firstOffset,
          nextOffset: p.nextOffset,
          records: p.nextOffset - p.firstOffset,
          bytes: p.bytes,
          lastWrite: p.lastTimestampMs === null ? null : new Date(p.lastTimestampMs).toISOString(),
        }))
        if (options.json === true) {
          for (const row of rows) printJson(row)
          return
        }
        printTable(
          ['STREAM', 'PARTITION', 'FIRST', 'NEXT', 'RECORDS', 'BYTES', 'LAST WRITE'],
          rows.map((r) => [
            r.stream,
            r.partition,
            r.firstOffset,
            r.nextOffset,
            r.records,
            r.bytes,
            r.lastWrite ?? '-',
          ]),
        )
        if (rows.length === 0) process.stdout.write('(no streams yet)\n')
      } finally {
        await store.close()
      }
    })
}
