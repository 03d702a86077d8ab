// The write side of SegmentLogStore: one loop that, in turn, writes group
// commits (one frame each; one fdatasync at a time covers every frame written
// before it started, acks leave in frame order), commits the index to LMDB
// lazily (every `indexCommitMs` or `indexMaxPendingBatches`, after a sync of
// the segment, never ahead of it) together with queued LMDB work (partition
// registry, retention, quarantine), and syncs `relaxed` frames within their
// window. Everything runs on that one loop, so nothing here races itself.

import type { Database, RootDatabase } from 'lmdb'
import { TributaryError } from '../errors.ts'
import type { Metrics } from '../observability/metrics.ts'
import type { BatchIndex } from './batch-index.ts'
import { buildCommit, type CommitItem } from './commit-frame.ts'
import type { LogState } from './log-state.ts'
import type { Appended } from './log-store.ts'
import type { MarkerOverlay } from './marker-overlay.ts'
import { errorText } from './partition-reads.ts'
import type { SegmentAppender } from './segment-appender.ts'
import {
  commitErrorText,
  type PartitionMeta,
  SEGMENT_POSITION,
  type SegmentPosition,
  type SegmentUse,
} from './store-recovery.ts'
import { SyncPipeline } from './sync-pipeline.ts'

export type Queued = CommitItem &
  (
    | { readonly kind: 'append'; readonly resolve: (appended: Appended[]) => void }
    | { readonly kind: 'remove'; readonly resolve: () => void }
  ) & { readonly reject: (err: unknown) => void }

/** LMDB work done in the next index commit (registry, retention, quarantine). */
export interface Maintenance {
  readonly run: () => void
  readonly resolve: () => void
  readonly reject: (err: unknown) => void
}

/** Above this much unsynced data the index commit syncs it off the loop first (#presync). */
const PRESYNC_BYTES = 1024 * 1024

/** Index-commit work whose outcome nobody waits for (start-up quarantine: the damage is reported either way). */
export function unobserved(run: () => void): Maintenance {
  return { run, resolve: () => undefined, reject: () => undefined }
}

export interface LogWriterParts {
  readonly root: RootDatabase
  readonly meta: Database<PartitionMeta | SegmentPosition | number, string>
  readonly segmentUse: Database<SegmentUse, number>
  readonly index: BatchIndex
  readonly markers: MarkerOverlay
  readonly state: LogState
  readonly appender: SegmentAppender
  readonly indexCommitMs: number
  readonly indexMaxPendingBatches: number
  /** Commit sizes and fsync durations, when the node keeps metrics. */
  readonly metrics?: Pick<Metrics, 'commitWritten' | 'synced'> | undefined
}

export class LogWriter {
  readonly #root: RootDatabase
  readonly #meta: LogWriterParts['meta']
  readonly #segmentUse: LogWriterParts['segmentUse']
  readonly #index: BatchIndex
  readonly #markers: MarkerOverlay
  readonly #state: LogState
  readonly #syncs: SyncPipeline
  readonly #options: { readonly indexCommitMs: number; readonly indexMaxPendingBatches: number }
  readonly #metrics: LogWriterParts['metrics']
  #queue: Queued[] = []
  #maintenance: Maintenance[] = []
  #running: Promise<void> | null = null
  #closed = false
  #indexTimer: NodeJS.Timeout | null = null
  #indexDue = false
  #presyncing = false
  #presynced = false
  #indexFailed = false
  /** Settles when the acks of the last frame written are resolved or rejected. */
  #settled: Promise<void> = Promise.resolve()

  constructor(parts: LogWriterParts) {
    this.#root = parts.root
    this.#meta = parts.meta
    this.#segmentUse = parts.segmentUse
    this.#index = parts.index
    this.#markers = parts.markers
    this.#state = parts.state
    // The pipeline wakes this loop when a sync ends or a relaxed window runs out.
    this.#syncs = new SyncPipeline(parts.appender, { wake: () => this.#kick(), metrics: parts.metrics })
    this.#metrics = parts.metrics
    this.#options = {
      indexCommitMs: parts.indexCommitMs,
      indexMaxPendingBatches: parts.indexMaxPendingBatches,
    }
  }

  /** Appends and marker removals waiting for a frame. */
  get queued(): number {
    return this.#queue.length
  }

  /** The segment frames are appended to now. */
  get activeSegment(): number {
    return this.#syncs.position.segment
  }

  enqueue(item: Queued): void {
    this.#queue.push(item)
    this.#kick()
  }

  /** Runs `run` inside the next index commit's LMDB transaction. */
  inIndexCommit(run: () => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#maintenance.push({ run, resolve, reject })
      this.#kick()
    })
  }

  /** Starts the commit loop unless it runs; it runs until no work is left. */
  #kick(): void {
    if (this.#running !== null) return
    this.#running = new Promise<void>((resolve) => {
      // setImmediate, not a timer: gathers what this turn's socket reads produced.
      setImmediate(() => {
        this.#loop().then(resolve, resolve)
      })
    }).then(() => {
      this.#running = null
      if (this.#hasWork()) this.#kick()
    })
  }

  #hasWork(): boolean {
    return this.#queue.length > 0 || this.#syncs.hasWork || this.#indexWork()
  }

  #indexWork(): boolean {
    return !this.#presyncing && (this.#maintenance.length > 0 || this.#indexDue)
  }

  /** One step at a time, each kind of work in turn, so none starves the others. */
  async #loop(): Promise<void> {
    while (this.#hasWork() && !this.#closed) {
      if (this.#queue.length > 0) {
        // Let this turn's socket reads add to the queue first: bigger frames, fewer syncs.
        await new Promise<void>((resolve) => setImmediate(resolve))
        await this.#groupCommit()
      }
      if (this.#indexWork()) {
        if (!this.#presynced && this.#syncs.unsyncedBytes > PRESYNC_BYTES) {
          this.#presync()
        } else {
          this.#presynced = false
          const tasks = this.#maintenance
          this.#maintenance = []
          await this.commitIndex(tasks)
        }
      }
      this.#syncs.flushDue()
      // What waits for a sync and has no frame to join: the sync starts now.
      if (this.#queue.length === 0) this.#syncs.start()
    }
  }

  /** One group commit: every queued append and marker removal in one frame, one fdatasync. */
  async #groupCommit(): Promise<void> {
    const syncs = this.#syncs
    const items = this.#queue
    this.#queue = []
    const { frame, batches, changes, results, restore } = buildCommit(
      items,
      (ref) => this.#state.local(ref),
      Date.now(),
      syncs.position.segment,
    )
    let at: { segment: number; position: number }
    try {
      at = await syncs.append(frame.bytes)
    } catch (err) {
      // Nothing of this frame is readable: its offsets are given out again.
      restore()
      const failure = new TributaryError('TRIB_STORE_WRITE_FAILED', errorText(err), { cause: err })
      for (const item of items) item.reject(failure)
      return
    }
    if (this.#metrics !== undefined) {
      let records = 0
      for (const b of batches) records += b.recordCount
      this.#metrics.commitWritten(records, frame.bytes.length)
    }
    batches.forEach((b, i) => {
      syncs.written(b.meta.id, b.baseOffset, b.baseOffset + b.recordCount)
      this.#state.addEntry(b.meta, {
        baseOffset: b.baseOffset,
        recordCount: b.recordCount,
        maxTimestampMs: b.maxTimestampMs,
        segment: at.segment,
        position: at.position + (frame.batchAt[i] ?? 0),
        length: b.batch.length,
      })
    })
    for (const change of changes) this.#markers.apply(change)
    this.#armIndexCommit()

    const writtenAtMs = Date.now()
    const unsyncedSinceMs = syncs.unsyncedSinceMs ?? writtenAtMs
    const afterSync: number[] = []
    let relaxedFlushMs = Number.POSITIVE_INFINITY
    items.forEach((item, i) => {
      if (item.kind === 'append' && item.request.durability === 'relaxed') {
        const windowMs = item.request.relaxedFlushMs ?? 0
        relaxedFlushMs = Math.min(relaxedFlushMs, windowMs)
        if (writtenAtMs - unsyncedSinceMs <= windowMs) {
          item.resolve(results[i] ?? [])
          return
        }
      }
      afterSync.push(i)
    })
    if (afterSync.length === 0) {
      syncs.armRelaxed(relaxedFlushMs)
      // A relaxed flush or presync deferred while frames kept coming starts with this frame.
      syncs.start()
      return
    }
    this.#settled = syncs.whenSynced(at.segment).then(
      () => {
        for (const i of afterSync) {
          const item = items[i]
          if (item?.kind === 'append') item.resolve(results[i] ?? [])
          else item?.resolve()
        }
      },
      (err: unknown) => {
        // Not acknowledged. The offsets stay used: the frame may still turn up at
        // the next start (then it is read like any other), or not (a gap).
        const failure = new TributaryError('TRIB_STORE_WRITE_FAILED', `fdatasync failed: ${errorText(err)}`, {
          cause: err,
        })
        for (const i of afterSync) items[i]?.reject(failure)
      },
    )
    const inFlight = syncs.inFlight
    if (inFlight === null) {
      syncs.start()
      return
    }
    // An fdatasync is in flight and this frame waits for the next one. What
    // arrives meanwhile is written as one frame when the sync ends, and the
    // next sync covers both: on a card that syncs in 10 ms a publish waits for
    // the rest of one sync and one more, not for two more.
    await inFlight
  }

  /**
   * Many unsynced bytes (relaxed and QoS 0 traffic) would make the index
   * commit's own sync hold up the loop: sync them in the background first,
   * while frames go on being written, and commit the index after that, when
   * only what came meanwhile is left to sync.
   */
  #presync(): void {
    this.#presyncing = true
    // Never rejects: a failure is the next commit's (its sync fails or rolls); the index commit follows either way.
    this.#syncs.presync().then(() => {
      this.#presyncing = false
      // One presync per index commit: under a steady stream there is always more.
      this.#presynced = true
      this.#kick()
    })
  }

  /** The offset below which the partition's records are durable; null if none was written since the open. */
  durableNext(partitionId: number): number | null {
    return this.#syncs.durableNext(partitionId)
  }

  #armIndexCommit(): void {
    const limit = this.#options.indexMaxPendingBatches
    // After a failed commit the retry waits for its timer; the count alone does not start one.
    if (this.#index.pendingCount >= limit && !this.#indexFailed) {
      this.#indexDue = true
      return
    }
    if (this.#indexTimer !== null) return
    this.#startIndexTimer()
  }

  /** The index commit becomes due after indexCommitMs. */
  #startIndexTimer(): void {
    this.#indexTimer = setTimeout(() => {
      this.#indexTimer = null
      this.#indexDue = true
      this.#kick()
    }, this.#options.indexCommitMs)
    // close() commits the index itself; the timer must not keep a process alive.
    this.#indexTimer.unref()
  }

  /**
   * The lazy index commit, with `tasks` in the same LMDB transaction. Syncs the
   * segment first: the index never points at frames that are not durable.
   */
  async commitIndex(tasks: readonly Maintenance[]): Promise<void> {
    this.#indexDue = false
    if (this.#indexTimer !== null) clearTimeout(this.#indexTimer)
    this.#indexTimer = null
    const root = this.#root
    try {
      await this.#syncs.drain()
      await this.#syncs.syncNow()
      const position = this.#syncs.position
      await root.transaction(() => {
        this.#index.writePending()
        this.#markers.writePending()
        for (const task of tasks) task.run()
        this.#state.writeChanges(this.#meta, this.#segmentUse)
        this.#meta.putSync(SEGMENT_POSITION, position)
        return true
      })
      this.#index.committed()
      this.#markers.committed()
      this.#state.committed()
      this.#indexFailed = false
    } catch (err) {
      const failure = new TributaryError('TRIB_STORE_WRITE_FAILED', await commitErrorText(err), {
        cause: err,
      })
      for (const task of tasks) task.reject(failure)
      // The index stays in memory and is tried again after the interval (not at
      // once: a full disk would make that a busy loop); replay covers a crash meanwhile.
      this.#indexFailed = true
      this.#startIndexTimer()
      return
    }
    for (const task of tasks) task.resolve()
  }

  /** Resolves once every append made so far is resolved (and the loop is idle). */
  async idle(): Promise<void> {
    while (this.#running !== null) {
      await this.#running
      await this.#settled
    }
    await this.#settled
  }

  /** Finishes what is queued, commits the index and closes the active segment. */
  async close(): Promise<void> {
    await this.idle()
    this.#closed = true
    if (this.#indexTimer !== null) clearTimeout(this.#indexTimer)
    this.#indexTimer = null
    this.#syncs.stop()
    // What the index misses is replayed at the next open, so a failure here loses nothing.
    await this.commitIndex([])
    await this.#syncs.close()
  }
}
