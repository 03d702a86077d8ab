// Where each batch lives: (partition id, base offset) -> segment, position,
// length and the header fields that time lookups and retention need. The
// committed part is the LMDB database `log-index`; batches appended since the
// last (lazy) index commit are held in memory, and every lookup sees both.
// The in-memory part is always newer (higher offsets) than the committed part
// of the same partition.

import type { Database } from 'lmdb'

export interface IndexEntry {
  readonly baseOffset: number
  readonly recordCount: number
  readonly maxTimestampMs: number
  readonly segment: number
  readonly position: number
  readonly length: number
}

const VALUE_BYTES = 24

export function indexKey(partitionId: number, baseOffset: number): Buffer {
  const key = Buffer.allocUnsafe(12)
  key.writeUInt32BE(partitionId, 0)
  key.writeBigUInt64BE(BigInt(baseOffset), 4)
  return key
}

/** Sorts before every key of the partition: the exclusive lower end of a reverse range. */
function partitionPrefix(partitionId: number): Buffer {
  const key = Buffer.allocUnsafe(4)
  key.writeUInt32BE(partitionId, 0)
  return key
}

function encodeValue(entry: IndexEntry): Buffer {
  const value = Buffer.allocUnsafe(VALUE_BYTES)
  value.writeUInt32BE(entry.segment, 0)
  value.writeUInt32BE(entry.position, 4)
  value.writeUInt32BE(entry.length, 8)
  value.writeUInt32BE(entry.recordCount, 12)
  value.writeDoubleBE(entry.maxTimestampMs, 16)
  return value
}

function decodeEntry(key: Buffer, value: Buffer): IndexEntry {
  return {
    baseOffset: Number(key.readBigUInt64BE(4)),
    segment: value.readUInt32BE(0),
    position: value.readUInt32BE(4),
    length: value.readUInt32BE(8),
    recordCount: value.readUInt32BE(12),
    maxTimestampMs: value.readDoubleBE(16),
  }
}

/** Index of the last entry in `list` with base offset <= `offset`, or -1. */
function floorIndex(list: readonly IndexEntry[], offset: number): number {
  let lo = 0
  let hi = list.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((list[mid]?.baseOffset ?? 0) <= offset) lo = mid + 1
    else hi = mid
  }
  return lo - 1
}

export class BatchIndex {
  readonly #db: Database<Buffer, Buffer>
  /** Appended since the last index commit, per partition id, ascending. */
  #pending = new Map<number, IndexEntry[]>()
  #pendingCount = 0

  constructor(db: Database<Buffer, Buffer>) {
    this.#db = db
  }

  get pendingCount(): number {
    return this.#pendingCount
  }

  add(partitionId: number, entry: IndexEntry): void {
    let list = this.#pending.get(partitionId)
    if (list === undefined) {
      list = []
      this.#pending.set(partitionId, list)
    }
    // In offset order: a repaired hole (SegmentLogStore.repairBatch) may come after later entries.
    const last = list[list.length - 1]
    if (last === undefined || last.baseOffset < entry.baseOffset) list.push(entry)
    else list.splice(floorIndex(list, entry.baseOffset) + 1, 0, entry)
    this.#pendingCount++
  }

  /** Writes the pending entries; call inside an LMDB write transaction, then `committed()`. */
  writePending(): void {
    for (const [partitionId, list] of this.#pending)
      for (const entry of list) this.#db.putSync(indexKey(partitionId, entry.baseOffset), encodeValue(entry))
  }

  /** The pending entries are in LMDB now. */
  committed(): void {
    this.#pending = new Map()
    this.#pendingCount = 0
  }

  /** Removes a committed entry; inside an LMDB write transaction. */
  removeSync(partitionId: number, baseOffset: number): void {
    this.#db.removeSync(indexKey(partitionId, baseOffset))
  }

  /** The entry holding `offset` or the nearest one before it. */
  floor(partitionId: number, offset: number): IndexEntry | null {
    const list = this.#pending.get(partitionId)
    if (list !== undefined) {
      const i = floorIndex(list, offset)
      if (i >= 0) return list[i] ?? null
    }
    for (const { key, value } of this.#db.getRange({
      start: indexKey(partitionId, offset),
      end: partitionPrefix(partitionId),
      reverse: true,
      limit: 1,
    })) {
      return decodeEntry(key, value)
    }
    return null
  }

  /** Entries in offset order, from the one holding `offset` (or the first after it). */
  *from(partitionId: number, offset: number): Generator<IndexEntry> {
    const start = this.floor(partitionId, offset)?.baseOffset ?? offset
    let last = -1
    for (const { key, value } of this.#db.getRange({
      start: indexKey(partitionId, start),
      end: indexKey(partitionId + 1, 0),
    })) {
      const entry = decodeEntry(key, value)
      last = entry.baseOffset
      yield entry
    }
    for (const entry of this.#pending.get(partitionId) ?? []) {
      if (entry.baseOffset >= start && entry.baseOffset > last) yield entry
    }
  }

  /** The last `count` entries of a partition, newest first. */
  tail(partitionId: number, count: number): IndexEntry[] {
    const out = [...(this.#pending.get(partitionId) ?? [])].reverse().slice(0, count)
    if (out.length >= count) return out
    for (const { key, value } of this.#db.getRange({
      start: partitionPrefix(partitionId + 1),
      end: partitionPrefix(partitionId),
      reverse: true,
      limit: count - out.length,
    })) {
      out.push(decodeEntry(key, value))
    }
    return out
  }

  /** Base offset of the first entry after `offset`, or null. */
  nextAfter(partitionId: number, offset: number): number | null {
    for (const entry of this.from(partitionId, offset + 1))
      if (entry.baseOffset > offset) return entry.baseOffset
    return null
  }
}
