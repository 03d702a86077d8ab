// Retries with jittered exponential backoff: the one module every retrying
// part of tributary uses (the forwarders, the Kafka client's own quick
// retries, later replication). "Full jitter" (AWS
// architecture blog, 2015): the n-th delay is uniform in [0, min(max, base * 2^n)],
// so a fleet of gateways coming back after the same outage does not retry in step.
// Callers retry only retriable failures (TributaryError.retriable); one that
// retrying cannot fix is reported at once.

export interface BackoffPolicy {
  readonly initialMs: number
  readonly maxMs: number
}

function checked(policy: BackoffPolicy): BackoffPolicy {
  if (policy.initialMs <= 0 || policy.maxMs < policy.initialMs) {
    throw new RangeError(`backoff needs 0 < initialMs <= maxMs, got ${policy.initialMs}, ${policy.maxMs}`)
  }
  return policy
}

/**
 * The delay after `failures` failures in a row (counted before this one), for
 * callers that keep the count themselves (a client library's retry hook).
 */
export function backoffDelay(
  policy: BackoffPolicy,
  failures: number,
  random: () => number = Math.random,
): number {
  const { initialMs, maxMs } = checked(policy)
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(Math.max(0, failures), 30))
  return Math.round(random() * ceiling)
}

export class Backoff {
  readonly #policy: BackoffPolicy
  readonly #random: () => number
  #attempt = 0

  constructor(policy: BackoffPolicy, random: () => number = Math.random) {
    this.#policy = checked(policy)
    this.#random = random
  }

  /** Failures in a row since the last success. */
  get attempts(): number {
    return this.#attempt
  }

  /** The delay before the next attempt, and counts the failure. */
  next(): number {
    const delay = backoffDelay(this.#policy, this.#attempt, this.#random)
    this.#attempt++
    return delay
  }

  reset(): void {
    this.#attempt = 0
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (resolves, does not throw). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) {
      resolve()
      return
    }
    const timer = setTimeout(done, ms)
    function done(): void {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}
