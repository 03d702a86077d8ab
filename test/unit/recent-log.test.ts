import { describe, expect, it } from 'vitest'
import { TributaryError } from '../../src/errors.ts'
import { createLogger } from '../../src/observability/logger.ts'
import { RecentLogEvents } from '../../src/observability/recent-log.ts'

/** A destination that keeps the lines the logger writes to stdout. */
function memory(): { lines: string[]; write(line: string): void } {
  const lines: string[] = []
  return { lines, write: (line) => void lines.push(line) }
}

describe('recent log events', () => {
  it('keeps the warn and error lines the logger emits, newest first, with their codes', () => {
    const recent = new RecentLogEvents()
    const out = memory()
    const log = createLogger('info', out, recent)
    log.info('listening')
    log.child({ component: 'admin' }).warn({ code: 'TRIB_DISK_FULL' }, 'disk above the high-water mark')
    log.error(
      { err: new TributaryError('TRIB_SINK_UNAVAILABLE', 'POST http://127.0.0.1:1/x') },
      'send failed',
    )

    // stdout still gets every line.
    expect(out.lines).toHaveLength(3)
    const events = recent.events()
    expect(events.map((e) => [e.level, e.code, e.component, e.msg])).toEqual([
      ['error', 'TRIB_SINK_UNAVAILABLE', null, 'send failed'],
      ['warn', 'TRIB_DISK_FULL', 'admin', 'disk above the high-water mark'],
    ])
    expect(Date.parse(events[0]?.time ?? '')).not.toBeNaN()
  })

  it('is bounded: the oldest events are dropped and counted', () => {
    const recent = new RecentLogEvents(3)
    const log = createLogger('warn', memory(), recent)
    for (let i = 0; i < 5; i++) log.warn(`w${i}`)
    expect(recent.events().map((e) => e.msg)).toEqual(['w4', 'w3', 'w2'])
    expect(recent.dropped).toBe(2)
    expect(() => new RecentLogEvents(0)).toThrow(RangeError)
  })

  it('sees only what the logger emits, and cuts long messages', () => {
    const recent = new RecentLogEvents()
    createLogger('silent', memory(), recent).error('not emitted')
    expect(recent.events()).toEqual([])
    createLogger('warn', memory(), recent).warn('x'.repeat(2000))
    expect(recent.events()[0]?.msg.length).toBe(501)
    recent.write('not json')
    expect(recent.events()).toHaveLength(1)
  })
})
