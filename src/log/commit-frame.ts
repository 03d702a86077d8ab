// Turns one group commit's queued work into its frame: assigns each record its
// offset and ingest time, groups the records per partition into one batch
// each, and lists the marker changes in call order. The partitions' offsets
// advance here; `restore()` gives them back if the frame cannot be written.

import { encodeBatch, type TimedRecord } from './batch-codec.ts'
import { type EncodedFrame, encodeFrame, type MarkerChange } from './frame-codec.ts'
import type { Appended, AppendRequest } from './log-store.ts'
import type { PartitionMeta } from './store-recovery.ts'

export type CommitItem =
  | { readonly kind: 'append'; readonly request: AppendRequest }
  | { readonly kind: 'remove'; readonly prefix: string }

export interface CommitBatch {
  readonly meta: PartitionMeta
  readonly baseOffset: number
  readonly recordCount: number
  readonly maxTimestampMs: number
  readonly batch: Buffer
}

export interface BuiltCommit {
  readonly frame: EncodedFrame
  /** In the frame's batch order. */
  readonly batches: CommitBatch[]
  readonly changes: MarkerChange[]
  /** Per item, in queue order (empty for marker removals). */
  readonly results: Appended[][]
  readonly restore: () => void
}

export function buildCommit(
  items: readonly CommitItem[],
  partition: (ref: { stream: string; partition: number }) => PartitionMeta,
  nowMs: number,
  segment: number,
): BuiltCommit {
  const snapshots = new Map<PartitionMeta, PartitionMeta>()
  const grouped = new Map<PartitionMeta, TimedRecord[]>()
  const changes: MarkerChange[] = []
  const results = items.map((item): Appended[] => {
    if (item.kind === 'remove') {
      changes.push({ kind: 'remove', prefix: item.prefix })
      return []
    }
    const appended = item.request.entries.map((entry) => {
      const meta = partition(entry)
      if (!snapshots.has(meta)) snapshots.set(meta, { ...meta })
      const timestampMs = Math.max(nowMs, meta.lastTimestampMs ?? 0)
      meta.lastTimestampMs = timestampMs
      let records = grouped.get(meta)
      if (records === undefined) {
        records = []
        grouped.set(meta, records)
      }
      records.push({ ...entry.record, timestampMs })
      return { stream: entry.stream, partition: entry.partition, offset: meta.nextOffset++, timestampMs }
    })
    const marker = item.request.marker
    if (marker !== undefined) {
      const offsets = appended.map((a) => [a.stream, a.partition, a.offset] as const)
      changes.push({ kind: 'put', key: marker.key, marker: { digest: marker.digest, offsets } })
    }
    return appended
  })
  const batches = [...grouped].map(([meta, records]): CommitBatch => {
    const baseOffset = meta.nextOffset - records.length
    return {
      meta,
      baseOffset,
      recordCount: records.length,
      maxTimestampMs: records[records.length - 1]?.timestampMs ?? nowMs,
      batch: encodeBatch(baseOffset, records),
    }
  })
  const frame = encodeFrame(
    { batches: batches.map((b) => ({ partitionId: b.meta.id, batch: b.batch })), markers: changes },
    segment,
  )
  const restore = (): void => {
    for (const [meta, before] of snapshots) Object.assign(meta, before)
  }
  return { frame, batches, changes, results, restore }
}
