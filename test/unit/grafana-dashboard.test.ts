// docs/grafana-dashboard.json against the metrics registry: every metric a
// PromQL expression (or a template variable's query) names must exist, so a
// renamed metric breaks this test instead of a panel; and every tributary_*
// metric is on the dashboard unless it is listed here as left out on purpose.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { Metrics } from '../../src/observability/metrics.ts'

const DASHBOARD = join(import.meta.dirname, '../../docs/grafana-dashboard.json')
/** Metrics the dashboard leaves out, and why. */
const NOT_ON_DASHBOARD = new Map([
  ['tributary_partition_first_offset', 'offsets are for the status page and /v1/streams, not a time series'],
  ['tributary_partition_next_offset', 'the ingest rate shows the same, per stream'],
  [
    'tributary_partition_replicated_next',
    'an offset, for the status page and /v1/peers; replica lag shows the trend',
  ],
])
/** The series a histogram exposes beside its name. */
const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count']

interface Panel {
  readonly title?: string
  readonly targets?: ReadonlyArray<{ readonly expr?: string }>
  readonly panels?: readonly Panel[]
}

function expressions(): string[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    panels: Panel[]
    templating: { list: Array<{ query?: unknown; definition?: string }> }
  }
  const out: string[] = []
  const walk = (panels: readonly Panel[]): void => {
    for (const p of panels) {
      for (const t of p.targets ?? []) if (t.expr !== undefined) out.push(t.expr)
      walk(p.panels ?? [])
    }
  }
  walk(dashboard.panels)
  for (const v of dashboard.templating.list) if (v.definition !== undefined) out.push(v.definition)
  return out
}

/** Metric names in a PromQL expression: identifiers of our and prom-client's default metric families. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b(?:tributary|process|nodejs)_[a-z0-9_]+\b/g)].map((m) => m[0])
}

describe('grafana dashboard', () => {
  // Every optional metric present: a rating, and a readable /proc/self/io.
  const metrics = new Metrics({ storageEnduranceTBW: 10, readWrittenBytes: () => 0 })
  const families = new Map(metrics.registry.getMetricsAsArray().map((m) => [m.name, m]))
  const exists = (name: string): boolean => {
    if (families.has(name)) return true
    const suffix = HISTOGRAM_SUFFIXES.find((s) => name.endsWith(s))
    const base = suffix === undefined ? undefined : families.get(name.slice(0, -suffix.length))
    return (base as { type?: string } | undefined)?.type === 'histogram'
  }
  const used = expressions().flatMap(metricNames)

  it('has queries', () => {
    expect(expressions().length).toBeGreaterThan(20)
  })

  it('names only metrics the registry has', () => {
    expect([...new Set(used)].filter((name) => !exists(name))).toEqual([])
  })

  it('shows every tributary metric but those left out on purpose', () => {
    const shown = new Set(
      used.map((n) => HISTOGRAM_SUFFIXES.reduce((name, s) => name.replace(new RegExp(`${s}$`), ''), n)),
    )
    const missing = [...families.keys()].filter(
      (name) => name.startsWith('tributary_') && !shown.has(name) && !NOT_ON_DASHBOARD.has(name),
    )
    expect(missing).toEqual([])
    for (const name of NOT_ON_DASHBOARD.keys()) expect(families.has(name)).toBe(true)
  })
})
