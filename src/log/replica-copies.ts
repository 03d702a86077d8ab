// What SegmentLogStore's replication side (the ReplicaLog seam) does beyond
// the write path: reading stored batches as they are (fdatasync'd ones only,
// each verified before it leaves), the incarnation and CRC of the batch that ends where a
// follower's copy ends (the prefix check), checking a run of replica
// batches before it is queued, and restarting a copy that diverged (its
// batches from the divergence on move to the quarantine for inspection).

import { TributaryError } from '../errors.ts'
import { readBatchHeader, verifyBatch } from './batch-codec.ts'
import type { BatchIndex } from './batch-index.ts'
import type { LogState } from './log-state.ts'
import type { CorruptBatch, StoredBatch } from './log-store.ts'
import type { Damaged, Quarantine } from './quarantine.ts'
import type { SegmentReader } from './segment-files.ts'
import type { PartitionMeta } from './store-recovery.ts'

export interface CopiesParts {
  readonly state: LogState
  readonly index: BatchIndex
  readonly reader: SegmentReader
  readonly quarantine: Quarantine
  /** A damaged batch met while serving (reported like a read's). */
  readonly onDamaged: (damage: CorruptBatch) => void
}

export class ReplicaCopies {
  readonly #p: CopiesParts

  constructor(parts: CopiesParts) {
    this.#p = parts
  }

  /** Batches from `fromOffset` below `durableNext`, about `maxBytes`; stops before a damaged one. */
  read(meta: PartitionMeta, fromOffset: number, durableNext: number, maxBytes: number): StoredBatch[] {
    const out: StoredBatch[] = []
    let bytes = 0
    for (const entry of this.#p.index.from(meta.id, Math.max(fromOffset, meta.firstOffset))) {
      const end = entry.baseOffset + entry.recordCount
      if (end <= fromOffset) continue
      if (end > durableNext || (out.length > 0 && bytes + entry.length > maxBytes)) break
      const batch = this.#p.reader.read(entry.segment, entry.position, entry.length)
      try {
        verifyBatch(batch)
      } catch (err) {
        this.#p.onDamaged({
          stream: meta.stream,
          origin: meta.origin,
          partition: meta.partition,
          baseOffset: entry.baseOffset,
          recordCount: entry.recordCount,
          error: err instanceof Error ? err.message : String(err),
        })
        break
      }
      out.push({ baseOffset: entry.baseOffset, recordCount: entry.recordCount, bytes: batch })
      bytes += entry.length
    }
    return out
  }

  /** The incarnation and CRC32C of the batch ending right before `nextOffset`, or null. */
  lastBefore(meta: PartitionMeta, nextOffset: number): { incarnation: number; crc: number } | null {
    if (nextOffset <= meta.firstOffset || nextOffset > meta.nextOffset) return null
    const entry = this.#p.index.floor(meta.id, nextOffset - 1)
    if (entry === null || entry.baseOffset + entry.recordCount !== nextOffset) return null
    const { incarnation, crc } = readBatchHeader(
      this.#p.reader.read(entry.segment, entry.position, entry.length),
    )
    return { incarnation, crc }
  }

  /** Verifies a run of the origin's batches: each intact, each starting where the one before ends. */
  check(meta: PartitionMeta, batches: readonly Buffer[]): void {
    let expected: number | null = null
    for (const batch of batches) {
      const header = verifyBatch(batch)
      if (expected !== null && header.baseOffset !== expected)
        throw new TributaryError(
          'TRIB_REPLICA_GAP',
          `${meta.stream}/${meta.origin}/${meta.partition}: batch at ${header.baseOffset} after one ending at ${expected}`,
        )
      expected = header.baseOffset + header.recordCount
    }
  }

  /**
   * Verifies a batch of this node's own, fetched back from a peer's copy: it
   * must fill a hole of the partition (a quarantined batch's offsets) without
   * overlapping anything still indexed. TRIB_REPAIR_REFUSED otherwise.
   */
  checkHole(meta: PartitionMeta, batch: Buffer): void {
    const header = verifyBatch(batch)
    const end = header.baseOffset + header.recordCount
    const below = this.#p.index.floor(meta.id, end - 1)
    const overlaps = below !== null && below.baseOffset + below.recordCount > header.baseOffset
    if (header.baseOffset < meta.firstOffset || end > meta.nextOffset || overlaps)
      throw new TributaryError(
        'TRIB_REPAIR_REFUSED',
        `${meta.stream}/${meta.origin}/${meta.partition}: offsets ${header.baseOffset} to ${end - 1} are not a hole of the log`,
      )
  }

  /**
   * The LMDB work (inside an index commit) that restarts the copy at
   * `fromOffset`: every batch holding a record from there on goes to the
   * quarantine with `reason` (so the copy ends at a batch boundary, at or
   * before `fromOffset`); past its end, the copy jumps ahead and keeps what it held.
   */
  restartTask(meta: PartitionMeta, fromOffset: number, reason: string, moved: { count: number }): () => void {
    return () => {
      const first = meta.firstOffset
      const wasEmpty = meta.firstOffset === meta.nextOffset
      const doomed: Damaged[] = []
      for (const entry of this.#p.index.from(meta.id, fromOffset)) {
        if (entry.baseOffset + entry.recordCount <= fromOffset) continue
        const damage = {
          stream: meta.stream,
          origin: meta.origin,
          partition: meta.partition,
          baseOffset: entry.baseOffset,
          recordCount: entry.recordCount,
          error: reason,
        }
        doomed.push({
          meta,
          entry,
          damage,
          batch: this.#p.reader.read(entry.segment, entry.position, entry.length),
        })
      }
      this.#p.quarantine.task(doomed)()
      moved.count = doomed.length
      const end = Math.min(fromOffset, doomed[0]?.damage.baseOffset ?? fromOffset)
      // Nothing held before the new end: the copy starts there; else it keeps its start.
      meta.firstOffset = end <= first || wasEmpty ? end : first
      meta.nextOffset = end
      this.#p.state.changed(meta)
    }
  }
}
