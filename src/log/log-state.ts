// The log's bookkeeping in memory, between lazy index commits: the partition
// registry of every origin (offsets, bytes, times), what each segment file
// still holds, the retention floors per (stream, origin, partition), and what
// changed since the last index commit (written to LMDB by `writeChanges`
// inside that commit's transaction). Only this node's partitions are
// appended to (`local`); every other lookup names the origin.

import type { Database } from 'lmdb'
import { TributaryError } from '../errors.ts'
import type { BatchIndex, IndexEntry } from './batch-index.ts'
import type {
  LocalPartitionRef,
  PartitionRef,
  PartitionStatus,
  RetentionPolicy,
  RetentionReport,
} from './log-store.ts'
import { type PartitionMeta, partitionKey, type SegmentPosition, type SegmentUse } from './store-recovery.ts'

export class LogState {
  readonly #origin: string
  readonly #index: BatchIndex
  readonly #partitions = new Map<string, PartitionMeta>()
  readonly #byId = new Map<number, PartitionMeta>()
  /** This origin's partitions by stream and number: the append path's lookup. */
  readonly #local = new Map<string, PartitionMeta[]>()
  /** Indexed batches and bytes per segment file. */
  readonly segments = new Map<number, SegmentUse>()
  readonly #dirtyMetas = new Set<PartitionMeta>()
  readonly #dirtySegments = new Set<number>()
  readonly #floors = new Map<string, Map<string, number>>()

  constructor(origin: string, index: BatchIndex) {
    this.#origin = origin
    this.#index = index
  }

  get size(): number {
    return this.#partitions.size
  }

  all(): IterableIterator<PartitionMeta> {
    return this.#partitions.values()
  }

  byId(id: number): PartitionMeta | undefined {
    return this.#byId.get(id)
  }

  /** The partition, of any origin; undefined when not held. */
  get(ref: PartitionRef): PartitionMeta | undefined {
    return this.#partitions.get(partitionKey(ref.stream, ref.origin, ref.partition))
  }

  /** Like `get`, but TRIB_STREAM_UNKNOWN / TRIB_PARTITION_UNKNOWN when not held. */
  find(ref: PartitionRef): PartitionMeta {
    const meta = this.get(ref)
    if (meta !== undefined) return meta
    const streamKnown = [...this.#partitions.values()].some(
      (m) => m.stream === ref.stream && m.origin === ref.origin,
    )
    throw unknownPartition(ref, streamKnown)
  }

  /** Loads (or reloads, for read-only refreshes) the registry from log-meta. */
  load(meta: Database<unknown, string>): void {
    for (const { key, value } of meta.getRange({ start: 'partition:', end: 'partition;' })) {
      if (typeof value === 'object' && value !== null && 'stream' in value)
        this.register({ ...(value as PartitionMeta) }, key)
    }
  }

  register(meta: PartitionMeta, key = partitionKey(meta.stream, meta.origin, meta.partition)): void {
    this.#partitions.set(key, meta)
    this.#byId.set(meta.id, meta)
    if (meta.origin !== this.#origin) return
    let list = this.#local.get(meta.stream)
    if (list === undefined) {
      list = []
      this.#local.set(meta.stream, list)
    }
    list[meta.partition] = meta
  }

  /** A partition this origin appends to; TRIB_STREAM_UNKNOWN / TRIB_PARTITION_UNKNOWN otherwise. */
  local(ref: LocalPartitionRef): PartitionMeta {
    const partitions = this.#local.get(ref.stream)
    const meta = partitions?.[ref.partition]
    if (meta === undefined) throw unknownPartition(ref, partitions !== undefined)
    return meta
  }

  changed(meta: PartitionMeta): void {
    this.#dirtyMetas.add(meta)
  }

  use(seq: number): SegmentUse {
    let use = this.segments.get(seq)
    if (use === undefined) {
      use = { batches: 0, bytes: 0 }
      this.segments.set(seq, use)
      this.#dirtySegments.add(seq)
    }
    return use
  }

  addEntry(meta: PartitionMeta, entry: IndexEntry): void {
    this.#index.add(meta.id, entry)
    const use = this.use(entry.segment)
    use.batches++
    use.bytes += entry.length
    this.#dirtySegments.add(entry.segment)
    meta.bytes += entry.length
    this.#dirtyMetas.add(meta)
  }

  /** Removes a batch from the index; inside an LMDB write transaction. */
  dropEntry(meta: PartitionMeta, entry: IndexEntry): void {
    this.#index.removeSync(meta.id, entry.baseOffset)
    const use = this.use(entry.segment)
    use.batches = Math.max(0, use.batches - 1)
    use.bytes = Math.max(0, use.bytes - entry.length)
    this.#dirtySegments.add(entry.segment)
    meta.bytes = Math.max(0, meta.bytes - entry.length)
    this.#dirtyMetas.add(meta)
  }

  /** Forgets segments before `active` that no batch is indexed in; returns them. */
  dropUnused(active: number): number[] {
    const unused: number[] = []
    for (const [seq, use] of this.segments) {
      if (use.batches > 0 || seq >= active) continue
      this.segments.delete(seq)
      this.#dirtySegments.add(seq)
      unused.push(seq)
    }
    return unused
  }

  /** Writes what changed; inside the index commit's LMDB write transaction, then `committed()`. */
  writeChanges(
    meta: Database<PartitionMeta | SegmentPosition | number, string>,
    segmentUse: Database<SegmentUse, number>,
  ): void {
    for (const m of this.#dirtyMetas) meta.putSync(partitionKey(m.stream, m.origin, m.partition), m)
    for (const seq of this.#dirtySegments) {
      const use = this.segments.get(seq)
      if (use === undefined) segmentUse.removeSync(seq)
      else segmentUse.putSync(seq, use)
    }
  }

  committed(): void {
    this.#dirtyMetas.clear()
    this.#dirtySegments.clear()
  }

  /** Every partition's status, by stream, origin and partition; with `origin`, only that origin's. */
  statuses(origin?: string): PartitionStatus[] {
    return [...this.#partitions.values()]
      .filter((m) => origin === undefined || m.origin === origin)
      .map((m) => this.status(m))
      .sort(
        (a, b) =>
          a.stream.localeCompare(b.stream) || a.origin.localeCompare(b.origin) || a.partition - b.partition,
      )
  }

  status(m: PartitionMeta): PartitionStatus {
    return {
      stream: m.stream,
      partition: m.partition,
      origin: m.origin,
      firstOffset: m.firstOffset,
      nextOffset: m.nextOffset,
      bytes: m.bytes,
      lastTimestampMs: m.lastTimestampMs,
    }
  }

  setFloor(holder: string, ref: PartitionRef, offset: number): void {
    const key = partitionKey(ref.stream, ref.origin, ref.partition)
    let holders = this.#floors.get(key)
    if (holders === undefined) {
      holders = new Map()
      this.#floors.set(key, holders)
    }
    holders.set(holder, offset)
  }

  removeFloor(holder: string, ref: PartitionRef): void {
    this.#floors.get(partitionKey(ref.stream, ref.origin, ref.partition))?.delete(holder)
  }

  #floor(meta: PartitionMeta): number {
    const holders = this.#floors.get(partitionKey(meta.stream, meta.origin, meta.partition))
    return holders === undefined || holders.size === 0
      ? Number.POSITIVE_INFINITY
      : Math.min(...holders.values())
  }

  /** Drops batches from the front of each partition per policy; inside an LMDB write transaction. */
  retain(
    policyFor: (ref: PartitionRef) => RetentionPolicy | undefined,
    nowMs: number,
    force: boolean,
  ): RetentionReport {
    const report = { batchesDeleted: 0, recordsDeleted: 0, bytesDeleted: 0, heldBack: [] as PartitionRef[] }
    for (const meta of this.#partitions.values()) {
      const policy = policyFor(meta)
      if (policy === undefined) continue
      const floor = force ? Number.POSITIVE_INFINITY : this.#floor(meta)
      let remaining = meta.bytes
      const doomed: IndexEntry[] = []
      for (const entry of this.#index.from(meta.id, meta.firstOffset)) {
        const tooOld = policy.maxAgeMs !== null && entry.maxTimestampMs < nowMs - policy.maxAgeMs
        const tooBig = policy.maxBytes !== null && remaining > policy.maxBytes
        const below =
          policy.deleteBelow !== undefined && entry.baseOffset + entry.recordCount <= policy.deleteBelow
        if (!tooOld && !tooBig && !below) break
        if (policy.keepNewestBatch === true && entry.baseOffset + entry.recordCount >= meta.nextOffset) break
        if (entry.baseOffset + entry.recordCount > floor) {
          report.heldBack.push({ stream: meta.stream, origin: meta.origin, partition: meta.partition })
          break
        }
        doomed.push(entry)
        remaining -= entry.length
      }
      for (const entry of doomed) {
        this.dropEntry(meta, entry)
        meta.firstOffset = Math.max(meta.firstOffset, entry.baseOffset + entry.recordCount)
        report.batchesDeleted++
        report.recordsDeleted += entry.recordCount
        report.bytesDeleted += entry.length
      }
    }
    return report
  }
}

function unknownPartition(ref: LocalPartitionRef, streamKnown: boolean): TributaryError {
  return new TributaryError(
    streamKnown ? 'TRIB_PARTITION_UNKNOWN' : 'TRIB_STREAM_UNKNOWN',
    streamKnown ? `${ref.stream} has no partition ${ref.partition}` : ref.stream,
  )
}
