// The write side of SegmentLogStore, and its group commit: appends and marker
// removals queue here (`enqueue`); each group commit turns everything queued
// into one frame (commit-frame.ts), hands it to the sync pipeline
// (sync-pipeline.ts: write, then one fdatasync at a time covering every frame
// written before it) and resolves the acks in frame order once that sync is
// done (`relaxed` appends at once, within their window). Between group
// commits the same loop lets the index committer (index-committer.ts) commit
// the index to LMDB lazily, with queued LMDB work, and starts the syncs that
// wait. Neither helper starts a step by itself: an ended sync, a due relaxed
// window or a due index commit only calls `wake`, and the next step starts
// on this loop (or in open and close, while it is idle). A sync in flight
// settles its waiters beside the loop, but group commits, index commits and
// sync starts never interleave: nothing here races itself.

import { TributaryError } from '../errors.ts'
import type { Metrics } from '../observability/metrics.ts'
import { buildCommit, type CommitItem } from './commit-frame.ts'
import { IndexCommitter, type LmdbIndexParts, lmdbIndex, type Maintenance } from './index-committer.ts'
import type { LogState } from './log-state.ts'
import type { Appended } from './log-store.ts'
import type { MarkerOverlay } from './marker-overlay.ts'
import { errorText } from './partition-reads.ts'
import { type SyncedAppender, SyncPipeline } from './sync-pipeline.ts'

export type Queued = CommitItem &
  (
    | { readonly kind: 'append'; readonly resolve: (appended: Appended[]) => void }
    | { readonly kind: 'remove' | 'replica' | 'repair'; readonly resolve: () => void }
  ) & { readonly reject: (err: unknown) => void }

/** The index's parts (LMDB databases, state), and the segment appender the frames go to. */
export interface LogWriterParts extends LmdbIndexParts {
  readonly appender: SyncedAppender
  readonly indexCommitMs: number
  readonly indexMaxPendingBatches: number
  /** Commit sizes and fsync durations, when the node keeps metrics. */
  readonly metrics?: Pick<Metrics, 'commitWritten' | 'synced'> | undefined
  /** After an fdatasync made records durable (see SyncPipeline). */
  readonly onDurable?: () => void
  /** The incarnation new batches are written in (batch-codec.ts). */
  readonly incarnation: () => number
}

export class LogWriter {
  readonly #markers: MarkerOverlay
  readonly #state: LogState
  readonly #syncs: SyncPipeline
  readonly #indexCommits: IndexCommitter
  readonly #metrics: LogWriterParts['metrics']
  readonly #incarnation: () => number
  #queue: Queued[] = []
  #running: Promise<void> | null = null
  #closed = false
  /** Settles when the acks of the last frame written are resolved or rejected. */
  #settled: Promise<void> = Promise.resolve()

  constructor(parts: LogWriterParts) {
    this.#markers = parts.markers
    this.#state = parts.state
    this.#metrics = parts.metrics
    this.#incarnation = parts.incarnation
    // Both wake this loop when they have work: a sync ended, a relaxed window or an index commit is due.
    const wake = (): void => this.#kick()
    this.#syncs = new SyncPipeline(parts.appender, {
      wake,
      metrics: parts.metrics,
      onDurable: parts.onDurable,
    })
    this.#indexCommits = new IndexCommitter({
      target: lmdbIndex(parts),
      syncs: this.#syncs,
      indexCommitMs: parts.indexCommitMs,
      indexMaxPendingBatches: parts.indexMaxPendingBatches,
      wake,
    })
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
    return this.#indexCommits.enqueue(run)
  }

  /** Commits the index now, with `tasks` in its transaction (the store's open; see IndexCommitter.commit). */
  commitIndex(tasks: readonly Maintenance[]): Promise<void> {
    return this.#indexCommits.commit(tasks)
  }

  /** The offset below which the partition's records are durable; null if none was written since the open. */
  durableNext(partitionId: number): number | null {
    return this.#syncs.durableNext(partitionId)
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
    return this.#queue.length > 0 || this.#syncs.hasWork || this.#indexCommits.hasWork
  }

  /** One step at a time, each kind of work in turn, so none starves the others. */
  async #loop(): Promise<void> {
    while (this.#hasWork() && !this.#closed) {
      if (this.#queue.length > 0) {
        // Let this turn's socket reads add to the queue first: bigger frames, fewer syncs.
        await new Promise<void>((resolve) => setImmediate(resolve))
        await this.#groupCommit()
      }
      if (this.#indexCommits.hasWork) await this.#indexCommits.run()
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
    const { frame, batches, changes, results, refused, restore } = buildCommit(
      items,
      { local: (ref) => this.#state.local(ref), any: (ref) => this.#state.find(ref) },
      Date.now(),
      syncs.position.segment,
      this.#incarnation(),
    )
    for (const [i, err] of refused) items[i]?.reject(err)
    // Nothing left to write: every item was refused.
    if (refused.size === items.length) return
    // The partitions' ends moved when the frame was built: not durable before its sync.
    for (const b of batches) if (b.repair !== true) syncs.writing(b.meta.id, b.baseOffset)
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
      // A repaired hole is below the partition's durable end: it does not move it.
      if (b.repair !== true) syncs.written(b.meta.id, b.baseOffset, b.baseOffset + b.recordCount)
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
    this.#indexCommits.arm()

    const writtenAtMs = Date.now()
    const unsyncedSinceMs = syncs.unsyncedSinceMs ?? writtenAtMs
    const afterSync: number[] = []
    let relaxedFlushMs = Number.POSITIVE_INFINITY
    items.forEach((item, i) => {
      if (refused.has(i)) return
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
    this.#indexCommits.stop()
    this.#syncs.stop()
    // What the index misses is replayed at the next open, so a failure here loses nothing.
    await this.#indexCommits.commit([])
    await this.#syncs.close()
  }
}
