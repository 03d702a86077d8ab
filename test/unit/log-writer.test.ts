import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { isTributaryError } from '../../src/errors.ts'
import { BatchIndex } from '../../src/log/batch-index.ts'
import { LogState } from '../../src/log/log-state.ts'
import type { Appended, AppendRequest } from '../../src/log/log-store.ts'
import { LogWriter } from '../../src/log/log-writer.ts'
import { MarkerOverlay } from '../../src/log/marker-overlay.ts'
import { NodeEnvironment } from '../../src/log/node-environment.ts'
import type { PartitionMeta } from '../../src/log/store-recovery.ts'
import { FakeAppender, settle } from '../helpers/fake-appender.ts'
import { tempDir } from '../helpers/temp-dir.ts'

/** How a promise ended, looked at without awaiting it. */
function outcome<T>(promise: Promise<T>): {
  state: 'pending' | 'resolved' | 'rejected'
  value?: T
  error?: unknown
} {
  const seen: { state: 'pending' | 'resolved' | 'rejected'; value?: T; error?: unknown } = {
    state: 'pending',
  }
  promise.then(
    (value) => Object.assign(seen, { state: 'resolved', value }),
    (error: unknown) => Object.assign(seen, { state: 'rejected', error }),
  )
  return seen
}

/** Lets the writer's loop run until `done` holds (bounded: the loop is all in memory). */
async function until(done: () => boolean): Promise<void> {
  for (let turn = 0; turn < 100 && !done(); turn++) await settle()
  expect(done()).toBe(true)
}

function request(payload: string, durability: AppendRequest['durability'] = 'durable'): AppendRequest {
  const record = {
    key: null,
    topic: 't',
    payload: Buffer.from(payload),
    headers: [],
    clientId: 'c',
    qos: 1 as const,
    deviceTimeMs: null,
  }
  return { entries: [{ stream: 's', partition: 0, record }], durability, relaxedFlushMs: 50 }
}

describe('LogWriter group commit', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let env: NodeEnvironment
  let appender: FakeAppender
  let writer: LogWriter

  beforeEach(async () => {
    dir = await tempDir()
    env = NodeEnvironment.open(dir.path)
    const index = new BatchIndex(env.database('log-index'))
    const state = new LogState('node-a', index)
    const meta: PartitionMeta = {
      id: 0,
      stream: 's',
      origin: 'node-a',
      partition: 0,
      firstOffset: 0,
      nextOffset: 0,
      bytes: 0,
      lastTimestampMs: null,
    }
    state.register(meta)
    appender = new FakeAppender()
    writer = new LogWriter({
      env,
      meta: env.database('log-meta'),
      segmentUse: env.database('log-segments'),
      index,
      markers: new MarkerOverlay(env.database('log-markers')),
      state,
      appender,
      // Far off: these tests look at frames and syncs, not at the index.
      indexCommitMs: 60_000,
      incarnation: () => 1,
      indexMaxPendingBatches: 1_000_000,
    })
  })

  afterEach(async () => {
    vi.useRealTimers()
    appender.autoSyncMs = 0
    while (appender.syncsRunning > 0) appender.endSync()
    await writer.close()
    await env.close()
    await dir.remove()
  })

  function append(payload: string, durability?: AppendRequest['durability']): Promise<Appended[]> {
    return new Promise((resolve, reject) => {
      writer.enqueue({ kind: 'append', request: request(payload, durability), resolve, reject })
    })
  }

  it('writes everything queued in one turn as one frame, and acks it after its fdatasync, in order', async () => {
    const order: string[] = []
    const acks = ['a', 'b', 'c'].map((p) =>
      outcome(
        append(p).then((appended) => {
          order.push(p)
          return appended
        }),
      ),
    )
    const removed = outcome(
      new Promise<void>((resolve, reject) =>
        writer.enqueue({ kind: 'remove', prefix: 'x/', resolve, reject }),
      ),
    )
    await until(() => appender.syncsRunning === 1)
    expect(appender.events).toEqual(['append 1:0', 'sync 1'])
    await settle()
    expect([...acks, removed].map((a) => a.state)).toEqual(['pending', 'pending', 'pending', 'pending'])

    appender.endSync()
    await until(() => removed.state === 'resolved')
    expect(order).toEqual(['a', 'b', 'c'])
    expect(acks.map((a) => a.value?.[0]?.offset)).toEqual([0, 1, 2])
    expect(writer.durableNext(0)).toBe(3)
  })

  it("does not count a partition's first frame since the open as durable while it is written", async () => {
    let release = () => undefined as void
    appender.holdNextAppend = new Promise<void>((resolve) => {
      release = resolve
    })
    const ack = outcome(append('a'))
    try {
      // The frame took offset 0 (the partition's end moved) and is not on disk yet.
      await until(() => writer.queued === 0)
      expect(appender.events).toEqual([])
      expect(writer.durableNext(0)).toBe(0)
    } finally {
      release()
    }
    await until(() => appender.syncsRunning === 1)
    expect(writer.durableNext(0)).toBe(0)
    appender.endSync()
    await until(() => ack.state === 'resolved')
    expect(writer.durableNext(0)).toBe(1)
  })

  it('holds what comes during a sync for one frame after it, which the next sync covers', async () => {
    const first = outcome(append('a'))
    await until(() => appender.syncsRunning === 1)
    const second = outcome(append('b'))
    await until(() => appender.events.length === 3)
    const third = outcome(append('c'))
    const fourth = outcome(append('d'))
    for (let turn = 0; turn < 5; turn++) await settle()
    // b's frame waits for the next sync; c and d wait for the sync in flight to end.
    expect(appender.events).toEqual(['append 1:0', 'sync 1', expect.stringMatching(/^append 1:\d+$/)])

    appender.endSync()
    await until(() => first.state === 'resolved' && appender.syncsRunning === 1)
    expect(appender.events.slice(3)).toEqual(['synced 1', expect.stringMatching(/^append 1:\d+$/), 'sync 1'])
    expect([second.state, third.state, fourth.state]).toEqual(['pending', 'pending', 'pending'])

    appender.endSync()
    await until(() => fourth.state === 'resolved')
    expect([second, third, fourth].map((a) => a.value?.[0]?.offset)).toEqual([1, 2, 3])
  })

  it('acks relaxed appends at the write and syncs them when their window ends', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    const relaxed = outcome(append('r', 'relaxed'))
    await until(() => relaxed.state === 'resolved')
    expect(appender.events).toEqual(['append 1:0'])
    await vi.advanceTimersByTimeAsync(49)
    expect(appender.events).toEqual(['append 1:0'])
    await vi.advanceTimersByTimeAsync(1)
    await until(() => appender.syncsRunning === 1)
    expect(appender.events).toEqual(['append 1:0', 'sync 1'])
  })

  it('rejects the appends of a frame it could not write, and gives their offsets out again', async () => {
    appender.failNextAppend = new Error('ENOSPC: no space left on device, write')
    const lost = outcome(append('lost'))
    await until(() => lost.state === 'rejected')
    expect(isTributaryError(lost.error, 'TRIB_STORE_WRITE_FAILED')).toBe(true)
    expect(appender.events).toEqual([])

    appender.autoSyncMs = 0
    const [kept] = await append('kept')
    expect(kept?.offset).toBe(0)
  })
})
