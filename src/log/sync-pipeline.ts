// The fdatasync pipeline of the active segment. Frames go in (`append`),
// waiters for their sync go in (`whenSynced`), and one fdatasync at a time
// covers every frame written before it started; waiters settle in the order
// they came. Out come the settled waiters and, per partition id, the offset
// below which every written record is on disk (`durableNext`). A failed sync
// fails every waiter written into that segment, even after a later sync
// succeeds. It starts a sync only when told (`start`, `drain`, `presync`) and
// calls `wake` when a sync ends or a relaxed window runs out: whoever owns it
// (the log writer's loop, a replica's append path) decides when the next one
// starts, so frames written meanwhile join it.

import type { Metrics } from '../observability/metrics.ts'
import type { SegmentAppender } from './segment-appender.ts'

/** What the pipeline needs of a segment appender. */
export type SyncedAppender = Pick<
  SegmentAppender,
  'position' | 'unsyncedBytes' | 'unsyncedSinceMs' | 'synced' | 'rollsFor' | 'append' | 'sync' | 'close'
>

export interface SyncPipelineOptions {
  /** Called when a sync ends or a relaxed window runs out: the owner starts what waits. */
  readonly wake: () => void
  /** Told each fsync's duration, when the node keeps metrics. */
  readonly metrics?: Pick<Metrics, 'synced'> | undefined
  /** Called after an fdatasync made records durable (durableNext moved): readers waiting for them go on. */
  readonly onDurable?: (() => void) | undefined
}

/** A frame (or a relaxed flush, or a presync) waiting for the next fdatasync of its segment. */
interface SyncWaiter {
  readonly segment: number
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

export class SyncPipeline {
  readonly #appender: SyncedAppender
  readonly #wake: () => void
  readonly #metrics: SyncPipelineOptions['metrics']
  readonly #onDurable: SyncPipelineOptions['onDurable']
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
  /** Per partition id, the next offset of what was written but not yet covered by an fdatasync. */
  #unsynced = new Map<number, number>()
  /** Per partition id, the offset below which every written record is on disk (fdatasync done). */
  readonly #durableNext = new Map<number, number>()

  constructor(appender: SyncedAppender, options: SyncPipelineOptions) {
    this.#appender = appender
    this.#wake = options.wake
    this.#metrics = options.metrics
    this.#onDurable = options.onDurable
  }

  /** Where the next frame goes: frames before it are in the segments. */
  get position(): { segment: number; position: number } {
    return this.#appender.position
  }

  /** Bytes of the active segment not yet covered by an fdatasync. */
  get unsyncedBytes(): number {
    return this.#appender.unsyncedBytes
  }

  /** When the oldest frame not yet covered by an fdatasync was written. */
  get unsyncedSinceMs(): number | null {
    return this.#appender.unsyncedSinceMs
  }

  /** The fdatasync in flight, or null; it never rejects (its waiters get the failure). */
  get inFlight(): Promise<void> | null {
    return this.#syncing
  }

  /** A relaxed window ran out, or waiters wait and no sync is in flight: the owner has work here. */
  get hasWork(): boolean {
    return this.#syncDue || (this.#syncing === null && this.#waiting.length > 0)
  }

  /**
   * Writes one frame to the active segment; returns where. Rolls happen only
   * with no sync in flight: every sync then covers the segment its frames are in.
   */
  async append(frame: Buffer): Promise<{ segment: number; position: number }> {
    if (this.#appender.rollsFor(frame.length)) await this.drain()
    return this.#appender.append(frame)
  }

  /** Records [baseOffset, nextOffset) of a partition were written by the last append. */
  /**
   * A frame with records of the partition from `baseOffset` on is being
   * written: until then, what the start found counted as durable; from now
   * on, only what is below it (the frame's offsets are taken before it is on disk).
   */
  writing(partitionId: number, baseOffset: number): void {
    if (!this.#durableNext.has(partitionId)) this.#durableNext.set(partitionId, baseOffset)
  }

  written(partitionId: number, baseOffset: number, nextOffset: number): void {
    // The first write of a partition since the store opened: everything before it is durable.
    if (!this.#durableNext.has(partitionId)) this.#durableNext.set(partitionId, baseOffset)
    this.#unsynced.set(partitionId, nextOffset)
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

  /** Settles when an fdatasync that starts after this call is done (`start` starts it). */
  whenSynced(segment: number): Promise<void> {
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
  start(): void {
    if (this.#syncing !== null || this.#waiting.length === 0) return
    const delayMs =
      this.#lastSyncMs >= COMMIT_DELAY_FROM_SYNC_MS ? Math.min(COMMIT_DELAY_MAX_MS, this.#lastSyncMs / 10) : 0
    const started =
      delayMs > 0 ? new Promise<void>((resolve) => setTimeout(resolve, delayMs)) : Promise.resolve()
    this.#syncing = started
      .then(() => this.#syncWaiting())
      .then(() => {
        this.#syncing = null
        this.#wake()
      })
  }

  /** One fdatasync for every waiter there is now (frames written during the delay too). */
  #syncWaiting(): Promise<void> {
    const covered = this.#waiting
    this.#waiting = []
    const segment = this.#appender.position.segment
    return this.syncNow().then(
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
  async drain(): Promise<void> {
    while (this.#syncing !== null || this.#waiting.length > 0) {
      this.start()
      await this.#syncing
    }
  }

  /**
   * One fdatasync of the active segment now, settling no waiter: the index
   * commit's own, after `drain` (so none is in flight). Everything written
   * before it starts is covered by it.
   */
  async syncNow(): Promise<void> {
    const covered = this.#unsynced
    this.#unsynced = new Map()
    const startedAt = performance.now()
    await this.#appender.sync()
    this.#lastSyncMs = performance.now() - startedAt
    this.#metrics?.synced(this.#lastSyncMs / 1000)
    for (const [id, next] of covered)
      this.#durableNext.set(id, Math.max(this.#durableNext.get(id) ?? 0, next))
    if (covered.size > 0) this.#onDurable?.()
    if (this.#appender.synced && this.#syncTimer !== null) {
      clearTimeout(this.#syncTimer)
      this.#syncTimer = null
    }
  }

  /**
   * Relaxed frames were acknowledged unsynced: a sync becomes due `windowMs`
   * after the oldest unsynced frame was written (`wake` says so), unless one
   * is due already or a sync covers them first.
   */
  armRelaxed(windowMs: number): void {
    const since = this.#appender.unsyncedSinceMs
    if (this.#syncTimer !== null || since === null) return
    const dueInMs = Math.max(0, since + windowMs - Date.now())
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = null
      this.#syncDue = true
      this.#wake()
    }, dueInMs)
  }

  /** A due relaxed window: a waiter for the next fdatasync of the active segment. */
  flushDue(): void {
    if (!this.#syncDue) return
    this.#syncDue = false
    // Beside the owner's loop, with the next fdatasync. A failure leaves the relaxed appends
    // it covered as they are (already acknowledged); the segment is rolled.
    this.whenSynced(this.#appender.position.segment).catch(() => undefined)
  }

  /**
   * Starts a sync of what is written now, in the background. It never rejects:
   * a failure is the next frame's (its sync fails or the segment rolls).
   */
  presync(): Promise<void> {
    const done = this.whenSynced(this.#appender.position.segment)
    this.start()
    return done.catch(() => undefined)
  }

  /** No relaxed window comes due any more (the owner closes). */
  stop(): void {
    if (this.#syncTimer !== null) clearTimeout(this.#syncTimer)
    this.#syncTimer = null
  }

  /** Closes the active segment; a failure changes nothing on disk. */
  async close(): Promise<void> {
    await this.#appender.close().catch(() => undefined)
  }
}
