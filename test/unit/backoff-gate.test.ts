import { describe, expect, it } from 'vitest'
import { Backoff, backoffDelay, sleep } from '../../src/lib/backoff.ts'
import { SinkGate } from '../../src/upstream/gate.ts'
import { clientRetryDelay } from '../../src/upstream/kafka-sink.ts'

describe('Backoff', () => {
  it('doubles its ceiling per failure up to maxMs, with full jitter, and starts over on reset', () => {
    const top = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 1)
    expect([top.next(), top.next(), top.next(), top.next(), top.next()]).toEqual([100, 200, 400, 800, 1000])
    expect(top.attempts).toBe(5)
    top.reset()
    expect(top.next()).toBe(100)
    const half = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 0.5)
    expect([half.next(), half.next()]).toEqual([50, 100])
  })

  it('stays bounded after many failures', () => {
    const b = new Backoff({ initialMs: 1, maxMs: 5000 }, () => 1)
    for (let i = 0; i < 100; i++) b.next()
    expect(b.next()).toBe(5000)
  })

  it('refuses bounds that make no sense', () => {
    expect(() => new Backoff({ initialMs: 0, maxMs: 10 })).toThrow(RangeError)
    expect(() => new Backoff({ initialMs: 10, maxMs: 5 })).toThrow(RangeError)
    expect(() => backoffDelay({ initialMs: 10, maxMs: 5 }, 0)).toThrow(RangeError)
  })

  it('gives a caller that counts failures itself the same delays as Backoff', () => {
    const top = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 1)
    const counted = [0, 1, 2, 3, 4, 40].map((n) => backoffDelay({ initialMs: 100, maxMs: 1000 }, n, () => 1))
    expect(counted).toEqual([top.next(), top.next(), top.next(), top.next(), top.next(), 1000])
  })

  it("jitters the Kafka client's own retries below 50, 100 and 200 ms", () => {
    expect([1, 2, 3].map((attempt) => clientRetryDelay(attempt, () => 1))).toEqual([50, 100, 200])
    expect([1, 2, 3].map((attempt) => clientRetryDelay(attempt, () => 0.5))).toEqual([25, 50, 100])
    expect(clientRetryDelay(3, () => 0)).toBe(0)
  })

  it('sleep ends early when aborted', async () => {
    const controller = new AbortController()
    const started = Date.now()
    setTimeout(() => controller.abort(), 10)
    await sleep(10_000, controller.signal)
    expect(Date.now() - started).toBeLessThan(5000)
  })
})

describe('SinkGate', () => {
  it('lets maxInFlight through and then serves higher priority first, then arrival order', async () => {
    const gate = new SinkGate(1, null)
    const signal = new AbortController().signal
    const first = await gate.acquire(0, 1, signal)
    const order: string[] = []
    const low = gate.acquire(0, 1, signal).then((release) => {
      order.push('low')
      release()
    })
    const high = gate.acquire(5, 1, signal).then((release) => {
      order.push('high')
      release()
    })
    const low2 = gate.acquire(0, 1, signal).then((release) => {
      order.push('low2')
      release()
    })
    first()
    await Promise.all([low, high, low2])
    expect(order).toEqual(['high', 'low', 'low2'])
  })

  it('makes a batch beyond the bandwidth cap wait for its bytes', async () => {
    const gate = new SinkGate(4, 10_000)
    const signal = new AbortController().signal
    const started = Date.now()
    ;(await gate.acquire(0, 10_000, signal))()
    ;(await gate.acquire(0, 2_000, signal))()
    expect(Date.now() - started).toBeGreaterThanOrEqual(150)
  })

  it('gives up a wait when aborted', async () => {
    const gate = new SinkGate(1, null)
    const release = await gate.acquire(0, 1, new AbortController().signal)
    const controller = new AbortController()
    const waiting = gate.acquire(0, 1, controller.signal)
    controller.abort(new Error('stop'))
    await expect(waiting).rejects.toThrow('stop')
    release()
    ;(await gate.acquire(0, 1, new AbortController().signal))()
  })
})
