// Times GET /healthz at a fixed rate while a run is measured: the admin API
// must stay responsive while the disk is slow (issue 4, SD-card conditions).
// One keep-alive connection; a request that waits behind a slow one counts
// from when it was due, as a monitoring system would see it. Bounded: one
// request per interval while running, each given up after REQUEST_TIMEOUT_MS.

import { Agent, get } from 'node:http'

const REQUEST_TIMEOUT_MS = 5000

export interface HealthProbeResult {
  readonly sent: number
  /** Answered 200 within the timeout. */
  readonly ok: number
  /** Latency of the answered requests, microseconds. */
  readonly samplesUs: Uint32Array
}

export class HealthProbe {
  readonly #url: string
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 1 })
  readonly #samples: number[] = []
  readonly #pending = new Set<Promise<void>>()
  readonly #timer: NodeJS.Timeout
  #sent = 0
  #ok = 0

  constructor(url: string, ratePerS: number) {
    this.#url = url
    this.#timer = setInterval(() => this.#request(), 1000 / ratePerS)
  }

  #request(): void {
    this.#sent++
    const startedAt = performance.now()
    const done = new Promise<void>((resolve) => {
      const req = get(this.#url, { agent: this.#agent, timeout: REQUEST_TIMEOUT_MS }, (res) => {
        res.resume()
        res.on('end', () => {
          if (res.statusCode === 200) {
            this.#ok++
            this.#samples.push(Math.round((performance.now() - startedAt) * 1000))
          }
          resolve()
        })
        res.on('error', () => resolve())
      })
      req.on('timeout', () => req.destroy(new Error('timeout')))
      req.on('error', () => resolve())
    })
    this.#pending.add(done)
    done.then(() => this.#pending.delete(done))
  }

  /** Stops sending, waits for the requests in flight (each bounded by its timeout). */
  async stop(): Promise<HealthProbeResult> {
    clearInterval(this.#timer)
    await Promise.all(this.#pending)
    this.#agent.destroy()
    return { sent: this.#sent, ok: this.#ok, samplesUs: Uint32Array.from(this.#samples) }
  }
}
