// mqtt.js publishes at QoS 0, 1 and 2 become records: into the default
// stream without a config, and into configured streams and partitions
// (Kafka's murmur2 partitioner) with one.

import { afterEach, describe, expect, test } from 'vitest'
import { partitionForKey } from '../../src/ingest/partitioner.ts'
import { Cleanup, Inbox, readAll, streamNames } from '../helpers/integration.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

describe('default stream (no config)', () => {
  test('QoS 0, 1 and 2 publishes are stored in order with key = client id and the exact bytes', async () => {
    const { node, url } = await cleanup.node()
    const client = await cleanup.mqtt(url, { clientId: 'sensor-a', protocolVersion: 4 })
    const binary = Buffer.from([0x00, 0xff, 0x10, 0x80, 0x7f, 0x00])
    await client.publishAsync('plant/line1/temp', Buffer.from('q0 21.5'), { qos: 0 })
    // aedes reads the next packet of a connection only after the previous publish was
    // handed to ingest, so the QoS 1 ack below also means the QoS 0 record is committed.
    await client.publishAsync('plant/line1/temp', binary, { qos: 1 })
    await client.publishAsync('plant/line1/pressure', Buffer.from('q2 1013'), { qos: 2 })

    expect(node.store.partitions().map((p) => `${p.stream}/${p.partition}`)).toEqual(['default/0'])
    const records = readAll(node.store, 'default')
    expect(
      records.map((r) => ({
        offset: r.offset,
        key: r.key?.toString(),
        topic: r.topic,
        clientId: r.clientId,
        qos: r.qos,
      })),
    ).toEqual([
      { offset: 0, key: 'sensor-a', topic: 'plant/line1/temp', clientId: 'sensor-a', qos: 0 },
      { offset: 1, key: 'sensor-a', topic: 'plant/line1/temp', clientId: 'sensor-a', qos: 1 },
      { offset: 2, key: 'sensor-a', topic: 'plant/line1/pressure', clientId: 'sensor-a', qos: 2 },
    ])
    expect(records[0]?.payload.equals(Buffer.from('q0 21.5'))).toBe(true)
    expect(records[1]?.payload.equals(binary)).toBe(true)
    expect(records[2]?.payload.equals(Buffer.from('q2 1013'))).toBe(true)
    expect(records.every((r) => r.headers.length === 0 && r.deviceTimeMs === null)).toBe(true)
    expect(node.ingest.stats).toMatchObject({ records: 3, duplicates: 0, rejected: 0 })
  })

  test('two clients keep their own keys; offsets keep counting in one partition', async () => {
    const { node, url } = await cleanup.node()
    const a = await cleanup.mqtt(url, { clientId: 'dev-a' })
    const b = await cleanup.mqtt(url, { clientId: 'dev-b' })
    for (let i = 0; i < 5; i++) {
      await a.publishAsync('t/a', `a${i}`, { qos: 1 })
      await b.publishAsync('t/b', `b${i}`, { qos: 1 })
    }
    const records = readAll(node.store, 'default')
    expect(records.map((r) => r.offset)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(records.map((r) => `${r.key?.toString()}:${r.payload.toString()}`)).toEqual([
      'dev-a:a0',
      'dev-b:b0',
      'dev-a:a1',
      'dev-b:b1',
      'dev-a:a2',
      'dev-b:b2',
      'dev-a:a3',
      'dev-b:b3',
      'dev-a:a4',
      'dev-b:b4',
    ])
  })
})

describe('configured streams', () => {
  const streams = [
    { name: 'temps', match: ['sensors/+/temp'], partitions: 4, key: { from: 'topic-level', level: 1 } },
    { name: 'sensors-all', match: ['sensors/#'] },
  ]

  test('keyed records land in the murmur2 partition of their key; a publish matching two streams lands in both', async () => {
    const { node, url } = await cleanup.node({ config: { streams } })
    const client = await cleanup.mqtt(url, { clientId: 'gw-1' })
    const devices = ['dev-0', 'dev-1', 'dev-2', 'dev-3', 'dev-4', 'dev-5', 'dev-6', 'dev-7']
    for (const [i, dev] of devices.entries()) {
      await client.publishAsync(`sensors/${dev}/temp`, `t${i}`, { qos: 1 })
    }
    await client.publishAsync('sensors/dev-3/humidity', 'h', { qos: 1 })
    await client.publishAsync('other/thing', 'o', { qos: 1 })

    const expected = new Map<number, string[]>([0, 1, 2, 3].map((p) => [p, []]))
    for (const [i, dev] of devices.entries())
      expected.get(partitionForKey(Buffer.from(dev), 4))?.push(`${dev}=t${i}`)
    // The test means something only if the keys spread over more than one partition.
    expect([...expected.values()].filter((list) => list.length > 0).length).toBeGreaterThan(1)
    for (const [partition, list] of expected) {
      const records = readAll(node.store, 'temps', partition)
      expect(records.map((r) => `${r.key?.toString()}=${r.payload.toString()}`)).toEqual(list)
      expect(records.map((r) => r.offset)).toEqual(list.map((_, i) => i))
    }

    const all = readAll(node.store, 'sensors-all')
    expect(all.map((r) => `${r.topic}=${r.payload.toString()}`)).toEqual([
      ...devices.map((dev, i) => `sensors/${dev}/temp=t${i}`),
      'sensors/dev-3/humidity=h',
    ])
    expect(all.every((r) => r.key?.toString() === 'gw-1')).toBe(true)

    // Unmatched topics go to the implicit default stream (unmatched: store is the default).
    const fallback = readAll(node.store, 'default')
    expect(fallback.map((r) => `${r.topic}=${r.payload.toString()}`)).toEqual(['other/thing=o'])
    expect(node.store.partitions().filter((p) => p.stream === 'temps')).toHaveLength(4)
  })

  test('unmatched: live-only stores nothing for an unmatched topic but still delivers it live', async () => {
    const { node, url } = await cleanup.node({
      config: { unmatched: 'live-only', streams: [{ name: 'temps', match: ['sensors/+/temp'] }] },
    })
    const subscriber = await cleanup.mqtt(url, { clientId: 'watcher' })
    const inbox = new Inbox(subscriber)
    await subscriber.subscribeAsync('#', { qos: 1 })
    const publisher = await cleanup.mqtt(url, { clientId: 'pub' })
    await publisher.publishAsync('other/thing', 'live only', { qos: 1 })
    await publisher.publishAsync('sensors/x/temp', 'stored', { qos: 1 })

    const received = await inbox.take(2)
    expect(received.map((m) => `${m.topic}=${m.payload.toString()}`)).toEqual([
      'other/thing=live only',
      'sensors/x/temp=stored',
    ])
    expect(streamNames(node.store)).toEqual(['temps'])
    expect(readAll(node.store, 'temps').map((r) => r.payload.toString())).toEqual(['stored'])
    expect(node.ingest.stats.records).toBe(1)
  })
})
