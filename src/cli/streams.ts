// `tributary streams`: streams, partitions, offsets and bytes, read from the
// store (works while the broker runs): the partition rows of the admin API's
// status, one line each. The ORIGIN column names the node that wrote a replica.

import type { Command } from 'commander'
import { streamsOf } from '../admin/status.ts'
import { configFrom, openStoreReadOnly, printJson, printTable, withStoreOptions } from './shared.ts'

export function registerStreams(program: Command): void {
  withStoreOptions(program.command('streams'))
    .description('list streams and partitions with first/next offset and bytes')
    .option('--json', 'one JSON object per partition per line')
    .action(async (options: { config?: string; dataDir?: string; json?: boolean }) => {
      const config = configFrom(options)
      const store = await openStoreReadOnly(config)
      try {
        const rows = streamsOf(store.partitions()).flatMap((s) =>
          s.partitions.map((p) => ({ stream: s.name, ...p })),
        )
        const replicas = rows.some((r) => r.origin !== store.origin)
        if (options.json === true) {
          for (const row of rows) printJson(row)
          return
        }
        printTable(
          [
            'STREAM',
            'PARTITION',
            ...(replicas ? ['ORIGIN'] : []),
            'FIRST',
            'NEXT',
            'RECORDS',
            'BYTES',
            'LAST WRITE',
          ],
          rows.map((r) => [
            r.stream,
            r.partition,
            ...(replicas ? [r.origin] : []),
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
