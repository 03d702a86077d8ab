// Which followers the origin picks for each of its partitions
// (src/replication/assignment.ts): replicas - 1 per partition, spread by
// rendezvous hashing, sticky while a follower's link is up and for awayMs
// after it dropped, then given to a connected follower.

import { describe, expect, it } from 'vitest'
import { PartitionAssignment, rendezvousScore } from '../../src/replication/assignment.ts'

function clock() {
  let now = 0
  return {
    now: () => now,
    advance: (ms: number): void => {
      now += ms
    },
  }
}

const partitions = (n: number, replicas: number) =>
  Array.from({ length: n }, (_, partition) => ({ stream: 'temps', partition, replicas }))

describe('partition assignment', () => {
  it('gives each partition replicas - 1 connected followers, the highest rendezvous scores, spread over them', () => {
    const a = new PartitionAssignment({ awayMs: 1000 })
    for (const f of ['node-b', 'node-c', 'node-d']) a.linkUp(f)
    const counts = new Map<string, number>()
    for (const p of partitions(60, 2)) {
      const chosen = a.followersOf(p)
      expect(chosen).toHaveLength(1)
      const best = ['node-b', 'node-c', 'node-d'].sort((x, y) =>
        rendezvousScore(p.stream, p.partition, y) > rendezvousScore(p.stream, p.partition, x) ? 1 : -1,
      )[0]
      expect(chosen).toEqual([best])
      for (const f of chosen) counts.set(f, (counts.get(f) ?? 0) + 1)
    }
    // 60 partitions over three followers: each gets a fair share (10 to 30).
    for (const f of ['node-b', 'node-c', 'node-d']) expect(counts.get(f)).toBeGreaterThanOrEqual(10)
    expect(a.followersOf({ stream: 'temps', partition: 0, replicas: 3 })).toHaveLength(2)
    expect(a.followersOf({ stream: 'solo', partition: 0, replicas: 1 })).toEqual([])
    // Fewer followers than wanted: every connected one.
    expect(a.followersOf({ stream: 'wide', partition: 0, replicas: 9 })).toHaveLength(3)
  })

  it('is sticky: a follower that holds a partition keeps it when a better-scored one connects', () => {
    const a = new PartitionAssignment({ awayMs: 1000 })
    a.linkUp('node-b')
    const all = partitions(20, 2)
    for (const p of all) expect(a.followersOf(p)).toEqual(['node-b'])
    a.linkUp('node-c')
    for (const p of all) expect(a.followersOf(p)).toEqual(['node-b'])
  })

  it('moves a partition to a connected follower once its follower has been away for awayMs, and says so', () => {
    const t = clock()
    const released: string[] = []
    const a = new PartitionAssignment({
      awayMs: 1000,
      now: t.now,
      onReleased: (f, p) => released.push(`${f} ${p.stream}/${p.partition}`),
    })
    a.linkUp('node-b')
    const p = { stream: 'temps', partition: 3, replicas: 2 }
    expect(a.followersOf(p)).toEqual(['node-b'])
    a.linkUp('node-c')
    a.linkDown('node-b')
    t.advance(999)
    expect(a.followersOf(p)).toEqual(['node-b'])
    // Back within awayMs: nothing moves.
    a.linkUp('node-b')
    a.linkDown('node-b')
    t.advance(999)
    expect(a.followersOf(p)).toEqual(['node-b'])
    t.advance(1)
    expect(a.followersOf(p)).toEqual(['node-c'])
    expect(released).toEqual(['node-b temps/3'])
    // It comes back: node-c keeps the partition (sticky), node-b's copy stays where it is.
    a.linkUp('node-b')
    expect(a.followersOf(p)).toEqual(['node-c'])
  })

  it('keeps a follower that is away too long listed while no connected follower can take its place', () => {
    const t = clock()
    const a = new PartitionAssignment({ awayMs: 100, now: t.now })
    a.linkUp('node-b')
    const p = { stream: 'temps', partition: 0, replicas: 2 }
    expect(a.followersOf(p)).toEqual(['node-b'])
    a.linkDown('node-b')
    t.advance(5000)
    expect(a.followersOf(p)).toEqual(['node-b'])
    a.linkUp('node-c')
    expect(a.followersOf(p)).toEqual(['node-c'])
  })

  it('counts a follower with two links as connected until both dropped', () => {
    const t = clock()
    const a = new PartitionAssignment({ awayMs: 100, now: t.now })
    a.linkUp('node-b')
    a.linkUp('node-b')
    a.linkDown('node-b')
    expect(a.connected('node-b')).toBe(true)
    a.linkDown('node-b')
    expect(a.connected('node-b')).toBe(false)
  })
})
