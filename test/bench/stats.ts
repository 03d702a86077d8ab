// Percentiles of latency samples (microseconds in, milliseconds out) and
// small formatting helpers shared by the report.

export interface LatencySummary {
  readonly samples: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly p999: number
  readonly max: number
}

/** Nearest-rank percentile of an ascending array. */
function rank(sorted: Uint32Array, q: number): number {
  if (sorted.length === 0) return 0
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[i] ?? 0
}

/** Nearest-rank percentile of unsorted values (sorts a copy); 0 for none. */
export function percentile(values: Uint32Array, q: number): number {
  return rank(values.slice().sort(), q)
}

/** Summarises samples in microseconds as milliseconds; sorts the array in place. */
export function latencySummary(samplesUs: Uint32Array): LatencySummary {
  const sorted = samplesUs.sort()
  const ms = (us: number): number => us / 1000
  return {
    samples: sorted.length,
    p50: ms(rank(sorted, 0.5)),
    p90: ms(rank(sorted, 0.9)),
    p99: ms(rank(sorted, 0.99)),
    p999: ms(rank(sorted, 0.999)),
    max: ms(sorted.length === 0 ? 0 : (sorted[sorted.length - 1] ?? 0)),
  }
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1
    ? (sorted[mid] ?? Number.NaN)
    : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2
}
