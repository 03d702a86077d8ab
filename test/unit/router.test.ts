import { describe, expect, it } from 'vitest'
import { validateConfig } from '../../src/config/load.ts'
import type { Config } from '../../src/config/schema.ts'
import { partitionForKey } from '../../src/ingest/partitioner.ts'
import { Router, recordKey, topicMatches } from '../../src/ingest/router.ts'

function config(tree: Record<string, unknown>): Config {
  const result = validateConfig({ dataDir: '/tmp/x', ...tree })
  if (result.config === null) throw new Error(JSON.stringify(result.problems))
  return result.config
}

describe('topic matching [MQTT-4.7]', () => {
  it.each([
    ['sensors/+/temp', 'sensors/a/temp', true],
    ['sensors/+/temp', 'sensors/a/b/temp', false],
    ['sensors/#', 'sensors', true],
    ['sensors/#', 'sensors/a/b', true],
    ['#', 'a/b', true],
    ['#', '$SYS/x', false],
    ['+/x', '$SYS/x', false],
    ['$SYS/#', '$SYS/x', true],
    ['a/b', 'a/b', true],
    ['a/b', 'a/b/c', false],
    ['+', '', true],
    ['a/+', 'a/', true],
  ])('%s vs %s -> %s', (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected)
  })
})

describe('record keys', () => {
  it('takes the client id, a topic level, or nothing', () => {
    expect(recordKey({ from: 'client-id' }, 'a/b', 'dev-1')?.toString()).toBe('dev-1')
    expect(recordKey({ from: 'topic-level', level: 1 }, 'sensors/dev-9/t', 'c')?.toString()).toBe('dev-9')
    expect(recordKey({ from: 'topic-level', level: 5 }, 'sensors/dev-9/t', 'c')).toBeNull()
    expect(recordKey({ from: 'none' }, 'a', 'c')).toBeNull()
  })
})

describe('Router', () => {
  const routed = config({
    streams: [
      { name: 'temps', match: ['sensors/+/temp'], partitions: 4, key: { from: 'topic-level', level: 1 } },
      { name: 'all-sensors', match: ['sensors/#'], key: { from: 'none' }, partitions: 3 },
    ],
  })

  it('routes to every matching stream with Kafka partitioning by key', () => {
    const routes = new Router(routed.streams, 'store').route('sensors/dev-7/temp', 'client')
    expect(routes.map((r) => r.stream.name)).toEqual(['temps', 'all-sensors'])
    expect(routes[0]?.partition).toBe(partitionForKey(Buffer.from('dev-7'), 4))
  })

  it('spreads keyless records round-robin', () => {
    const router = new Router(routed.streams, 'store')
    const partitions = [1, 2, 3, 4].map(() => router.route('sensors/x', 'c')[0]?.partition)
    expect(partitions).toEqual([0, 1, 2, 0])
  })

  it('sends unmatched publishes to the default stream, or nowhere when live-only', () => {
    expect(
      new Router(routed.streams, 'store').route('other/topic', 'dev-1').map((r) => r.stream.name),
    ).toEqual(['default'])
    const liveOnly = config({ ...{ streams: routed.streams }, unmatched: 'live-only' })
    expect(new Router(liveOnly.streams, 'live-only').route('other/topic', 'dev-1')).toEqual([])
  })

  it('never stores $-topics through the default stream', () => {
    expect(new Router(routed.streams, 'store').route('$SYS/broker/x', 'c')).toEqual([])
  })
})
