// The write side of SegmentLogStore: one loop that, in turn, writes group
// commits (one frame each; one fdatasync at a time covers every frame written
// before it started, acks leave in frame order), commits the index to LMDB
// lazily (every `indexCommitMs` or `indexMaxPendingBatches`, after a sync of
// the segment, never ahead of it) together with queued LMDB work (partition
// registry, retention, quarantine), and syncs `relaxed` frames within their
// window. Everything runs on that one loop, so nothing here races itself.

import type { Database } from 'lmdb'
import { TributaryError } from '../errors.ts'
import type { Metrics } from '../observability/metrics.ts'
import type { BatchIndex } from './batch-index.ts'
import { buildCommit, type CommitItem } from './commit-frame.ts'
import type { LogState } from './log-state.ts'
import type { Appended } from './log-store.ts'
import type { MarkerOverlay } from './marker-overlay.ts'
import type { NodeEnvironment } from './node-environment.ts'
import { errorText } from './partition-reads.ts'
import type { SegmentAppender } from './segment-appender.ts'
import {
  commitErrorText,
  type PartitionMeta,
  SEGMENT_POSITION,
  type SegmentPosition,
  type SegmentUse,
} from './store-recovery.ts'

/** A frame (or a relaxed flush, or a presync) waiting for the next fdatasync of its segment. */
interface SyncWaiter {
  readonly segment: number
  readonly resolve: () => void
  readonly reject: (err: unknown) => void
}

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

/**
 * When an fdatasync takes long (an SD card: 5-20 ms), the next one starts a
 * tenth of that later, at most COMMIT_DELAY_MAX_MS: publishers answering the
 * acks the last sync released are then in it, instead of waiting one whole
 * sync more (PostgreSQL's commit_delay, sized by the disk). Syncs shorter than
 * COMMIT_DELAY_FROM_SYNC_MS (an SSD, ~0.1-0.3 ms) get no delay.
 */
const COMMIT_DELAY_MAX_MS = 2
const COMMIT_DELAY_FROM_SYNC_MS = 2

/** Above this much unsynced data the index commit syncs it off the loop first (#presync). */
const PRESYNC_BYTES = 1024 * 1024

/** Index-commit work whose outcome nobody waits for (start-up quarantine: the damage is reported either way). */
export function unobserved(run: () => void): Maintenance {
  return { run, resolve: () => undefined, reject: () => undefined }
}

export interface LogWriterParts {
  readonly env: NodeEnvironment
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
  readonly #env: NodeEnvironment
  readonly #meta: LogWriterParts['meta']
  readonly #segmentUse: LogWriterParts['segmentUse']
  readonly #index: BatchIndex
  readonly #markers: MarkerOverlay
  readonly #state: LogState
  readonly #appender: SegmentAppender
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
  #syncTimer: NodeJS.Timeout | null = null
  #syncDue = false
  /** The fdatasync in flight; it never rejects (its waiters get the failure). */
  #syncing: Promise<void> | null = null
  /** Written since the fdatasync in flight started: the next one covers them. */
  #waiting: SyncWaiter[] = []
  /** The segment whose last fdatasync failed: what was written into it is never acknowledged. */
  #failedSegment = -1
  /** How long the last fdatasync took, ms. */
  #lastSyncMs = 0
  /** Settles when the acks of the last frame written are resolved or rejected. */
  #settled: Promise<void> = Promise.resolve()
  /** Per partition id, the next offset of what was written but not yet covered by an fdatasync. */
  #unsynced = new Map<number, number>()
  /** Per partition id, the offset below which every written record is on disk (fdatasync done). */
  readonly #durableNext = new Map<number, number>()

  constructor(parts: LogWriterParts) {
    this.#env = parts.env
    this.#meta = parts.meta
    this.#segmentUse = parts.segmentUse
    this.#index = parts.index
    this.#markers = parts.markers
    this.#state = parts.state
    this.#appender = parts.appender
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
    return this.#appender.position.segment
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
    return (
      this.#queue.length > 0 ||
      this.#syncDue ||
      this.#indexWork() ||
      (this.#syncing === null && this.#waiting.length > 0)
    )
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
        await this.#groupCommit(this.#appender)
      }
      if (this.#indexWork()) {
        if (!this.#presynced && this.#appender.unsyncedBytes > PRESYNC_BYTES) {
          this.#presync()
        } else {
          this.#presynced = false
          const tasks = this.#maintenance
          this.#maintenance = []
          await this.commitIndex(tasks)
        }
      }
      if (this.#syncDue) {
        this.#syncDue = false
        // Beside the loop, with the next fdatasync. A failure leaves the relaxed appends
        // it covered as they are (already acknowledged); the segment is rolled.
        this.#afterSync(this.#appender.position.segment).catch(() => undefined)
      }
      // What waits for a sync and has no frame to join: the sync starts now.
      if (this.#queue.length === 0) this.#startSync()
    }
  }

  /** One group commit: every queued append and marker removal in one frame, one fdatasync. */
  async #groupCommit(appender: SegmentAppender): Promise<void> {
    const items = this.#queue
    this.#queue = []
    const { frame, batches, changes, results, restore } = buildCommit(
      items,
      (ref) => this.#state.local(ref),
      Date.now(),
      appender.position.segment,
    )
    // Rolls happen only with no sync in flight: every sync then covers the segment its frames are in.
    if (appender.rollsFor(frame.bytes.length)) await this.#drainSyncs()
    let at: { segment: number; position: number }
    try {
      at = await appender.append(frame.bytes)
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
      // The first write of a partition since the store opened: everything before it is durable.
      if (!this.#durableNext.has(b.meta.id)) this.#durableNext.set(b.meta.id, b.baseOffset)
      this.#unsynced.set(b.meta.id, b.baseOffset + b.recordCount)
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
    const unsyncedSinceMs = appender.unsyncedSinceMs ?? writtenAtMs
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
      this.#armSync(relaxedFlushMs)
      // A relaxed flush or presync deferred while frames kept coming starts with this frame.
      this.#startSync()
      return
    }
    this.#settled = this.#afterSync(at.segment).then(
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
    if (this.#syncing === null) {
      this.#startSync()
      return
    }
    // An fdatasync is in flight and this frame waits for the next one. What
    // arrives meanwhile is written as one frame when the sync ends, and the
    // next sync covers both: on a card that syncs in 10 ms a publish waits for
    // the rest of one sync and one more, not for two more.
    await this.#syncing
  }

  /**
   * Many unsynced bytes (relaxed and QoS 0 traffic) would make the index
   * commit's own sync hold up the loop: sync them in the background first,
   * while frames go on being written, and commit the index after that, when
   * only what came meanwhile is left to sync.
   */
  #presync(): void {
    this.#presyncing = true
    const done = this.#afterSync(this.#appender.position.segment)
    this.#startSync()
    // A failure here is the next commit's (its sync fails or rolls); the index commit follows either way.
    done
      .catch(() => undefined)
      .then(() => {
        this.#presyncing = false
        // One presync per index commit: under a steady stream there is always more.
        this.#presynced = true
        this.#kick()
      })
  }

  /** Settles when an fdatasync that starts after this call is done (the loop starts it). */
  #afterSync(segment: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#waiting.push({ segment, resolve, reject })
    })
  }

  /**
   * Starts one fdatasync for everything waiting, unless one is in flight.
   * Waiters settle in the order they came, so acks leave in frame order. A
   * failed sync fails every later waiter in the same (now suspect) segment
   * too: on Linux a later "successful" fdatasync proves nothing about the
   * pages the failed one dropped. The appender rolls to a new segment.
   */
  #startSync(): void {
    if (this.#syncing !== null || this.#waiting.length === 0) return
    const delayMs =
      this.#lastSyncMs >= COMMIT_DELAY_FROM_SYNC_MS ? Math.min(COMMIT_DELAY_MAX_MS, this.#lastSyncMs / 10) : 0
    const started =
      delayMs > 0 ? new Promise<void>((resolve) => setTimeout(resolve, delayMs)) : Promise.resolve()
    this.#syncing = started
      .then(() => this.#syncWaiting())
      .then(() => {
        this.#syncing = null
        this.#kick()
      })
  }

  /** One fdatasync for every waiter there is now (frames written during the delay too). */
  #syncWaiting(): Promise<void> {
    const covered = this.#waiting
    this.#waiting = []
    const segment = this.#appender.position.segment
    return this.#sync().then(
      () => {
        for (const waiter of covered) {
          if (waiter.segment === this.#failedSegment)
            waiter.reject(new Error(`an earlier fdatasync of segment ${waiter.segment} failed`))
          else waiter.resolve()
        }
      },
      (err: unknown) => {
        this.#failedSegment = segment
        for (const waiter of covered) waiter.reject(err)
      },
    )
  }

  /** Until every frame written so far has had its fdatasync (done or failed). */
  async #drainSyncs(): Promise<void> {
    while (this.#syncing !== null || this.#waiting.length > 0) {
      this.#startSync()
      await this.#syncing
    }
  }

  /**
   * The offset below which the partition's records are durable: what readers
   * that must not run ahead of the disk (sinks, the API) may see. Null when
   * nothing was written to the partition since the store opened: what the
   * start found on disk counts as durable (its first index commit syncs the
   * active segment).
   */
  durableNext(partitionId: number): number | null {
    return this.#durableNext.get(partitionId) ?? null
  }

  async #sync(): Promise<void> {
    // Everything written before the fdatasync starts is covered by it.
    const covered = this.#unsynced
    this.#unsynced = new Map()
    const startedAt = performance.now()
    await this.#appender.sync()
    this.#lastSyncMs = performance.now() - startedAt
    this.#metrics?.synced(this.#lastSyncMs / 1000)
    for (const [id, next] of covered)
      this.#durableNext.set(id, Math.max(this.#durableNext.get(id) ?? 0, next))
    if (this.#appender.synced && this.#syncTimer !== null) {
      clearTimeout(this.#syncTimer)
      this.#syncTimer = null
    }
  }

  #armSync(windowMs: number): void {
    const since = this.#appender.unsyncedSinceMs
    if (this.#syncTimer !== null || since === null) return
    const dueInMs = Math.max(0, since + windowMs - Date.now())
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = null
      this.#syncDue = true
      this.#kick()
    }, dueInMs)
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
    const env = this.#env
    const appender = this.#appender
    try {
      await this.#drainSyncs()
      await this.#sync()
      const position = appender.position
      await env.transaction(() => {
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
    for (const timer of [this.#indexTimer, this.#syncTimer]) if (timer !== null) clearTimeout(timer)
    this.#indexTimer = null
    this.#syncTimer = null
    // What the index misses is replayed at the next open, so a failure here loses nothing.
    await this.commitIndex([])
    await this.#appender.close().catch(() => undefined)
  }
}
