// `tributary log verify`: check every stored batch (CRC32C, structure,
// offsets) and list damage and gaps; exit code 1 when anything is damaged.

import type { Command } from 'commander'
import { configFrom, openStoreReadOnly, printJson, withStoreOptions } from './shared.ts'

export function registerLogVerify(program: Command): void {
  const log = program.command('log').description('log maintenance')
  withStoreOptions(log.command('verify'))
    .description('verify every stored batch; works while the broker runs')
    .option('--json', 'print the report as one JSON object')
    .action(async (options: { config?: string; dataDir?: string; json?: boolean }) => {
      const store = await openStoreReadOnly(configFrom(options))
      try {
        const report = store.verify()
        if (options.json === true) {
          printJson(report)
        } else {
          process.stdout.write(
            `checked ${report.batchesChecked} batches, ${report.records} records; ${report.corrupt.length} damaged, ${report.gaps.length} gaps, ${report.quarantined} quarantined earlier\n`,
          )
          for (const c of report.corrupt) {
            process.stdout.write(
              `  TRIB_BATCH_CORRUPT ${c.stream}/${c.partition}@${c.baseOffset} (${c.recordCount ?? '?'} records): ${c.error}\n`,
            )
          }
          for (const g of report.gaps)
            process.stdout.write(`  gap ${g.stream}/${g.partition} offsets ${g.from}-${g.to}\n`)
        }
        if (report.corrupt.length > 0) process.exitCode = 1
      } finally {
        await store.close()
      }
    })
}
