// SIGHUP: re-reads the configuration (same flags, same environment, the file
// again), applies what can change while running and names what needs a
// restart. In: the running config and a freshly loaded one; out: the lists of
// changed fields, and the changes applied through `ReloadTarget`.
//
// Applied at once: `logLevel`, and each stream's `retention` (the retention
// timer reads the policies on every tick). Everything else (streams' routing
// and partitions, sinks, ports, limits, dataDir) is wired into running parts
// at start: it is reported as "needs a restart" and keeps its old value.

import type { Config, StreamConfig } from '../config/schema.ts'

export interface ReloadTarget {
  setLogLevel(level: Config['logLevel']): void
  setRetention(streams: readonly StreamConfig[]): void
}

export interface ReloadPlan {
  /** Dotted paths of changed fields that were applied. */
  readonly applied: readonly string[]
  /** Dotted paths of changed fields that take effect only after a restart. */
  readonly needsRestart: readonly string[]
}

/** Dotted paths where `a` and `b` differ (arrays of named objects are keyed by name). */
export function changedPaths(a: unknown, b: unknown, prefix = ''): string[] {
  if (Object.is(a, b)) return []
  if (Array.isArray(a) && Array.isArray(b) && isNamedList(a) && isNamedList(b)) {
    const names = new Set([...a.map((x) => x.name), ...b.map((x) => x.name)])
    return [...names].flatMap((name) =>
      changedPaths(
        a.find((x) => x.name === name),
        b.find((x) => x.name === name),
        `${prefix}${name}.`,
      ),
    )
  }
  if (isObject(a) && isObject(b) && !Array.isArray(a) && !Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)])
    return [...keys].flatMap((key) => changedPaths(a[key], b[key], `${prefix}${key}.`))
  }
  if (JSON.stringify(a) === JSON.stringify(b)) return []
  return [prefix.endsWith('.') ? prefix.slice(0, -1) : prefix]
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null
}

function isNamedList(list: unknown[]): list is Array<{ name: string }> {
  return list.every((x) => isObject(x) && typeof x.name === 'string')
}

/** Which changes between `current` and `next` can be applied now. */
export function planReload(current: Readonly<Config>, next: Readonly<Config>): ReloadPlan {
  const paths = changedPaths(current, next)
  const streamNames = (c: Readonly<Config>) => c.streams.map((s) => s.name).join('\n')
  // Retention is applied per stream only when the set of streams stays the same.
  const sameStreams = streamNames(current) === streamNames(next)
  const applied: string[] = []
  const needsRestart: string[] = []
  for (const path of paths) {
    if (path === 'logLevel' || (sameStreams && isRetentionPath(current, path))) applied.push(path)
    else needsRestart.push(path)
  }
  return { applied, needsRestart }
}

/** True when the path is `streams.<name>.retention...` for a stream that exists (names may hold dots). */
function isRetentionPath(config: Readonly<Config>, path: string): boolean {
  return config.streams.some(
    (s) => path === `streams.${s.name}.retention` || path.startsWith(`streams.${s.name}.retention.`),
  )
}

/** Applies the safe part of `next`; returns the plan for the log line. */
export function applyReload(
  current: Readonly<Config>,
  next: Readonly<Config>,
  target: ReloadTarget,
): { plan: ReloadPlan; running: Readonly<Config> } {
  const plan = planReload(current, next)
  let running = current
  if (plan.applied.includes('logLevel')) {
    target.setLogLevel(next.logLevel)
    running = { ...running, logLevel: next.logLevel }
  }
  if (plan.applied.some((p) => p.startsWith('streams.'))) {
    // Only retention changes: every other field of each stream stays as it runs.
    const retentionOf = new Map(next.streams.map((s) => [s.name, s.retention]))
    const streams = current.streams.map((s) => ({ ...s, retention: retentionOf.get(s.name) ?? s.retention }))
    target.setRetention(streams)
    running = { ...running, streams }
  }
  // `running` is what the process now runs with: the next SIGHUP compares against it,
  // so a change that needs a restart is named again until the restart happens.
  return { plan, running }
}
