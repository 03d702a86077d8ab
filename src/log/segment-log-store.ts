// The partitioned log: batches in append-only segment files, everything else
// in one LMDB environment. Group commit: every append that arrives while a
// commit runs goes into the next one; a commit becomes one frame
// (frame-codec.ts: each touched partition's batch plus the marker changes)
// appended to the active segment, then ONE fdatasync before `durable`
// appends resolve (log-writer.ts runs it). This file owns the lifecycle
// (open, replay, quarantine, close) and the read-side API.
//
// On disk, under <dataDir>:
//   segments/<seq>.seg  frames, one global sequence (segment-files.ts); rolled at `segmentBytes`
//   log.mdb             the node's LMDB environment (node-environment.ts has its layout),
//                       committed lazily (every `indexCommitMs` or `indexMaxPendingBatches`);
//                       the log's databases are log-index, log-meta, log-segments,
//                       log-markers and log-quarantine.
// The index commit first syncs the segment, so LMDB is never ahead of the
// segments; at open, frames after "segment-position" are replayed
// (store-recovery.ts). Read-only openers replay them in memory.
//
// Over 400 lines: this is the facade of two seams (LogStore, and ReplicaLog
// for replication) and owns the lifecycle; each method is short, the work is
// in its parts (log-state, partition-reads, log-writer, quarantine,
// replica-copies, store-recovery, node-environment).
//
// The store opens the environment and closes it last: the other modules that
// keep state in it (sessions, cursors, consumer groups) use `environment`
// while the store is open and finish their writes before close().

import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Database } from 'lmdb'
import { TributaryError } from '../errors.ts'
import type { Metrics } from '../observability/metrics.ts'
import { FIRST_INCARNATION } from './batch-codec.ts'
import { BatchIndex } from './batch-index.ts'
import { unobserved } from './index-committer.ts'
import { LogState } from './log-state.ts'
import type {
  Appended,
  AppendRequest,
  CorruptBatch,
  LocalPartitionRef,
  LogStore,
  Marker,
  PartitionRef,
  PartitionStatus,
  ReadLimits,
  ReadResult,
  RecoveryReport,
  ReplicaLog,
  RetentionPolicy,
  RetentionReport,
  StoredBatch,
  VerifyReport,
} from './log-store.ts'
import { partitionRef } from './log-store.ts'
import { LogWriter } from './log-writer.ts'
import { MarkerOverlay } from './marker-overlay.ts'
import { NodeEnvironment } from './node-environment.ts'
import { PartitionReads } from './partition-reads.ts'
import { Quarantine } from './quarantine.ts'
import { ReplicaCopies } from './replica-copies.ts'
import { SegmentAppender } from './segment-appender.ts'
import {
  DEFAULT_SEGMENT_BYTES,
  listSegments,
  MAX_SEGMENT_BYTES,
  SEGMENTS_DIR,
  SegmentReader,
} from './segment-files.ts'
import {
  moveForeignSegments,
  NEXT_PARTITION_ID,
  type PartitionMeta,
  replaySegments,
  SEGMENT_POSITION,
  type SegmentPosition,
  type SegmentUse,
} from './store-recovery.ts'

export const DEFAULT_TAIL_BATCHES_CHECKED = 8
const DEFAULT_INDEX_COMMIT_MS = 200
const DEFAULT_INDEX_MAX_PENDING_BATCHES = 4096

export interface SegmentLogStoreOptions {
  readonly dataDir: string
  /** This node's id: the origin of every partition it appends to. */
  readonly origin: string
  /** Appends waiting for a commit; beyond it append() rejects with TRIB_APPEND_QUEUE_FULL. */
  readonly maxPendingAppends: number
  readonly readOnly?: boolean
  readonly tailBatchesChecked?: number
  /** A segment file is rolled once the next frame would take it past this size. */
  readonly segmentBytes?: number
  /** The index is committed to LMDB at most this long after a frame was written... */
  readonly indexCommitMs?: number
  /** ...or once this many batches wait for it. */
  readonly indexMaxPendingBatches?: number
  /**
   * Called for every damaged batch found (log it, count it): `quarantined` at open
   * (moved out of the log, unless read-only), `skipped` by a read.
   */
  readonly onCorrupt?: (batch: CorruptBatch, action: 'quarantined' | 'skipped') => void
  /** Told each group commit's size and each fsync's duration. */
  readonly metrics?: Pick<Metrics, 'commitWritten' | 'synced'>
  /** The incarnation appends are written in until `beginIncarnation` (default: the first). */
  readonly incarnation?: number
}

export class SegmentLogStore implements LogStore, ReplicaLog {
  readonly #options: SegmentLogStoreOptions
  readonly #segmentsDir: string
  readonly #reader: SegmentReader
  #env: NodeEnvironment | null = null
  #meta!: Database<PartitionMeta | SegmentPosition | number, string>
  #quarantine!: Quarantine
  #copies!: ReplicaCopies
  /** Waiting for the next fdatasync that makes records durable (nextDurable). */
  readonly #durableWaiters = new Set<() => void>()
  #segmentUse!: Database<SegmentUse, number>
  #index!: BatchIndex
  #markers!: MarkerOverlay
  #reads!: PartitionReads
  #writer: LogWriter | null = null
  #position: SegmentPosition = { segment: 1, position: 0 }
  #state!: LogState
  #incarnation: number
  /** Set by beginIncarnation: this node's own tail can no longer be recovered. */
  #incarnationBegun = false
  #nextPartitionId = 0
  #opened: Promise<RecoveryReport> | null = null
  #closing: Promise<void> | null = null

  constructor(options: SegmentLogStoreOptions) {
    this.#options = options
    this.#segmentsDir = join(options.dataDir, SEGMENTS_DIR)
    this.#reader = new SegmentReader(this.#segmentsDir)
    this.#incarnation = options.incarnation ?? FIRST_INCARNATION
  }

  get origin(): string {
    return this.#options.origin
  }

  get incarnation(): number {
    return this.#incarnation
  }

  beginIncarnation(incarnation: number): void {
    if (!Number.isInteger(incarnation) || incarnation < this.#incarnation || incarnation > 0xffff_ffff)
      throw new TributaryError(
        'TRIB_INTERNAL',
        `incarnation ${incarnation} does not follow ${this.#incarnation} (a u32 that never goes back)`,
      )
    this.#incarnation = incarnation
    this.#incarnationBegun = true
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
    const env = NodeEnvironment.open(this.#options.dataDir, { readOnly })
    this.#env = env
    this.#meta = env.database('log-meta')
    this.#segmentUse = env.database('log-segments')
    this.#index = new BatchIndex(env.database('log-index'))
    this.#state = new LogState(this.#options.origin, this.#index)
    this.#markers = new MarkerOverlay(env.database('log-markers'))
    this.#quarantine = new Quarantine(env, this.#state, this.#index)
    this.#copies = new ReplicaCopies({
      state: this.#state,
      index: this.#index,
      reader: this.#reader,
      quarantine: this.#quarantine,
      onDamaged: (damage) => this.#options.onCorrupt?.(damage, 'skipped'),
    })
    this.#reads = new PartitionReads(this.#index, this.#reader, (damage) =>
      this.#options.onCorrupt?.(damage, 'skipped'),
    )
    const stored = this.#storedPosition()
    if (stored === null && !readOnly) moveForeignSegments(this.#segmentsDir)
    if (stored !== null) this.#position = stored
    for (const { key, value } of this.#segmentUse.getRange()) this.#state.segments.set(key, { ...value })
    const replay = this.#loadAndReplay()
    for (const damage of replay.damaged) this.#options.onCorrupt?.(damage, 'quarantined')
    if (readOnly) {
      // Reported like at a writable open (the interface's `quarantined`), but nothing is moved.
      const tails = this.#quarantine.checkTails(
        this.#reads,
        this.#options.tailBatchesChecked ?? DEFAULT_TAIL_BATCHES_CHECKED,
      )
      for (const { damage } of tails.damaged) this.#options.onCorrupt?.(damage, 'quarantined')
      return {
        partitions: this.#state.size,
        batchesChecked: replay.frames + tails.checked,
        quarantined: [...replay.damaged, ...tails.damaged.map((d) => d.damage)],
      }
    }

    mkdirSync(this.#segmentsDir, { recursive: true })
    const last = replay.last ?? this.#position
    const appender = await SegmentAppender.open(
      this.#segmentsDir,
      this.#segmentBytes,
      replay.appendable ? last.segment : last.segment + 1,
      replay.appendable ? last.position : 0,
      (sequence) => this.#state.use(sequence),
    )
    const writer = new LogWriter({
      env,
      meta: this.#meta,
      segmentUse: this.#segmentUse,
      index: this.#index,
      markers: this.#markers,
      state: this.#state,
      appender,
      indexCommitMs: this.#options.indexCommitMs ?? DEFAULT_INDEX_COMMIT_MS,
      indexMaxPendingBatches: this.#options.indexMaxPendingBatches ?? DEFAULT_INDEX_MAX_PENDING_BATCHES,
      metrics: this.#options.metrics,
      incarnation: () => this.#incarnation,
      onDurable: () => {
        for (const wake of this.#durableWaiters) wake()
        this.#durableWaiters.clear()
      },
    })
    this.#writer = writer
    // A failed commit here (full disk) does not stop the start: the index is tried again later.
    await writer.commitIndex([unobserved(this.#quarantine.task(replay.quarantine))])
    const tails = this.#quarantine.checkTails(
      this.#reads,
      this.#options.tailBatchesChecked ?? DEFAULT_TAIL_BATCHES_CHECKED,
    )
    if (tails.damaged.length > 0) {
      for (const { damage } of tails.damaged) this.#options.onCorrupt?.(damage, 'quarantined')
      await writer.commitIndex([unobserved(this.#quarantine.task(tails.damaged))])
    }
    return {
      partitions: this.#state.size,
      batchesChecked: replay.frames + tails.checked,
      quarantined: [...replay.damaged, ...tails.damaged.map((d) => d.damage)],
    }
  }

  #storedPosition(): SegmentPosition | null {
    const stored = this.#meta.get(SEGMENT_POSITION)
    return typeof stored === 'object' && 'segment' in stored ? { ...stored } : null
  }

  get #segmentBytes(): number {
    return Math.min(this.#options.segmentBytes ?? DEFAULT_SEGMENT_BYTES, MAX_SEGMENT_BYTES)
  }

  /** Partitions from LMDB, then the frames past the index on top. */
  #loadAndReplay(): ReturnType<typeof replaySegments> {
    this.#state.load(this.#meta)
    const next = this.#meta.get(NEXT_PARTITION_ID)
    this.#nextPartitionId = typeof next === 'number' ? next : 0
    return replaySegments(
      {
        reader: this.#reader,
        partition: (id) => this.#state.byId(id),
        addEntry: (meta, entry) => this.#state.addEntry(meta, entry),
        markerChange: (change) => this.#markers.apply(change),
        isHole: (meta, batch) => {
          try {
            this.#copies.checkHole(meta, batch)
            return true
          } catch {
            return false
          }
        },
      },
      this.#segmentsDir,
      this.#position,
    )
  }

  /** Read-only opens: see what the writing process acknowledged since (for `tail --follow`). */
  refresh(): void {
    if (this.#options.readOnly !== true || this.#env === null) return
    this.#env.resetReadTxn()
    this.#index.committed()
    this.#markers.committed()
    this.#state.committed()
    this.#position = this.#storedPosition() ?? this.#position
    this.#loadAndReplay()
  }

  /** The LMDB environment, for the modules that keep their state beside the log (node-environment.ts). */
  get environment(): NodeEnvironment {
    if (this.#env === null) throw new TributaryError('TRIB_STORE_CLOSED', 'open() the store first')
    return this.#env
  }

  /** The write side; TRIB_STORE_CLOSED for read-only opens and before open(). */
  #writable(): LogWriter {
    if (this.#writer === null)
      throw new TributaryError('TRIB_STORE_CLOSED', 'the store is not open for writing')
    return this.#writer
  }

  #assertOpen(): void {
    if (this.#env === null || this.#closing !== null) throw new TributaryError('TRIB_STORE_CLOSED')
  }

  /**
   * New partitions are committed, and LMDB flushed, before this resolves: a
   * frame that names a partition id must never outlive the id's registration.
   */
  async ensureStream(stream: string, partitions: number): Promise<void> {
    this.#assertOpen()
    const refs = Array.from({ length: partitions }, (_, partition) => ({
      stream,
      origin: this.origin,
      partition,
    }))
    await this.#register(
      refs.filter((ref) => this.#state.get(ref) === undefined),
      0,
    )
  }

  /** Registers partitions starting at `firstOffset`, committed and flushed before it resolves. */
  async #register(refs: readonly PartitionRef[], firstOffset: number): Promise<void> {
    if (refs.length === 0) return
    for (const ref of refs) {
      const meta: PartitionMeta = {
        id: this.#nextPartitionId++,
        stream: ref.stream,
        origin: ref.origin,
        partition: ref.partition,
        firstOffset,
        nextOffset: firstOffset,
        bytes: 0,
        lastTimestampMs: null,
      }
      this.#state.register(meta)
      this.#state.changed(meta)
    }
    const nextId = this.#nextPartitionId
    await this.#writable().inIndexCommit(() => this.#meta.putSync(NEXT_PARTITION_ID, nextId))
    await this.#env?.flushed
  }

  /** Another origin's partition (never this node's: it is only written by its own appends). */
  #replica(ref: PartitionRef): PartitionMeta {
    this.#notOwn(ref)
    return this.#state.find(ref)
  }

  #notOwn(ref: PartitionRef): void {
    if (ref.origin === this.origin)
      throw new TributaryError(
        'TRIB_INTERNAL',
        `${ref.stream}/${ref.partition} is this node's own, not a replica`,
      )
  }

  async ensureReplica(ref: PartitionRef, firstOffset: number): Promise<void> {
    this.#assertOpen()
    this.#notOwn(ref)
    if (this.#state.get(ref) === undefined) await this.#register([ref], firstOffset)
  }

  appendReplica(ref: PartitionRef, batches: readonly Buffer[]): Promise<void> {
    return this.#appendStored(ref, batches, () => this.#replica(ref))
  }

  appendRecovered(ref: LocalPartitionRef, batches: readonly Buffer[]): Promise<void> {
    const own = partitionRef(this.origin, ref)
    return this.#appendStored(own, batches, () => {
      if (this.#incarnationBegun)
        throw new TributaryError(
          'TRIB_INTERNAL',
          'a recovered tail comes only before new records are written',
        )
      return this.#state.local(ref)
    })
  }

  /** Stored batches appended as they are, at their own offsets (a copy, or this node's own tail recovered). */
  #appendStored(ref: PartitionRef, batches: readonly Buffer[], meta: () => PartitionMeta): Promise<void> {
    let writer: LogWriter
    try {
      this.#assertOpen()
      this.#copies.check(meta(), batches)
      writer = this.#writable()
    } catch (err) {
      return Promise.reject(err)
    }
    if (batches.length === 0) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      writer.enqueue({ kind: 'replica', ref, batches, resolve, reject })
    })
  }

  async repairBatch(ref: LocalPartitionRef, batch: Buffer): Promise<void> {
    let writer: LogWriter
    const own = partitionRef(this.origin, ref)
    try {
      this.#assertOpen()
      this.#copies.checkHole(this.#state.local(ref), batch)
      writer = this.#writable()
    } catch (err) {
      return Promise.reject(err)
    }
    await new Promise<void>((resolve, reject) => {
      writer.enqueue({ kind: 'repair', ref: own, batch, resolve, reject })
    })
    // In the index at once: a repair is below the partition's end, where a replay would not look for it.
    await writer.commitIndex([])
    await this.#env?.flushed
  }

  async restartReplica(ref: PartitionRef, fromOffset: number, reason: string): Promise<number> {
    this.#assertOpen()
    const meta = this.#replica(ref)
    const moved = { count: 0 }
    await this.#writable().inIndexCommit(this.#copies.restartTask(meta, fromOffset, reason, moved))
    await this.#env?.flushed
    return moved.count
  }

  readBatches(ref: PartitionRef, fromOffset: number, maxBytes: number): StoredBatch[] {
    return this.#copies.read(this.#state.find(ref), fromOffset, this.durableNext(ref), maxBytes)
  }

  lastBatchBefore(ref: PartitionRef, nextOffset: number): { incarnation: number; crc: number } | null {
    return this.#copies.lastBefore(this.#state.find(ref), nextOffset)
  }

  durableNext(ref: PartitionRef): number {
    const meta = this.#state.find(ref)
    return Math.min(meta.nextOffset, this.#writer?.durableNext(meta.id) ?? meta.nextOffset)
  }

  nextDurable(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#durableWaiters.delete(wake)
        resolve()
      }, timeoutMs)
      const wake = (): void => {
        clearTimeout(timer)
        resolve()
      }
      this.#durableWaiters.add(wake)
    })
  }

  append(request: AppendRequest): Promise<Appended[]> {
    try {
      this.#assertOpen()
      for (const entry of request.entries) this.#state.local(entry)
    } catch (err) {
      return Promise.reject(err)
    }
    const writer = this.#writable()
    if (writer.queued >= this.#options.maxPendingAppends) {
      return Promise.reject(
        new TributaryError('TRIB_APPEND_QUEUE_FULL', `${writer.queued} appends wait for the disk`),
      )
    }
    return new Promise<Appended[]>((resolve, reject) => {
      writer.enqueue({ kind: 'append', request, resolve, reject })
    })
  }

  /** Written in the next frame like an append, and durable when this resolves. */
  removeMarkers(keyPrefix: string): Promise<void> {
    let writer: LogWriter
    try {
      this.#assertOpen()
      writer = this.#writable()
    } catch (err) {
      return Promise.reject(err)
    }
    return new Promise<void>((resolve, reject) => {
      writer.enqueue({ kind: 'remove', prefix: keyPrefix, resolve, reject })
    })
  }

  marker(key: string): Marker | undefined {
    return this.#markers.get(key)
  }

  read(ref: PartitionRef, fromOffset: number, limits: ReadLimits = {}): ReadResult {
    const meta = this.#state.find(ref)
    if (limits.durableOnly !== true) return this.#reads.read(meta, fromOffset, limits)
    // Written records whose fdatasync has not finished yet are left for a later read.
    const durable = this.#writer?.durableNext(meta.id) ?? null
    if (durable === null || durable >= meta.nextOffset) return this.#reads.read(meta, fromOffset, limits)
    return this.#reads.read({ ...meta, nextOffset: durable }, fromOffset, limits)
  }

  offsetForTimestamp(ref: PartitionRef, timestampMs: number): number {
    return this.#reads.offsetForTimestamp(this.#state.find(ref), timestampMs)
  }

  partitions(): PartitionStatus[] {
    return this.#state.statuses()
  }

  localPartitions(): PartitionStatus[] {
    return this.#state.statuses(this.origin)
  }

  partition(ref: PartitionRef): PartitionStatus | undefined {
    const meta = this.#state.get(ref)
    return meta === undefined ? undefined : this.#state.status(meta)
  }

  setRetentionFloor(holder: string, ref: PartitionRef, offset: number): void {
    this.#state.setFloor(holder, ref, offset)
  }

  removeRetentionFloor(holder: string, ref: PartitionRef): void {
    this.#state.removeFloor(holder, ref)
  }

  /**
   * Deletes index entries from the front of each partition, then every
   * segment file no entry refers to any more (once LMDB has flushed the
   * deletion: a crash must never bring back an index entry whose file is gone).
   */
  async applyRetention(
    policyFor: (ref: PartitionRef) => RetentionPolicy | undefined,
    nowMs: number,
    options: { force?: boolean } = {},
  ): Promise<RetentionReport> {
    this.#assertOpen()
    let report: RetentionReport | null = null
    const writer = this.#writable()
    await writer.inIndexCommit(() => {
      report = this.#state.retain(policyFor, nowMs, options.force === true)
      this.#state.dropUnused(writer.activeSegment)
    })
    await this.#env?.flushed
    this.#removeUnusedSegments()
    return report ?? { batchesDeleted: 0, recordsDeleted: 0, bytesDeleted: 0, heldBack: [] }
  }

  #removeUnusedSegments(): void {
    const active = this.#writer?.activeSegment ?? 0
    for (const seq of listSegments(this.#segmentsDir)) {
      if (seq >= active || this.#state.segments.has(seq)) continue
      try {
        this.#reader.remove(seq)
      } catch {
        // Already gone, or not removable now: the next retention run tries again.
      }
    }
  }

  verify(): VerifyReport {
    return { ...this.#reads.verify(this.#state.all()), quarantined: this.#quarantine.count() }
  }

  async idle(): Promise<void> {
    await this.#writer?.idle()
  }

  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close(): Promise<void> {
    if (this.#opened !== null) await this.#opened.catch(() => undefined)
    await this.#writer?.close()
    this.#writer = null
    // Long polls end: nothing more becomes durable.
    for (const wake of this.#durableWaiters) wake()
    this.#durableWaiters.clear()
    this.#reader.close()
    const env = this.#env
    if (env === null) return
    await env.close()
    this.#env = null
  }
}
