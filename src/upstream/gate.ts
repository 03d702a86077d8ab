// One gate per sink: how many batches are on the wire at once (all partitions
// together), who goes first when they wait (higher stream priority, then
// arrival), and the bandwidth cap (a token bucket of bytes per second with a
// one-second burst; a batch larger than the bucket borrows and the next waits).

import { sleep } from '../lib/backoff.ts'

export type Release = () => void

interface Waiter {
  readonly priority: number
  readonly seq: number
  readonly grant: () => void
}

export class SinkGate {
  readonly #maxInFlight: number
  readonly #bytesPerS: number | null
  #inFlight = 0
  #seq = 0
  #waiters: Waiter[] = []
  #tokens: number
  #refilledAt = Date.now()

  constructor(maxInFlight: number, bytesPerS: number | null) {
    this.#maxInFlight = maxInFlight
    this.#bytesPerS = bytesPerS
    this.#tokens = bytesPerS ?? 0
  }

  /** Waits for a slot and for `bytes` of bandwidth; aborting gives up the wait (the promise rejects). */
  async acquire(priority: number, bytes: number, signal: AbortSignal): Promise<Release> {
    if (this.#inFlight >= this.#maxInFlight || this.#waiters.length > 0) {
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          const i = this.#waiters.indexOf(waiter)
          if (i >= 0) this.#waiters.splice(i, 1)
          reject(signal.reason)
        }
        const waiter: Waiter = {
          priority,
          seq: this.#seq++,
          grant: () => {
            signal.removeEventListener('abort', onAbort)
            resolve()
          },
        }
        this.#waiters.push(waiter)
        this.#waiters.sort((a, b) => b.priority - a.priority || a.seq - b.seq)
        signal.addEventListener('abort', onAbort, { once: true })
      })
    } else {
      this.#inFlight++
    }
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      const next = this.#waiters.shift()
      if (next === undefined) this.#inFlight--
      else next.grant()
    }
    try {
      await this.#spend(bytes, signal)
    } catch (err) {
      release()
      throw err
    }
    return release
  }

  async #spend(bytes: number, signal: AbortSignal): Promise<void> {
    const rate = this.#bytesPerS
    if (rate === null) return
    const now = Date.now()
    this.#tokens = Math.min(rate, this.#tokens + ((now - this.#refilledAt) / 1000) * rate)
    this.#refilledAt = now
    this.#tokens -= bytes
    if (this.#tokens >= 0) return
    const waitMs = Math.ceil((-this.#tokens / rate) * 1000)
    await sleep(waitMs, signal)
    signal.throwIfAborted()
  }
}
