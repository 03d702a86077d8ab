import { describe, expect, it } from 'vitest'
import { RecentPublishes } from '../../src/ingest/recent-publishes.ts'

describe('RecentPublishes (the QoS 1 dedupe window)', () => {
  it('remembers the last ids per client, the newest digest of a reused id first', () => {
    const recent = new RecentPublishes(3, 10)
    recent.remember('a', 1, 11)
    recent.remember('a', 2, 22)
    recent.remember('a', 1, 111)
    expect(recent.digest('a', 1)).toBe(111)
    expect(recent.digest('a', 2)).toBe(22)
    expect(recent.digest('b', 1)).toBeUndefined()
  })

  it('forgets the oldest id once a client has published more than the window', () => {
    const recent = new RecentPublishes(3, 10)
    for (let id = 1; id <= 5; id++) recent.remember('a', id, id * 10)
    expect(recent.digest('a', 1)).toBeUndefined()
    expect(recent.digest('a', 2)).toBeUndefined()
    expect([3, 4, 5].map((id) => recent.digest('a', id))).toEqual([30, 40, 50])
  })

  it('keeps digests as unsigned 32-bit values (crc32c)', () => {
    const recent = new RecentPublishes(2, 2)
    recent.remember('a', 7, 0xffff_fffe)
    expect(recent.digest('a', 7)).toBe(0xffff_fffe)
  })

  it('drops the least recently publishing clients past the client limit, never the newest', () => {
    const recent = new RecentPublishes(4, 8)
    for (let c = 0; c < 8; c++) recent.remember(`c${c}`, 1, c)
    recent.remember('c0', 2, 100)
    recent.remember('new', 1, 5)
    expect(recent.digest('new', 1)).toBe(5)
    expect(recent.digest('c0', 2)).toBe(100)
    expect(recent.digest('c1', 1)).toBeUndefined()
    expect(recent.digest('c2', 1)).toBe(2)
  })

  it('forgets a client on a clean session', () => {
    const recent = new RecentPublishes(4, 8)
    recent.remember('a', 1, 1)
    recent.forget('a')
    expect(recent.digest('a', 1)).toBeUndefined()
  })
})
