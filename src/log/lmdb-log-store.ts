// The partitioned log in one LMDB environment (lmdb-js). Owns the batches,
// the partition registry and ingest's markers, and the group
// commit that writes them: every append that arrives while a commit runs goes
// into the next one, each partition's share of a commit becomes one batch.
//
// Databases (all in `<dataDir>/log.mdb`):
//   log-batches    [partition id u32][base offset u64] -> batch bytes (batch-codec.ts)
//   log-meta       "partition:<stream>:<origin>:<n>" -> PartitionMeta; "next-partition-id"
//   log-markers    ingest's dedupe state, written in the same transaction as the records
//   log-quarantine [partition id u32][base offset u64] -> { batch, error, atMs }
//
// Durability: lmdb-js commits on its writer thread and, with overlappingSync,
// fsyncs after the commit; `durable` appends resolve after that fsync.

import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { type Database, open, type RootDatabase } from 'lmdb'
import { TributaryError } from '../errors.ts'
import {
  type BatchHeader,
  decodeBatch,
  encodeBatch,
  readBatchHeader,
  type TimedRecord,
  verifyBatch,
} from './batch-codec.ts'
import type {
  Appended,
  AppendRequest,
  CorruptBatch,
  LogStore,
  Marker,
  PartitionRef,
  PartitionStatus,
  ReadLimits,
  ReadResult,
  RecoveryReport,
  RetentionPolicy,
  RetentionReport,
  VerifyReport,
} from './log-store.ts'

export const LMDB_FILE = 'log.mdb'
export const DEFAULT_TAIL_BATCHES_CHECKED = 8
const DEFAULT_READ_MAX_RECORDS = 1000
const DEFAULT_READ_MAX_BYTES = 1024 * 1024
const NEXT_PARTITION_ID = 'next-partition-id'

export interface LmdbLogStoreOptions {
  readonly dataDir: string
  /** This node's id: the origin of every partition it appends to. */
  readonly origin: string
  /** Appends waiting for a commit; beyond it append() rejects with TRIB_APPEND_QUEUE_FULL. */
  readonly maxPendingAppends: number
  readonly readOnly?: boolean
  readonly tailBatchesChecked?: number
  /**
   * Called for every damaged batch found (log it, count it): `quarantined` at open
   * (moved out of the log, unless read-only), `skipped` by a read.
   */
  readonly onCorrupt?: (batch: CorruptBatch, action: 'quarantined' | 'skipped') => void
}

interface PartitionMeta {
  id: number
  stream: string
  origin: string
  partition: number
  firstOffset: number
  nextOffset: number
  bytes: number
  lastTimestampMs: number | null
}

interface Pending {
  readonly request: AppendRequest
  readonly resolve: (appended: Appended[]) => void
  readonly reject: (err: unknown) => void
}

/** Work that must run inside the next commit's transaction (registry, retention, quarantine). */
interface Maintenance {
  readonly run: () => void
  readonly resolve: () => void
  readonly reject: (err: unknown) => void
}

function partitionKey(stream: string, origin: string, partition: number): string {
  return `partition:${stream}:${origin}:${partition}`
}

function batchKey(partitionId: number, baseOffset: number): Buffer {
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

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/**
 * lmdb-js rejects a failed commit's writes with a generic error whose
 * `commitError` is a second, already rejected promise holding the cause (ENOSPC,
 * EIO). Nobody else handles that promise, so it is read here: otherwise the
 * process would die of an unhandled rejection on a full disk.
 */
async function commitErrorText(err: unknown): Promise<string> {
  const commitError = (err as { commitError?: Promise<unknown> } | null)?.commitError
  if (!(commitError instanceof Promise)) return errorText(err)
  try {
    await commitError
    return errorText(err)
  } catch (cause) {
    return errorText(cause)
  }
}

export class LmdbLogStore implements LogStore {
  readonly #options: LmdbLogStoreOptions
  #root: RootDatabase | null = null
  #batches!: Database<Buffer, Buffer>
  #meta!: Database<PartitionMeta | number, string>
  #markers!: Database<Marker, string>
  #quarantine!: Database<{ batch: Buffer; error: string; atMs: number }, Buffer>
  readonly #partitions = new Map<string, PartitionMeta>()
  /** This origin's partitions by stream and number: the append path's lookup. */
  readonly #local = new Map<string, PartitionMeta[]>()
  readonly #floors = new Map<string, Map<string, number>>()
  #queue: Pending[] = []
  #maintenance: Maintenance[] = []
  #committing: Promise<void> | null = null
  #unflushedSinceMs: number | null = null
  #opened: Promise<RecoveryReport> | null = null
  #closing: Promise<void> | null = null

  constructor(options: LmdbLogStoreOptions) {
    this.#options = options
  }

  open(): Promise<RecoveryReport> {
    this.#opened ??= this.#open()
    return this.#opened
  }

  async #open(): Promise<RecoveryReport> {
    const readOnly = this.#options.readOnly === true
    if (!readOnly) {
      try {
        mkdirSync(this.#options.dataDir, { recursive: true })
      } catch (err) {
        throw new TributaryError('TRIB_DATA_DIR_UNUSABLE', this.#options.dataDir, { cause: err })
      }
    }
    const root = open({
      path: join(this.#options.dataDir, LMDB_FILE),
      maxDbs: 32,
      readOnly,
      overlappingSync: true,
      separateFlushed: true,
    })
    this.#root = root
    this.#batches = root.openDB<Buffer, Buffer>({
      name: 'log-batches',
      keyEncoding: 'binary',
      encoding: 'binary',
    })
    this.#meta = root.openDB<PartitionMeta | number, string>({ name: 'log-meta' })
    this.#markers = root.openDB<Marker, string>({ name: 'log-markers' })
    this.#quarantine = root.openDB({ name: 'log-quarantine', keyEncoding: 'binary' })
    this.#loadPartitions()
    return this.#recover(readOnly)
  }

  #loadPartitions(): void {
    for (const { key, value } of this.#meta.getRange({ start: 'partition:', end: 'partition;' })) {
      if (typeof value === 'object') this.#register(key, { ...value })
    }
  }

  #register(key: string, meta: PartitionMeta): void {
    this.#partitions.set(key, meta)
    if (meta.origin !== this.#options.origin) return
    let list = this.#local.get(meta.stream)
    if (list === undefined) {
      list = []
      this.#local.set(meta.stream, list)
    }
    list[meta.partition] = meta
  }

  /** Read-only opens: see what the writing process committed since (for `tail --follow`). */
  refresh(): void {
    if (this.#options.readOnly !== true || this.#root === null) return
    this.#root.resetReadTxn()
    this.#loadPartitions()
  }

  /** The LMDB environment, for other modules that keep their state beside the log (MQTT sessions). */
  get environment(): RootDatabase {
    if (this.#root === null) throw new TributaryError('TRIB_STORE_CLOSED', 'open() the store first')
    return this.#root
  }

  async #recover(readOnly: boolean): Promise<RecoveryReport> {
    const limit = this.#options.tailBatchesChecked ?? DEFAULT_TAIL_BATCHES_CHECKED
    const quarantined: CorruptBatch[] = []
    let batchesChecked = 0
    for (const meta of this.#partitions.values()) {
      const tail = this.#batches.getRange({
        start: partitionPrefix(meta.id + 1),
        end: partitionPrefix(meta.id),
        reverse: true,
        limit,
      })
      for (const { key, value } of tail) {
        batchesChecked++
        const damage = this.#check(meta, key, value)
        if (damage === null) continue
        quarantined.push(damage)
        this.#options.onCorrupt?.(damage, 'quarantined')
      }
    }
    if (!readOnly && quarantined.length > 0) {
      await this.#inNextCommit(() => {
        for (const damage of quarantined) this.#quarantineBatch(damage)
      })
    }
    return { partitions: this.#partitions.size, batchesChecked, quarantined }
  }

  #check(meta: PartitionMeta, key: Buffer, value: Buffer): CorruptBatch | null {
    const baseOffset = Number(key.readBigUInt64BE(4))
    try {
      const header = verifyBatch(value)
      if (header.baseOffset !== baseOffset) throw new Error(`header says base offset ${header.baseOffset}`)
      decodeBatch(value)
      return null
    } catch (err) {
      let recordCount: number | null = null
      try {
        recordCount = readBatchHeader(value).recordCount
      } catch {
        // The header itself is unreadable: the record count stays unknown.
      }
      return {
        stream: meta.stream,
        partition: meta.partition,
        baseOffset,
        recordCount,
        error: errorText(err),
      }
    }
  }

  #quarantineBatch(damage: CorruptBatch): void {
    const meta = this.#partition(damage)
    const key = batchKey(meta.id, damage.baseOffset)
    const batch = this.#batches.getBinary(key)
    if (batch === undefined) return
    this.#quarantine.putSync(key, { batch: Buffer.from(batch), error: damage.error, atMs: Date.now() })
    this.#batches.removeSync(key)
    meta.bytes = Math.max(0, meta.bytes - batch.length)
    if (damage.baseOffset === meta.firstOffset)
      meta.firstOffset = this.#firstOffsetAfter(meta, damage.baseOffset)
    this.#meta.putSync(partitionKey(meta.stream, meta.origin, meta.partition), meta)
  }

  #firstOffsetAfter(meta: PartitionMeta, offset: number): number {
    for (const key of this.#batches.getKeys({
      start: batchKey(meta.id, offset + 1),
      end: batchKey(meta.id + 1, 0),
    })) {
      return Number(key.readBigUInt64BE(4))
    }
    return meta.nextOffset
  }

  #partition(ref: PartitionRef): PartitionMeta {
    const partitions = this.#local.get(ref.stream)
    const meta = partitions?.[ref.partition]
    if (meta === undefined) {
      const known = partitions !== undefined
      throw new TributaryError(
        known ? 'TRIB_PARTITION_UNKNOWN' : 'TRIB_STREAM_UNKNOWN',
        known ? `${ref.stream} has no partition ${ref.partition}` : ref.stream,
      )
    }
    return meta
  }

  #assertOpen(): void {
    if (this.#root === null || this.#closing !== null) {
      throw new TributaryError('TRIB_STORE_CLOSED')
    }
  }

  async ensureStream(stream: string, partitions: number): Promise<void> {
    this.#assertOpen()
    const added: PartitionMeta[] = []
    let nextId = (this.#meta.get(NEXT_PARTITION_ID) as number | undefined) ?? 0
    for (let p = 0; p < partitions; p++) {
      const key = partitionKey(stream, this.#options.origin, p)
      if (this.#partitions.has(key)) continue
      const meta: PartitionMeta = {
        id: nextId++,
        stream,
        origin: this.#options.origin,
        partition: p,
        firstOffset: 0,
        nextOffset: 0,
        bytes: 0,
        lastTimestampMs: null,
      }
      this.#register(key, meta)
      added.push(meta)
    }
    if (added.length === 0) return
    await this.#inNextCommit(() => {
      for (const meta of added)
        this.#meta.putSync(partitionKey(meta.stream, meta.origin, meta.partition), meta)
      this.#meta.putSync(NEXT_PARTITION_ID, nextId)
    })
  }

  append(request: AppendRequest): Promise<Appended[]> {
    try {
      this.#assertOpen()
      for (const entry of request.entries) this.#partition(entry)
    } catch (err) {
      return Promise.reject(err)
    }
    if (this.#queue.length >= this.#options.maxPendingAppends) {
      return Promise.reject(
        new TributaryError('TRIB_APPEND_QUEUE_FULL', `${this.#queue.length} appends wait for the disk`),
      )
    }
    return new Promise<Appended[]>((resolve, reject) => {
      this.#queue.push({ request, resolve, reject })
      this.#schedule()
    })
  }

  #inNextCommit(run: () => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#maintenance.push({ run, resolve, reject })
      this.#schedule()
    })
  }

  /** Starts a commit unless one is running; the running one re-schedules when it ends. */
  #schedule(): void {
    if (this.#committing !== null) return
    this.#committing = new Promise<void>((resolve) => {
      // setImmediate, not a timer: gathers what this turn's socket reads produced.
      setImmediate(() => {
        this.#runCommit().then(resolve, resolve)
      })
    })
  }

  async #runCommit(): Promise<void> {
    try {
      await this.#commit()
    } finally {
      this.#committing = null
      if (this.#queue.length > 0 || this.#maintenance.length > 0) this.#schedule()
    }
  }

  /** One group commit: every queued append and maintenance task in one LMDB transaction. */
  async #commit(): Promise<void> {
    const pending = this.#queue
    const maintenance = this.#maintenance
    this.#queue = []
    this.#maintenance = []
    if (pending.length === 0 && maintenance.length === 0) return
    const root = this.#root
    if (root === null) throw new TributaryError('TRIB_STORE_CLOSED')

    const nowMs = Date.now()
    const snapshots = new Map<PartitionMeta, PartitionMeta>()
    const grouped = new Map<PartitionMeta, TimedRecord[]>()
    const results: Appended[][] = pending.map((p) =>
      p.request.entries.map((entry) => {
        const meta = this.#partition(entry)
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
      }),
    )

    let written: Promise<boolean> & { flushed?: Promise<void> }
    try {
      // Inside the callback the *Sync calls write into this transaction (lmdb-js);
      // the async put() would return one more promise per write, rejected unhandled
      // when the commit fails (a full disk).
      written = root.transaction(() => {
        for (const task of maintenance) task.run()
        for (const [meta, records] of grouped) {
          const base = meta.nextOffset - records.length
          const batch = encodeBatch(base, records)
          this.#batches.putSync(batchKey(meta.id, base), batch)
          meta.bytes += batch.length
          this.#meta.putSync(partitionKey(meta.stream, meta.origin, meta.partition), meta)
        }
        pending.forEach((p, i) => {
          const marker = p.request.marker
          if (marker === undefined) return
          const offsets = (results[i] ?? []).map((a) => [a.stream, a.partition, a.offset] as const)
          this.#markers.putSync(marker.key, { digest: marker.digest, offsets })
        })
        return true
      })
      await written
    } catch (err) {
      for (const [meta, before] of snapshots) Object.assign(meta, before)
      const failure = new TributaryError('TRIB_STORE_WRITE_FAILED', await commitErrorText(err), {
        cause: err,
      })
      for (const p of pending) p.reject(failure)
      for (const task of maintenance) task.reject(failure)
      return
    }
    for (const task of maintenance) task.resolve()

    const committedAtMs = Date.now()
    this.#unflushedSinceMs ??= committedAtMs
    const afterFlush: number[] = []
    pending.forEach((p, i) => {
      const { durability, relaxedFlushMs = 0 } = p.request
      const flushOverdue =
        this.#unflushedSinceMs !== null && committedAtMs - this.#unflushedSinceMs > relaxedFlushMs
      if (durability === 'relaxed' && !flushOverdue) p.resolve(results[i] ?? [])
      else afterFlush.push(i)
    })
    // The next commit may start while this one is being fsync'd (overlapping sync);
    // durable waiters are released in commit order as flushes complete. One
    // handler per commit, not per waiter, and it also takes a failed flush.
    ;(written.flushed ?? root.flushed).then(
      () => {
        if (this.#unflushedSinceMs !== null && this.#unflushedSinceMs <= committedAtMs)
          this.#unflushedSinceMs = null
        for (const i of afterFlush) pending[i]?.resolve(results[i] ?? [])
      },
      (err: unknown) => {
        const failure = new TributaryError('TRIB_STORE_WRITE_FAILED', `fsync failed: ${errorText(err)}`, {
          cause: err,
        })
        for (const i of afterFlush) pending[i]?.reject(failure)
      },
    )
  }

  read(ref: PartitionRef, fromOffset: number, limits: ReadLimits = {}): ReadResult {
    const meta = this.#partition(ref)
    const maxRecords = limits.maxRecords ?? DEFAULT_READ_MAX_RECORDS
    const maxBytes = limits.maxBytes ?? DEFAULT_READ_MAX_BYTES
    const start = Math.max(fromOffset, meta.firstOffset)
    const records: ReadResult['records'] = []
    const corrupt: CorruptBatch[] = []
    let next = start
    let bytes = 0
    const first = this.#batches.getRange({
      start: batchKey(meta.id, start),
      end: partitionPrefix(meta.id),
      reverse: true,
      limit: 1,
    })
    let from = start
    for (const { key } of first) from = Number(key.readBigUInt64BE(4))
    for (const { key, value } of this.#batches.getRange({
      start: batchKey(meta.id, from),
      end: batchKey(meta.id + 1, 0),
    })) {
      if (records.length >= maxRecords || (bytes >= maxBytes && records.length > 0)) break
      const baseOffset = Number(key.readBigUInt64BE(4))
      let decoded: ReadResult['records']
      try {
        decoded = decodeBatch(value)
      } catch (err) {
        const damage = this.#check(meta, key, value) ?? {
          stream: meta.stream,
          partition: meta.partition,
          baseOffset,
          recordCount: null,
          error: errorText(err),
        }
        corrupt.push(damage)
        this.#options.onCorrupt?.(damage, 'skipped')
        next = this.#firstOffsetAfter(meta, baseOffset)
        continue
      }
      for (const record of decoded) {
        if (record.offset < next) continue
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
   * timestamps are sorted by offset: bisect over offsets, reading only batch
   * headers, instead of keeping (and writing, every commit) a time index.
   */
  offsetForTimestamp(ref: PartitionRef, timestampMs: number): number {
    const meta = this.#partition(ref)
    let lo = meta.firstOffset
    let hi = meta.nextOffset
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2)
      const header = this.#headerAtOrBefore(meta, mid)
      if (header === null) {
        lo = mid + 1
      } else if (header.maxTimestampMs >= timestampMs) {
        hi = header.baseOffset
      } else {
        lo = Math.max(header.baseOffset + header.recordCount, mid + 1)
      }
    }
    for (const { value } of this.#batches.getRange({
      start: batchKey(meta.id, lo),
      end: partitionPrefix(meta.id + 1),
    })) {
      let records: ReadResult['records']
      try {
        records = decodeBatch(value)
      } catch {
        continue
      }
      const hit = records.find((r) => r.timestampMs >= timestampMs)
      if (hit !== undefined) return Math.max(hit.offset, meta.firstOffset)
    }
    return meta.nextOffset
  }

  /** The header of the batch holding `offset` or the nearest one before it; null if none or unreadable. */
  #headerAtOrBefore(meta: PartitionMeta, offset: number): BatchHeader | null {
    for (const { value } of this.#batches.getRange({
      start: batchKey(meta.id, offset),
      end: partitionPrefix(meta.id),
      reverse: true,
      limit: 1,
    })) {
      try {
        return readBatchHeader(value)
      } catch {
        return null
      }
    }
    return null
  }

  partitions(): PartitionStatus[] {
    return [...this.#partitions.values()]
      .map((m) => ({
        stream: m.stream,
        partition: m.partition,
        origin: m.origin,
        firstOffset: m.firstOffset,
        nextOffset: m.nextOffset,
        bytes: m.bytes,
        lastTimestampMs: m.lastTimestampMs,
      }))
      .sort((a, b) => a.stream.localeCompare(b.stream) || a.partition - b.partition)
  }

  marker(key: string): Marker | undefined {
    return this.#markers.get(key)
  }

  async removeMarkers(keyPrefix: string): Promise<void> {
    this.#assertOpen()
    const keys = [...this.#markers.getKeys({ start: keyPrefix, end: `${keyPrefix}\uffff` })]
    if (keys.length === 0) return
    await this.#inNextCommit(() => {
      for (const key of keys) this.#markers.removeSync(key)
    })
  }

  setRetentionFloor(holder: string, ref: PartitionRef, offset: number): void {
    const key = partitionKey(ref.stream, this.#options.origin, ref.partition)
    let holders = this.#floors.get(key)
    if (holders === undefined) {
      holders = new Map()
      this.#floors.set(key, holders)
    }
    holders.set(holder, offset)
  }

  removeRetentionFloor(holder: string, ref: PartitionRef): void {
    this.#floors.get(partitionKey(ref.stream, this.#options.origin, ref.partition))?.delete(holder)
  }

  #floor(meta: PartitionMeta): number {
    const holders = this.#floors.get(partitionKey(meta.stream, meta.origin, meta.partition))
    return holders === undefined || holders.size === 0
      ? Number.POSITIVE_INFINITY
      : Math.min(...holders.values())
  }

  async applyRetention(
    policyFor: (stream: string) => RetentionPolicy | undefined,
    nowMs: number,
    options: { force?: boolean } = {},
  ): Promise<RetentionReport> {
    this.#assertOpen()
    const report = { batchesDeleted: 0, recordsDeleted: 0, bytesDeleted: 0, heldBack: [] as PartitionRef[] }
    const deletions: Array<{
      meta: PartitionMeta
      key: Buffer
      header: ReturnType<typeof readBatchHeader>
      size: number
    }> = []
    for (const meta of this.#partitions.values()) {
      const policy = policyFor(meta.stream)
      if (policy === undefined) continue
      const floor = options.force === true ? Number.POSITIVE_INFINITY : this.#floor(meta)
      let remaining = meta.bytes
      for (const { key, value } of this.#batches.getRange({
        start: batchKey(meta.id, 0),
        end: batchKey(meta.id + 1, 0),
      })) {
        let header: ReturnType<typeof readBatchHeader>
        try {
          header = readBatchHeader(value)
        } catch {
          break
        }
        const tooOld = policy.maxAgeMs !== null && header.maxTimestampMs < nowMs - policy.maxAgeMs
        const tooBig = policy.maxBytes !== null && remaining > policy.maxBytes
        if (!tooOld && !tooBig) break
        if (header.baseOffset + header.recordCount > floor) {
          report.heldBack.push({ stream: meta.stream, partition: meta.partition })
          break
        }
        deletions.push({ meta, key: Buffer.from(key), header, size: value.length })
        remaining -= value.length
      }
    }
    if (deletions.length === 0) return report
    await this.#inNextCommit(() => {
      for (const { meta, key, header, size } of deletions) {
        this.#batches.removeSync(key)
        meta.bytes = Math.max(0, meta.bytes - size)
        meta.firstOffset = Math.max(meta.firstOffset, header.baseOffset + header.recordCount)
        this.#meta.putSync(partitionKey(meta.stream, meta.origin, meta.partition), meta)
        report.batchesDeleted++
        report.recordsDeleted += header.recordCount
        report.bytesDeleted += size
      }
    })
    return report
  }

  verify(): VerifyReport {
    const corrupt: CorruptBatch[] = []
    const gaps: Array<PartitionRef & { from: number; to: number }> = []
    let batchesChecked = 0
    let records = 0
    for (const meta of this.#partitions.values()) {
      let expected = meta.firstOffset
      for (const { key, value } of this.#batches.getRange({
        start: batchKey(meta.id, 0),
        end: batchKey(meta.id + 1, 0),
      })) {
        batchesChecked++
        const baseOffset = Number(key.readBigUInt64BE(4))
        if (baseOffset > expected) {
          gaps.push({ stream: meta.stream, partition: meta.partition, from: expected, to: baseOffset - 1 })
        }
        const damage = this.#check(meta, key, value)
        if (damage !== null) {
          corrupt.push(damage)
          expected = this.#firstOffsetAfter(meta, baseOffset)
          continue
        }
        const count = readBatchHeader(value).recordCount
        records += count
        expected = baseOffset + count
      }
      if (expected < meta.nextOffset) {
        gaps.push({ stream: meta.stream, partition: meta.partition, from: expected, to: meta.nextOffset - 1 })
      }
    }
    let quarantined = 0
    for (const _ of this.#quarantine.getKeys()) quarantined++
    return { batchesChecked, records, corrupt, gaps, quarantined }
  }

  async idle(): Promise<void> {
    while (this.#committing !== null) await this.#committing
    if (this.#root !== null) await this.#root.flushed
  }

  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close(): Promise<void> {
    if (this.#opened !== null) await this.#opened.catch(() => undefined)
    await this.idle()
    const root = this.#root
    if (root === null) return
    await root.close()
    this.#root = null
  }
}
