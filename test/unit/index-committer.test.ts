import { afterEach, describe, expect, it, vi } from 'vitest'
import { isTributaryError } from '../../src/errors.ts'
import { IndexCommitter, type IndexTarget } from '../../src/log/index-committer.ts'
import type { SegmentPosition } from '../../src/log/store-recovery.ts'
import { SyncPipeline } from '../../src/log/sync-pipeline.ts'
import { FakeAppender, settle } from '../helpers/fake-appender.ts'

const FRAME = Buffer.alloc(100)
const COMMIT_MS = 200
const MAX_PENDING = 10

/** An index in memory that logs its transactions into the appender's event list. */
class FakeIndex implements IndexTarget {
  pendingBatches = 0
  /** The next write fails with this, once. */
  failNext: Error | null = null
  readonly #events: string[]
  constructor(events: string[]) {
    this.#events = events
  }

  async write(position: SegmentPosition, runTasks: () => void): Promise<unknown> {
    this.#events.push(`index write ${position.segment}:${position.position}`)
    runTasks()
    const failure = this.failNext
    this.failNext = null
    if (failure !== null) throw failure
    return true
  }

  committed(): void {
    this.pendingBatches = 0
    this.#events.push('index committed')
  }
}

function setUp(): {
  appender: FakeAppender
  syncs: SyncPipeline
  index: FakeIndex
  committer: IndexCommitter
  wakes: { count: number }
} {
  const appender = new FakeAppender()
  const wakes = { count: 0 }
  const wake = (): void => {
    wakes.count++
  }
  const syncs = new SyncPipeline(appender, { wake })
  const index = new FakeIndex(appender.events)
  const committer = new IndexCommitter({
    target: index,
    syncs,
    indexCommitMs: COMMIT_MS,
    indexMaxPendingBatches: MAX_PENDING,
    wake,
  })
  return { appender, syncs, index, committer, wakes }
}

describe('IndexCommitter', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('commits only after every frame written has had its fdatasync, and one more sync of the segment', async () => {
    const { appender, syncs, committer } = setUp()
    const at = await syncs.append(FRAME)
    const acked = syncs.whenSynced(at.segment)
    syncs.start()
    await settle()
    // A frame acknowledged without a sync (relaxed): no waiter, still unsynced.
    await syncs.append(FRAME)
    const committed = committer.commit([])
    await settle()
    expect(appender.events).toEqual(['append 1:0', 'sync 1', 'append 1:100'])

    appender.endSync()
    await acked
    await settle()
    // The frame written after the sync in flight started is not covered by it: the commit syncs again.
    expect(appender.events.slice(3)).toEqual(['synced 1', 'sync 1'])
    appender.endSync()
    await committed
    expect(appender.events.slice(5)).toEqual(['synced 1', 'index write 1:200', 'index committed'])
  })

  it('does not write the index when the sync before it fails', async () => {
    const { appender, syncs, index, committer } = setUp()
    await syncs.append(FRAME)
    const task = { run: vi.fn(), resolve: vi.fn(), reject: vi.fn() }
    const committed = committer.commit([task])
    await settle()
    appender.endSync(new Error('EIO: i/o error, fdatasync'))
    await committed
    expect(appender.events).not.toContain('index write 1:100')
    expect(task.run).not.toHaveBeenCalled()
    expect(task.resolve).not.toHaveBeenCalled()
    expect(isTributaryError(task.reject.mock.calls[0]?.[0], 'TRIB_STORE_WRITE_FAILED')).toBe(true)
    expect(index.pendingBatches).toBe(0)
  })

  it('becomes due indexCommitMs after a frame, or at once at indexMaxPendingBatches', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const { appender, syncs, index, committer, wakes } = setUp()
    await syncs.append(FRAME)
    index.pendingBatches = 1
    committer.arm()
    committer.arm()
    await vi.advanceTimersByTimeAsync(COMMIT_MS - 1)
    expect([committer.hasWork, wakes.count]).toEqual([false, 0])
    await vi.advanceTimersByTimeAsync(1)
    expect([committer.hasWork, wakes.count]).toEqual([true, 1])

    appender.autoSyncMs = 0
    await committer.run()
    expect(appender.events.slice(-2)).toEqual(['index write 1:100', 'index committed'])
    expect(committer.hasWork).toBe(false)

    await syncs.append(FRAME)
    index.pendingBatches = 1
    committer.arm()
    await syncs.append(FRAME)
    index.pendingBatches = MAX_PENDING
    committer.arm()
    expect(committer.hasWork).toBe(true)
    await committer.run()
    expect(appender.events.slice(-2)).toEqual(['index write 1:300', 'index committed'])
    // The commit took the timer the first of those frames started.
    await vi.advanceTimersByTimeAsync(COMMIT_MS)
    expect([committer.hasWork, wakes.count]).toEqual([false, 1])
  })

  it('runs queued LMDB work inside the commit and settles it after', async () => {
    const { appender, committer, wakes } = setUp()
    appender.autoSyncMs = 0
    const done = vi.fn()
    const queued = committer
      .enqueue(() => {
        appender.events.push('task')
        expect(done).not.toHaveBeenCalled()
      })
      .then(done)
    expect([committer.hasWork, wakes.count]).toEqual([true, 1])
    await committer.run()
    await queued
    expect(appender.events).toEqual(['sync 1', 'synced 1', 'index write 1:0', 'task', 'index committed'])
    expect(done).toHaveBeenCalledOnce()
    expect(committer.hasWork).toBe(false)
  })

  it('after a failed commit, rejects its work and tries again after indexCommitMs, not at the batch limit', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const { appender, syncs, index, committer, wakes } = setUp()
    appender.autoSyncMs = 0
    await syncs.append(FRAME)
    index.pendingBatches = MAX_PENDING
    index.failNext = new Error('MDB_MAP_FULL')
    const queued = committer.enqueue(() => undefined)
    await committer.run()
    await expect(queued).rejects.toSatisfy((e) => isTributaryError(e, 'TRIB_STORE_WRITE_FAILED'))
    expect(appender.events).not.toContain('index committed')

    // A full disk must not become a busy loop: the count alone does not make it due.
    await vi.advanceTimersByTimeAsync(COMMIT_MS / 2)
    committer.arm()
    expect(committer.hasWork).toBe(false)
    const woken = wakes.count
    // The retry's timer started with the failure, not with the frame after it.
    await vi.advanceTimersByTimeAsync(COMMIT_MS / 2)
    expect([committer.hasWork, wakes.count]).toEqual([true, woken + 1])
    await committer.run()
    expect(appender.events.slice(-1)).toEqual(['index committed'])

    // Committed again: the batch limit counts again.
    index.pendingBatches = MAX_PENDING
    committer.arm()
    expect(committer.hasWork).toBe(true)
  })

  it('syncs a large unsynced tail in the background first, then commits once', async () => {
    const { appender, syncs, committer, wakes } = setUp()
    await syncs.append(Buffer.alloc(2 * 1024 * 1024))
    const queued = committer.enqueue(() => undefined)
    await committer.run()
    // Not committed: a sync was started, and the committer waits for it.
    expect(appender.events).toEqual(['append 1:0', 'sync 1'])
    expect(committer.hasWork).toBe(false)

    // More arrives meanwhile; after the presync only one commit follows, whatever is unsynced by then.
    await syncs.append(Buffer.alloc(2 * 1024 * 1024))
    const woken = wakes.count
    appender.endSync()
    await settle()
    expect(wakes.count).toBeGreaterThan(woken)
    expect(committer.hasWork).toBe(true)
    appender.autoSyncMs = 0
    await committer.run()
    await queued
    expect(appender.events.slice(2)).toEqual([
      'append 1:2097152',
      'synced 1',
      'sync 1',
      'synced 1',
      'index write 1:4194304',
      'index committed',
    ])
  })
})
