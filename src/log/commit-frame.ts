// Turns one group commit's queued work into its frame: assigns each record its
// offset and ingest time, groups the records per partition into one batch
// each, and lists the marker changes in call order. Replica batches (another
// origin's, as that origin stored them) go into the frame as they are, at
// the origin's offsets; one that does not start where the replica ends is
// refused alone. A repair (this node's own batch fetched back from a copy
// into the hole a quarantined batch left) goes in at its own offsets and
// moves nothing. The partitions' offsets advance here; `restore()` gives them
// back if the frame cannot be written.

import { TributaryError } from '../errors.ts'
import { encodeBatch, readBatchHeader, type TimedRecord } from './batch-codec.ts'
import { type EncodedFrame, encodeFrame, type MarkerChange } from './frame-codec.ts'
import type { Appended, AppendRequest, LocalPartitionRef, PartitionRef } from './log-store.ts'
import type { PartitionMeta } from './store-recovery.ts'

export type CommitItem =
  | { readonly kind: 'append'; readonly request: AppendRequest }
  | { readonly kind: 'remove'; readonly prefix: string }
  /** Verified stored batches of a replica partition, consecutive (SegmentLogStore.appendReplica checks). */
  | { readonly kind: 'replica'; readonly ref: PartitionRef; readonly batches: readonly Buffer[] }
  /** A verified batch that fills a hole of the partition exactly (SegmentLogStore.repairBatch checks). */
  | { readonly kind: 'repair'; readonly ref: PartitionRef; readonly batch: Buffer }

export interface CommitBatch {
  readonly meta: PartitionMeta
  readonly baseOffset: number
  readonly recordCount: number
  readonly maxTimestampMs: number
  readonly batch: Buffer
  /** Below the partition's end (a hole filled): its records were durable before, in another copy. */
  readonly repair?: true
}

export interface BuiltCommit {
  readonly frame: EncodedFrame
  /** In the frame's batch order. */
  readonly batches: CommitBatch[]
  readonly changes: MarkerChange[]
  /** Per item, in queue order (empty for marker removals and replica batches). */
  readonly results: Appended[][]
  /** Items refused alone (a replica batch that does not fit its partition), by queue index. */
  readonly refused: ReadonlyMap<number, TributaryError>
  readonly restore: () => void
}

export interface CommitPartitions {
  /** One of this node's partitions (appends). */
  readonly local: (ref: LocalPartitionRef) => PartitionMeta
  /** Any partition (replica batches). */
  readonly any: (ref: PartitionRef) => PartitionMeta
}

export function buildCommit(
  items: readonly CommitItem[],
  partitions: CommitPartitions,
  nowMs: number,
  segment: number,
  incarnation: number,
): BuiltCommit {
  const snapshots = new Map<PartitionMeta, PartitionMeta>()
  const grouped = new Map<PartitionMeta, TimedRecord[]>()
  const copies: CommitBatch[] = []
  const changes: MarkerChange[] = []
  const refused = new Map<number, TributaryError>()
  const snapshot = (meta: PartitionMeta): void => {
    if (!snapshots.has(meta)) snapshots.set(meta, { ...meta })
  }
  const results = items.map((item, i): Appended[] => {
    if (item.kind === 'remove') {
      changes.push({ kind: 'remove', prefix: item.prefix })
      return []
    }
    if (item.kind === 'repair') {
      const header = readBatchHeader(item.batch)
      copies.push({
        meta: partitions.any(item.ref),
        baseOffset: header.baseOffset,
        recordCount: header.recordCount,
        maxTimestampMs: header.maxTimestampMs,
        batch: item.batch,
        repair: true,
      })
      return []
    }
    if (item.kind === 'replica') {
      const meta = partitions.any(item.ref)
      const first = item.batches[0] === undefined ? null : readBatchHeader(item.batches[0])
      if (first !== null && first.baseOffset !== meta.nextOffset) {
        refused.set(
          i,
          new TributaryError(
            'TRIB_REPLICA_GAP',
            `${meta.stream}/${meta.origin}/${meta.partition}: batch at ${first.baseOffset}, replica ends at ${meta.nextOffset}`,
          ),
        )
        return []
      }
      snapshot(meta)
      for (const batch of item.batches) {
        const header = readBatchHeader(batch)
        copies.push({
          meta,
          baseOffset: header.baseOffset,
          recordCount: header.recordCount,
          maxTimestampMs: header.maxTimestampMs,
          batch,
        })
        meta.nextOffset = header.baseOffset + header.recordCount
        meta.lastTimestampMs = Math.max(meta.lastTimestampMs ?? 0, header.maxTimestampMs)
      }
      return []
    }
    const appended = item.request.entries.map((entry) => {
      const meta = partitions.local(entry)
      snapshot(meta)
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
  const encoded = [...grouped].map(([meta, records]): CommitBatch => {
    const baseOffset = meta.nextOffset - records.length
    return {
      meta,
      baseOffset,
      recordCount: records.length,
      maxTimestampMs: records[records.length - 1]?.timestampMs ?? nowMs,
      batch: encodeBatch(baseOffset, records, incarnation),
    }
  })
  const batches = [...encoded, ...copies]
  const frame = encodeFrame(
    { batches: batches.map((b) => ({ partitionId: b.meta.id, batch: b.batch })), markers: changes },
    segment,
  )
  const restore = (): void => {
    for (const [meta, before] of snapshots) Object.assign(meta, before)
  }
  return { frame, batches, changes, results, refused, restore }
}
