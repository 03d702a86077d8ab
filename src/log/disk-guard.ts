// The disk high-water mark. Every `limits.diskCheckMs` the guard reads how
// full the data directory's filesystem is; above `limits.diskHighWaterPercent`
// each stream's `onFull` policy applies until it is below again:
// - `reject`: ingest refuses new publishes to the stream (TRIB_DISK_FULL, a
//   retriable refusal: the sensor keeps its message and retries);
// - `dropOldest`: the oldest batches of the stream's partitions are deleted,
//   even those a sink has not forwarded yet, until the excess (plus a margin)
//   is freed; the newest batch of a partition is always kept. For every
//   partition where records that some sink still needed were deleted, a gap
//   record (stream, partition, offset range, count, reason) is appended to
//   that partition, so it travels upstream in order like data. Nothing is
//   dropped without a trace: each deletion is also logged.

import { statfs } from 'node:fs/promises'
import type { StreamConfig } from '../config/schema.ts'
import type { Logger } from '../observability/logger.ts'
import { type GapRecord, gapEntry } from './gap-record.ts'
import type { LogStore, PartitionRef, PartitionStatus } from './log-store.ts'

/** Freed beyond the excess, so the guard does not flap at the mark. */
const MARGIN_PERCENT = 5
export interface DiskGuardOptions {
  readonly dataDir: string
  readonly highWaterPercent: number
  readonly streams: readonly StreamConfig[]
  readonly store: LogStore
  readonly log: Logger
  /** The lowest offset a sink still needs in the partition (null: none needs any). */
  readonly neededFrom: (ref: PartitionRef) => number | null
  /** How full the filesystem is, in percent (statfs; replaceable for tests of the policy). */
  readonly usedPercent?: (dataDir: string) => Promise<number>
}

export interface DiskCheck {
  readonly usedPercent: number
  readonly full: boolean
  readonly gaps: readonly GapRecord[]
}

async function statfsUsedPercent(dataDir: string): Promise<number> {
  const fs = await statfs(dataDir)
  if (fs.blocks === 0) return 0
  return (100 * (fs.blocks - fs.bavail)) / fs.blocks
}

export class DiskGuard {
  readonly #o: DiskGuardOptions
  #full = false
  #usedPercent = 0

  constructor(options: DiskGuardOptions) {
    this.#o = options
  }

  /** True while the disk is above the high-water mark. */
  get full(): boolean {
    return this.#full
  }

  get usedPercent(): number {
    return this.#usedPercent
  }

  async check(nowMs = Date.now()): Promise<DiskCheck> {
    const used = await (this.#o.usedPercent ?? statfsUsedPercent)(this.#o.dataDir)
    this.#usedPercent = used
    const wasFull = this.#full
    this.#full = used >= this.#o.highWaterPercent
    if (this.#full !== wasFull) {
      const fields = {
        code: 'TRIB_DISK_FULL',
        usedPercent: Math.round(used * 10) / 10,
        highWaterPercent: this.#o.highWaterPercent,
      }
      if (this.#full) this.#o.log.error(fields, 'data disk above the high-water mark: onFull policies apply')
      else this.#o.log.info(fields, 'data disk below the high-water mark again')
    }
    if (!this.#full) return { usedPercent: used, full: false, gaps: [] }
    const gaps = await this.#dropOldest(used, nowMs)
    return { usedPercent: used, full: true, gaps }
  }

  async #dropOldest(usedPercent: number, nowMs: number): Promise<GapRecord[]> {
    const dropping = new Set(this.#o.streams.filter((s) => s.onFull === 'dropOldest').map((s) => s.name))
    if (dropping.size === 0) return []
    // Only this node's partitions: a gap record can be appended only there.
    const before = this.#o.store.localPartitions().filter((p) => dropping.has(p.stream))
    const total = before.reduce((sum, p) => sum + p.bytes, 0)
    if (total === 0) return []
    // The excess is a share of the filesystem; take it from these partitions in proportion to their size.
    const share = Math.min(1, (usedPercent - this.#o.highWaterPercent + MARGIN_PERCENT) / 100)
    const keep = new Map(before.map((p) => [`${p.stream}/${p.partition}`, Math.floor(p.bytes * (1 - share))]))
    const origin = this.#o.store.origin
    const report = await this.#o.store.applyRetention(
      (ref) =>
        ref.origin === origin && dropping.has(ref.stream)
          ? {
              maxAgeMs: null,
              maxBytes: keep.get(`${ref.stream}/${ref.partition}`) ?? 0,
              keepNewestBatch: true,
            }
          : undefined,
      nowMs,
      { force: true },
    )
    if (report.batchesDeleted === 0) return []
    const gaps: GapRecord[] = []
    for (const old of before) {
      const now = this.#o.store.partition(old)
      if (now === undefined || now.firstOffset <= old.firstOffset) continue
      const gap = this.#gap(old, now, nowMs)
      if (gap !== null) gaps.push(gap)
    }
    this.#o.log.error(
      { code: 'TRIB_DISK_FULL', deleted: report, gaps },
      'data disk full: oldest records deleted (onFull: dropOldest)',
    )
    for (const gap of gaps) await this.#appendGap(gap)
    return gaps
  }

  #gap(old: PartitionStatus, now: PartitionStatus, nowMs: number): GapRecord | null {
    const needed = this.#o.neededFrom(old)
    if (needed === null || needed >= now.firstOffset) return null
    const from = Math.max(old.firstOffset, needed)
    const to = now.firstOffset - 1
    return {
      stream: old.stream,
      partition: old.partition,
      from,
      to,
      count: to - from + 1,
      reason: 'disk above the high-water mark (onFull: dropOldest)',
      atMs: nowMs,
    }
  }

  async #appendGap(gap: GapRecord): Promise<void> {
    await this.#o.store.append({ entries: [gapEntry(gap, 'dropOldest')], durability: 'durable' })
  }
}
