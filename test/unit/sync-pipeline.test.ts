import { afterEach, describe, expect, it, vi } from 'vitest'
import { SyncPipeline } from '../../src/log/sync-pipeline.ts'
import { FakeAppender, settle } from '../helpers/fake-appender.ts'

const FRAME = Buffer.alloc(100)

/** How a waiter ended, looked at without awaiting it. */
function outcome(promise: Promise<void>): { state: 'pending' | 'resolved' | 'rejected'; error?: unknown } {
  const seen: { state: 'pending' | 'resolved' | 'rejected'; error?: unknown } = { state: 'pending' }
  promise.then(
    () => {
      seen.state = 'resolved'
    },
    (error: unknown) => {
      seen.state = 'rejected'
      seen.error = error
    },
  )
  return seen
}

function pipeline(appender: FakeAppender): { syncs: SyncPipeline; wakes: { count: number } } {
  const wakes = { count: 0 }
  const syncs = new SyncPipeline(appender, {
    wake: () => {
      wakes.count++
    },
  })
  return { syncs, wakes }
}

/** Writes one frame and waits for its sync, as the log writer does. */
async function write(syncs: SyncPipeline): Promise<ReturnType<typeof outcome>> {
  const at = await syncs.append(FRAME)
  return outcome(syncs.whenSynced(at.segment))
}

describe('SyncPipeline', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('covers every frame written before a sync with that one fdatasync', async () => {
    const appender = new FakeAppender()
    const { syncs, wakes } = pipeline(appender)
    const waiters = [await write(syncs), await write(syncs), await write(syncs)]
    syncs.start()
    syncs.start()
    await settle()
    expect(appender.events).toEqual(['append 1:0', 'append 1:100', 'append 1:200', 'sync 1'])
    expect(waiters.map((w) => w.state)).toEqual(['pending', 'pending', 'pending'])

    appender.endSync()
    await settle()
    expect(waiters.map((w) => w.state)).toEqual(['resolved', 'resolved', 'resolved'])
    expect(appender.events.filter((e) => e.startsWith('sync '))).toHaveLength(1)
    expect(wakes.count).toBe(1)
    expect(syncs.inFlight).toBeNull()
    expect(syncs.hasWork).toBe(false)
  })

  it('makes a frame written while a sync runs wait for the next one', async () => {
    const appender = new FakeAppender()
    const { syncs } = pipeline(appender)
    const first = await write(syncs)
    syncs.start()
    await settle()
    const second = await write(syncs)
    // One in flight: starting again does nothing until it ends.
    syncs.start()
    await settle()
    expect(appender.syncsRunning).toBe(1)
    expect(syncs.hasWork).toBe(false)

    appender.endSync()
    await settle()
    expect(first.state).toBe('resolved')
    expect(second.state).toBe('pending')
    expect(syncs.hasWork).toBe(true)

    syncs.start()
    await settle()
    appender.endSync()
    await settle()
    expect(second.state).toBe('resolved')
    expect(appender.events).toEqual([
      'append 1:0',
      'sync 1',
      'append 1:100',
      'synced 1',
      'sync 1',
      'synced 1',
    ])
  })

  it('rejects the waiters of a failed sync, and never acks a frame of that segment after it', async () => {
    const appender = new FakeAppender()
    const { syncs } = pipeline(appender)
    const first = await write(syncs)
    syncs.start()
    await settle()
    // Written into segment 1 while its failing sync runs.
    const second = await write(syncs)
    const eio = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })
    appender.endSync(eio)
    await settle()
    expect(first).toEqual({ state: 'rejected', error: eio })
    expect(second.state).toBe('pending')

    // The next sync succeeds, but says nothing about the pages the failed one dropped.
    syncs.start()
    await settle()
    appender.endSync()
    await settle()
    expect(second.state).toBe('rejected')
    expect(String(second.error)).toContain('an earlier fdatasync of segment 1 failed')

    // The appender rolled: a frame in segment 2 is acknowledged again.
    const third = await write(syncs)
    syncs.start()
    await settle()
    appender.endSync()
    await settle()
    expect(third.state).toBe('resolved')
    expect(appender.events.at(-3)).toBe('append 2:0')
  })

  it('rolls to a new segment only once no sync is in flight', async () => {
    const appender = new FakeAppender(150)
    const { syncs } = pipeline(appender)
    const first = await write(syncs)
    syncs.start()
    await settle()
    // This frame does not fit in segment 1: it waits until segment 1's sync is done.
    let written = false
    const appended = syncs.append(FRAME).then((at) => {
      written = true
      return at
    })
    await settle()
    expect(written).toBe(false)
    appender.endSync()
    expect(await appended).toEqual({ segment: 2, position: 0 })
    expect(first.state).toBe('resolved')
    expect(appender.events).toEqual(['append 1:0', 'sync 1', 'synced 1', 'append 2:0'])
  })

  it('delays the next sync by a tenth of a slow one, at most 2 ms, and not at all after a fast one', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance', 'Date'] })
    const appender = new FakeAppender()
    const { syncs } = pipeline(appender)
    /**
     * After a sync that took `lastMs`: the timers start() made (a delay, or none) and
     * the ms between start() and the fdatasync it leads to.
     */
    async function delayAfter(lastMs: number): Promise<[number, number]> {
      appender.autoSyncMs = lastMs
      await write(syncs)
      syncs.start()
      await vi.advanceTimersByTimeAsync(lastMs + 10)
      expect(syncs.inFlight).toBeNull()
      appender.autoSyncMs = null
      await write(syncs)
      const before = appender.events.length
      syncs.start()
      const timers = vi.getTimerCount()
      let waitedMs = 0
      await vi.advanceTimersByTimeAsync(0)
      while (appender.events.length === before) {
        await vi.advanceTimersByTimeAsync(0.5)
        waitedMs += 0.5
      }
      appender.endSync()
      await vi.advanceTimersByTimeAsync(0)
      return [timers, waitedMs]
    }
    expect(await delayAfter(0)).toEqual([0, 0])
    expect(await delayAfter(1)).toEqual([0, 0])
    expect(await delayAfter(10)).toEqual([1, 1])
    expect(await delayAfter(100)).toEqual([1, 2])
  })

  it('moves durableNext per partition only when a sync that started after the write ends', async () => {
    const appender = new FakeAppender()
    const { syncs } = pipeline(appender)
    expect(syncs.durableNext(7)).toBeNull()
    await write(syncs)
    syncs.written(7, 10, 15)
    // What the store held before its first write counts as durable.
    expect(syncs.durableNext(7)).toBe(10)
    syncs.start()
    await settle()
    await write(syncs)
    syncs.written(7, 15, 20)
    syncs.written(8, 0, 3)
    expect([syncs.durableNext(7), syncs.durableNext(8)]).toEqual([10, 0])
    appender.endSync()
    await settle()
    expect([syncs.durableNext(7), syncs.durableNext(8)]).toEqual([15, 0])
    syncs.start()
    await settle()
    appender.endSync()
    await settle()
    expect([syncs.durableNext(7), syncs.durableNext(8)]).toEqual([20, 3])
  })

  it('makes a relaxed flush due after its window, unless a sync covers the frames first', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    const appender = new FakeAppender()
    const { syncs, wakes } = pipeline(appender)
    await syncs.append(FRAME)
    syncs.armRelaxed(50)
    await vi.advanceTimersByTimeAsync(49)
    expect([wakes.count, syncs.hasWork]).toEqual([0, false])
    await vi.advanceTimersByTimeAsync(1)
    expect([wakes.count, syncs.hasWork]).toEqual([1, true])
    syncs.flushDue()
    syncs.start()
    await vi.advanceTimersByTimeAsync(0)
    expect(appender.events).toEqual(['append 1:0', 'sync 1'])
    appender.endSync()
    await vi.advanceTimersByTimeAsync(0)
    expect(syncs.hasWork).toBe(false)

    // A sync that covers every frame first clears the window.
    await syncs.append(FRAME)
    syncs.armRelaxed(50)
    const presynced = syncs.presync()
    await vi.advanceTimersByTimeAsync(0)
    appender.endSync()
    await presynced
    await vi.advanceTimersByTimeAsync(0)
    const woken = wakes.count
    await vi.advanceTimersByTimeAsync(100)
    expect(wakes.count).toBe(woken)
    expect(syncs.hasWork).toBe(false)
  })

  it('presync never rejects, though its sync fails', async () => {
    const appender = new FakeAppender()
    const { syncs } = pipeline(appender)
    await syncs.append(FRAME)
    const done = outcome(syncs.presync())
    await settle()
    appender.endSync(new Error('EIO'))
    await settle()
    expect(done.state).toBe('resolved')
  })
})
