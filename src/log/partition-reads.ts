// Reading a partition's batches through the index: records from an offset,
// the offset for a time, and checking batches (CRC32C, structure, offsets).
// Batch bytes come from the segment files; a batch that cannot be read or
// fails its checks is reported as damage and skipped, never thrown.

import { decodeBatch, readBatchHeader, verifyBatch } from './batch-codec.ts'
import type { BatchIndex, IndexEntry } from './batch-index.ts'
import type { CorruptBatch, PartitionRef, ReadLimits, ReadResult, VerifyReport } from './log-store.ts'
import type { SegmentReader } from './segment-files.ts'

const DEFAULT_READ_MAX_RECORDS = 1000
const DEFAULT_READ_MAX_BYTES = 1024 * 1024

export interface PartitionView extends PartitionRef {
  readonly id: number
  readonly firstOffset: number
  readonly nextOffset: number
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

export class PartitionReads {
  readonly #index: BatchIndex
  readonly #segments: SegmentReader
  readonly #onSkipped: (damage: CorruptBatch) => void

  constructor(index: BatchIndex, segments: SegmentReader, onSkipped: (damage: CorruptBatch) => void) {
    this.#index = index
    this.#segments = segments
    this.#onSkipped = onSkipped
  }

  /** The batch's bytes and its damage (null when intact); bytes are null when unreadable. */
  check(meta: PartitionView, entry: IndexEntry): { bytes: Buffer | null; damage: CorruptBatch | null } {
    let bytes: Buffer | null = null
    try {
      bytes = this.#segments.read(entry.segment, entry.position, entry.length)
      const header = verifyBatch(bytes)
      if (header.baseOffset !== entry.baseOffset)
        throw new Error(`header says base offset ${header.baseOffset}`)
      decodeBatch(bytes)
      return { bytes, damage: null }
    } catch (err) {
      let recordCount: number | null = null
      try {
        if (bytes !== null) recordCount = readBatchHeader(bytes).recordCount
      } catch {
        // The header itself is unreadable: the record count stays unknown.
      }
      const damage = {
        stream: meta.stream,
        origin: meta.origin,
        partition: meta.partition,
        baseOffset: entry.baseOffset,
        recordCount,
        error: errorText(err),
      }
      return { bytes, damage }
    }
  }

  #firstOffsetAfter(meta: PartitionView, offset: number): number {
    return this.#index.nextAfter(meta.id, offset) ?? meta.nextOffset
  }

  read(meta: PartitionView, fromOffset: number, limits: ReadLimits): ReadResult {
    const maxRecords = limits.maxRecords ?? DEFAULT_READ_MAX_RECORDS
    const maxBytes = limits.maxBytes ?? DEFAULT_READ_MAX_BYTES
    const start = Math.max(fromOffset, meta.firstOffset)
    const records: ReadResult['records'] = []
    const corrupt: CorruptBatch[] = []
    let next = start
    let bytes = 0
    for (const entry of this.#index.from(meta.id, start)) {
      // `meta.nextOffset` may stop short of the index (a read of durable records only).
      if (entry.baseOffset >= meta.nextOffset) break
      if (records.length >= maxRecords || (bytes >= maxBytes && records.length > 0)) break
      let decoded: ReadResult['records']
      try {
        decoded = decodeBatch(this.#segments.read(entry.segment, entry.position, entry.length))
      } catch (err) {
        const damage = this.check(meta, entry).damage ?? {
          stream: meta.stream,
          origin: meta.origin,
          partition: meta.partition,
          baseOffset: entry.baseOffset,
          recordCount: null,
          error: errorText(err),
        }
        corrupt.push(damage)
        this.#onSkipped(damage)
        next = Math.max(next, this.#firstOffsetAfter(meta, entry.baseOffset))
        continue
      }
      for (const record of decoded) {
        if (record.offset < next) continue
        if (record.offset >= meta.nextOffset) break
        if (records.length >= maxRecords || (bytes >= maxBytes && records.length > 0)) break
        records.push(record)
        bytes += record.payload.length
        next = record.offset + 1
      }
    }
    return { records, nextOffset: Math.min(Math.max(next, start), meta.nextOffset), corrupt }
  }

  /**
   * Ingest times never decrease within a partition, so the batches' max
   * timestamps (kept in the index) are sorted by offset: bisect over offsets
   * without reading batches, then read from the batch found.
   */
  offsetForTimestamp(meta: PartitionView, timestampMs: number): number {
    let lo = meta.firstOffset
    let hi = meta.nextOffset
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2)
      const entry = this.#index.floor(meta.id, mid)
      if (entry === null) {
        lo = mid + 1
      } else if (entry.maxTimestampMs >= timestampMs) {
        hi = entry.baseOffset
      } else {
        lo = Math.max(entry.baseOffset + entry.recordCount, mid + 1)
      }
    }
    for (const entry of this.#index.from(meta.id, lo)) {
      let records: ReadResult['records']
      try {
        records = decodeBatch(this.#segments.read(entry.segment, entry.position, entry.length))
      } catch {
        continue
      }
      const hit = records.find((r) => r.offset >= lo && r.timestampMs >= timestampMs)
      if (hit !== undefined) return Math.max(hit.offset, meta.firstOffset)
    }
    return meta.nextOffset
  }

  verify(metas: Iterable<PartitionView>): Omit<VerifyReport, 'quarantined'> {
    const corrupt: CorruptBatch[] = []
    const gaps: Array<PartitionRef & { from: number; to: number }> = []
    let batchesChecked = 0
    let records = 0
    for (const meta of metas) {
      let expected = meta.firstOffset
      for (const entry of this.#index.from(meta.id, 0)) {
        batchesChecked++
        if (entry.baseOffset > expected) {
          gaps.push({
            stream: meta.stream,
            origin: meta.origin,
            partition: meta.partition,
            from: expected,
            to: entry.baseOffset - 1,
          })
        }
        const { damage } = this.check(meta, entry)
        if (damage !== null) {
          corrupt.push(damage)
          expected = this.#firstOffsetAfter(meta, entry.baseOffset)
          continue
        }
        records += entry.recordCount
        expected = entry.baseOffset + entry.recordCount
      }
      if (expected < meta.nextOffset) {
        gaps.push({
          stream: meta.stream,
          origin: meta.origin,
          partition: meta.partition,
          from: expected,
          to: meta.nextOffset - 1,
        })
      }
    }
    return { batchesChecked, records, corrupt, gaps }
  }
}
