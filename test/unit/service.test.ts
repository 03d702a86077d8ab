// What SIGHUP may apply while running, and the watchdog interval systemd asks for.

import { describe, expect, test } from 'vitest'
import { validateConfig } from '../../src/config/load.ts'
import type { Config } from '../../src/config/schema.ts'
import { watchdogIntervalMs } from '../../src/service/notify.ts'
import { applyReload, planReload } from '../../src/service/reload.ts'

function config(tree: Record<string, unknown>): Config {
  const result = validateConfig({ dataDir: '/tmp/x', ...tree })
  if (result.config === null) throw new Error(JSON.stringify(result.problems))
  return result.config
}

const streams = [{ name: 'temps', match: ['sensors/+/t'], partitions: 2 }]

describe('planReload', () => {
  test('log level and retention are applied, everything else needs a restart', () => {
    const before = config({ streams })
    const after = config({
      logLevel: 'debug',
      mqtt: { port: 1884 },
      streams: [{ ...streams[0], partitions: 4, retention: { maxAgeMs: 1000 } }],
    })
    const plan = planReload(before, after)
    expect(plan.applied).toEqual(['logLevel', 'streams.temps.retention.maxAgeMs'])
    expect(plan.needsRestart).toEqual(['mqtt.port', 'streams.temps.partitions'])
  })

  test('a new sink (and the dead-letter streams it brings) needs a restart, and holds back retention', () => {
    const before = config({ streams })
    const after = config({
      streams: [{ ...streams[0], retention: { maxAgeMs: 1000 } }],
      sinks: [{ type: 'http', name: 'up', url: 'http://127.0.0.1:9/x' }],
    })
    const plan = planReload(before, after)
    expect(plan.applied).toEqual([])
    expect(plan.needsRestart).toEqual(
      expect.arrayContaining(['sinks.up', 'streams.temps.dead-letter', 'streams.temps.retention.maxAgeMs']),
    )
  })

  test('retention of a stream that is added or removed needs a restart', () => {
    const before = config({ streams })
    const after = config({ streams: [...streams, { name: 'more', match: ['m/#'] }] })
    expect(planReload(before, after)).toEqual({ applied: [], needsRestart: ['streams.more'] })
  })

  test('an unchanged config changes nothing', () => {
    expect(planReload(config({ streams }), config({ streams }))).toEqual({ applied: [], needsRestart: [] })
  })

  test('applyReload hands the new retention to the node and keeps the rest of each stream', () => {
    const before = config({ streams })
    const after = config({ streams: [{ ...streams[0], partitions: 8, retention: { maxBytes: 5000 } }] })
    const calls: unknown[] = []
    const { running } = applyReload(before, after, {
      setLogLevel: (level) => calls.push(level),
      setRetention: (s) => calls.push(s.map((x) => [x.name, x.partitions, x.retention])),
    })
    expect(calls).toEqual([
      [
        ['temps', 2, { maxAgeMs: 7 * 24 * 3600 * 1000, maxBytes: 5000 }],
        ['default', 1, { maxAgeMs: 7 * 24 * 3600 * 1000, maxBytes: 1024 * 1024 * 1024 }],
      ],
    ])
    expect(planReload(running, after).needsRestart).toEqual(['streams.temps.partitions'])
  })
})

describe('watchdogIntervalMs', () => {
  test('half of WATCHDOG_USEC, for this process only', () => {
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }, 42)).toBe(15_000)
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42)).toBe(15_000)
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '7' }, 42)).toBeNull()
    expect(watchdogIntervalMs({}, 42)).toBeNull()
    expect(watchdogIntervalMs({ WATCHDOG_USEC: 'x' }, 42)).toBeNull()
  })
})
