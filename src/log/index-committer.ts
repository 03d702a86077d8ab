// The lazy index commit. Frames written (`arm`) and LMDB work from the store
// (`enqueue`: partition registry, retention, quarantine) go in; out goes one
// LMDB transaction every `indexCommitMs`, or sooner once
// `indexMaxPendingBatches` wait, holding the pending index entries, marker
// changes, registry rows, the segment position and the queued work. It first
// syncs the segment through the sync pipeline, so LMDB is never ahead of the
// segments. It commits only when its owner's loop calls `run` (`wake` says
// there is work), so a commit never overlaps a group commit.

import type { Database } from 'lmdb'
import { TributaryError } from '../errors.ts'
import type { BatchIndex } from './batch-index.ts'
import type { LogState } from './log-state.ts'
import type { MarkerOverlay } from './marker-overlay.ts'
import type { NodeEnvironment } from './node-environment.ts'
import {
  commitErrorText,
  type PartitionMeta,
  SEGMENT_POSITION,
  type SegmentPosition,
  type SegmentUse,
} from './store-recovery.ts'
import type { SyncPipeline } from './sync-pipeline.ts'

/** LMDB work done in the next index commit (registry, retention, quarantine). */
export interface Maintenance {
  readonly run: () => void
  readonly resolve: () => void
  readonly reject: (err: unknown) => void
}

/** Index-commit work whose outcome nobody waits for (start-up quarantine: the damage is reported either way). */
export function unobserved(run: () => void): Maintenance {
  return { run, resolve: () => undefined, reject: () => undefined }
}

/** What an index commit writes, and where. */
export interface IndexTarget {
  /** Index entries written to the segments and not yet committed. */
  readonly pendingBatches: number
  /** One LMDB transaction: everything pending, `runTasks` among it, and `position` (frames before it are indexed). */
  write(position: SegmentPosition, runTasks: () => void): Promise<unknown>
  /** The transaction is committed: what was pending is no more. */
  committed(): void
}

export interface LmdbIndexParts {
  readonly env: NodeEnvironment
  readonly meta: Database<PartitionMeta | SegmentPosition | number, string>
  readonly segmentUse: Database<SegmentUse, number>
  readonly index: BatchIndex
  readonly markers: MarkerOverlay
  readonly state: LogState
}

/** The store's index in log.mdb (see segment-log-store.ts for its databases). */
export function lmdbIndex(parts: LmdbIndexParts): IndexTarget {
  const { env, meta, segmentUse, index, markers, state } = parts
  return {
    get pendingBatches() {
      return index.pendingCount
    },
    write: (position, runTasks) =>
      env.transaction(() => {
        index.writePending()
        markers.writePending()
        runTasks()
        state.writeChanges(meta, segmentUse)
        meta.putSync(SEGMENT_POSITION, position)
        return true
      }),
    committed: () => {
      index.committed()
      markers.committed()
      state.committed()
    },
  }
}

export interface IndexCommitterOptions {
  readonly target: IndexTarget
  readonly syncs: Pick<SyncPipeline, 'drain' | 'syncNow' | 'presync' | 'position' | 'unsyncedBytes'>
  readonly indexCommitMs: number
  readonly indexMaxPendingBatches: number
  /** Called when a commit becomes due: the owner's loop calls `run`. */
  readonly wake: () => void
}

/** Above this much unsynced data the index commit syncs it off the loop first (#presync). */
const PRESYNC_BYTES = 1024 * 1024

export class IndexCommitter {
  readonly #target: IndexTarget
  readonly #syncs: IndexCommitterOptions['syncs']
  readonly #options: { readonly indexCommitMs: number; readonly indexMaxPendingBatches: number }
  readonly #wake: () => void
  #maintenance: Maintenance[] = []
  #indexTimer: NodeJS.Timeout | null = null
  #indexDue = false
  #presyncing = false
  #presynced = false
  #indexFailed = false

  constructor(options: IndexCommitterOptions) {
    this.#target = options.target
    this.#syncs = options.syncs
    this.#wake = options.wake
    this.#options = {
      indexCommitMs: options.indexCommitMs,
      indexMaxPendingBatches: options.indexMaxPendingBatches,
    }
  }

  /** Queued work or a due commit, and no presync running: the owner's loop should call `run`. */
  get hasWork(): boolean {
    return !this.#presyncing && (this.#maintenance.length > 0 || this.#indexDue)
  }

  /** Runs `run` inside the next index commit's LMDB transaction. */
  enqueue(run: () => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#maintenance.push({ run, resolve, reject })
      this.#wake()
    })
  }

  /** A frame added index entries: a commit is due at the batch limit, else within indexCommitMs. */
  arm(): void {
    const limit = this.#options.indexMaxPendingBatches
    // After a failed commit the retry waits for its timer; the count alone does not start one.
    if (this.#target.pendingBatches >= limit && !this.#indexFailed) {
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
      this.#wake()
    }, this.#options.indexCommitMs)
    // close() commits the index itself; the timer must not keep a process alive.
    this.#indexTimer.unref()
  }

  /** The loop's index step: a presync first when much is unsynced, else the commit with the queued work. */
  async run(): Promise<void> {
    if (!this.#presynced && this.#syncs.unsyncedBytes > PRESYNC_BYTES) {
      this.#presync()
      return
    }
    this.#presynced = false
    const tasks = this.#maintenance
    this.#maintenance = []
    await this.commit(tasks)
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
      this.#wake()
    })
  }

  /**
   * The lazy index commit, with `tasks` in the same LMDB transaction. Syncs the
   * segment first: the index never points at frames that are not durable.
   */
  async commit(tasks: readonly Maintenance[]): Promise<void> {
    this.#indexDue = false
    if (this.#indexTimer !== null) clearTimeout(this.#indexTimer)
    this.#indexTimer = null
    try {
      await this.#syncs.drain()
      await this.#syncs.syncNow()
      const position = this.#syncs.position
      await this.#target.write(position, () => {
        for (const task of tasks) task.run()
      })
      this.#target.committed()
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

  /** No commit comes due any more (the owner closes, and commits once more itself). */
  stop(): void {
    if (this.#indexTimer !== null) clearTimeout(this.#indexTimer)
    this.#indexTimer = null
  }
}
