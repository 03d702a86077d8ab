// Reads a stopped (or killed) node's whole log back, the way an operator's
// tools do: SegmentLogStore opened read-only with the node's origin from
// <dataDir>/node-id. For crash tests that compare what was acknowledged with
// what is on disk.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { CorruptBatch, VerifyReport } from '../../src/log/log-store.ts'
import type { StoredRecord } from '../../src/log/record.ts'
import { SegmentLogStore } from '../../src/log/segment-log-store.ts'

export interface LocatedRecord {
  readonly stream: string
  /** The node that wrote it (this node's id, or another's for a copy). */
  readonly origin: string
  readonly partition: number
  readonly record: StoredRecord
}

export interface LogContents {
  readonly records: LocatedRecord[]
  /** Damaged batches met while reading. */
  readonly corrupt: CorruptBatch[]
  readonly verify: VerifyReport
}

const READ_CHUNK = 5000
/** A bound on reads per partition: a loop that stops making progress fails instead of spinning. */
const MAX_READS_PER_PARTITION = 10_000

export async function readLogContents(dataDir: string, streams?: readonly string[]): Promise<LogContents> {
  const origin = readFileSync(join(dataDir, 'node-id'), 'utf8').trim()
  const store = new SegmentLogStore({ dataDir, origin, maxPendingAppends: 1, readOnly: true })
  await store.open()
  try {
    const records: LocatedRecord[] = []
    const corrupt: CorruptBatch[] = []
    for (const p of store.partitions()) {
      if (streams !== undefined && !streams.includes(p.stream)) continue
      const ref = { stream: p.stream, origin: p.origin, partition: p.partition }
      let from = p.firstOffset
      for (let reads = 0; from < p.nextOffset; reads++) {
        if (reads >= MAX_READS_PER_PARTITION)
          throw new Error(`${p.stream}/${p.partition}: no end after ${reads} reads (at offset ${from})`)
        const result = store.read(ref, from, { maxRecords: READ_CHUNK, maxBytes: 64 * 1024 * 1024 })
        for (const record of result.records) records.push({ ...ref, record })
        corrupt.push(...result.corrupt)
        if (result.nextOffset <= from) break
        from = result.nextOffset
      }
    }
    return { records, corrupt, verify: store.verify() }
  } finally {
    await store.close()
  }
}
