// What any MQTT 3.1.1 broker does, done by tributary with real mqtt.js
// clients: live delivery, retained messages (also after a restart), wills,
// and persistent sessions that queue QoS 1 messages (also across a restart, and
// up to limits.maxQueuedPerSession).

import { afterEach, describe, expect, test } from 'vitest'
import { Cleanup, type Inbox, type Message, readAll } from '../helpers/integration.ts'
import { prometheusSamples } from '../helpers/prometheus.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

const V311 = { protocolVersion: 4 } as const

/**
 * A clean subscriber to `filter`: once it has received a message, aedes has also
 * queued that message for offline persistent sessions (its publish pipeline runs
 * enqueueOffline before the live fan-out). A QoS 1 PUBACK alone does not say so:
 * aedes sends it before the fan-out starts.
 */
async function fence(url: string, filter: string): Promise<Inbox> {
  const { client, inbox } = await cleanup.mqttWithInbox(url, { ...V311, clientId: `fence-${filter}` })
  await client.subscribeAsync(filter, { qos: 1 })
  return inbox
}

describe('MQTT 3.1.1 broker behaviour', () => {
  test('live delivery at QoS 0, 1 and 2 to a subscriber, byte for byte', async () => {
    const { node, url } = await cleanup.node()
    const { client: subscriber, inbox } = await cleanup.mqttWithInbox(url, { ...V311, clientId: 'sub' })
    const granted = await subscriber.subscribeAsync('live/#', { qos: 2 })
    expect(granted.map((g) => g.qos)).toEqual([2])
    const publisher = await cleanup.mqtt(url, { ...V311, clientId: 'pub' })
    const bytes = Buffer.from([0, 1, 2, 253, 254, 255])
    await publisher.publishAsync('live/a', 'zero', { qos: 0 })
    await publisher.publishAsync('live/b', bytes, { qos: 1 })
    await publisher.publishAsync('live/c', 'two', { qos: 2 })

    const messages = await inbox.take(3)
    expect(messages.map((m) => [m.topic, m.packet.qos])).toEqual([
      ['live/a', 0],
      ['live/b', 1],
      ['live/c', 2],
    ])
    expect(messages[0]?.payload.toString()).toBe('zero')
    expect(messages[1]?.payload.equals(bytes)).toBe(true)
    expect(messages[2]?.payload.toString()).toBe('two')
    expect(readAll(node.store, 'default').map((r) => r.topic)).toEqual(['live/a', 'live/b', 'live/c'])
  })

  test('a retained message reaches a later subscriber, and still does after a restart on the same data', async () => {
    const first = await cleanup.node()
    const publisher = await cleanup.mqtt(first.url, { ...V311, clientId: 'door' })
    await publisher.publishAsync('status/door', 'open', { qos: 1, retain: true })
    await publisher.endAsync()

    // The PUBACK leaves once the record is durable; aedes stores the retained copy
    // just after, so a subscriber that comes at once may get the publish live
    // (retain 0, [MQTT-3.3.1-9]). A later one gets the retained copy.
    let retained: Message | undefined
    for (let attempt = 0; attempt < 20 && retained?.packet.retain !== true; attempt++) {
      const late = await cleanup.mqttWithInbox(first.url, { ...V311, clientId: `late-${attempt}` })
      await late.client.subscribeAsync('status/#', { qos: 1 })
      ;[retained] = await late.inbox.take(1)
      await late.client.endAsync()
    }
    expect(retained?.topic).toBe('status/door')
    expect(retained?.payload.toString()).toBe('open')
    expect(retained?.packet.retain).toBe(true)
    await first.stop()

    const second = await cleanup.node({ dataDir: first.dataDir })
    const after = await cleanup.mqttWithInbox(second.url, { ...V311, clientId: 'after-restart' })
    await after.client.subscribeAsync('status/door', { qos: 1 })
    const [again] = await after.inbox.take(1)
    expect(again?.payload.toString()).toBe('open')
    expect(again?.packet.retain).toBe(true)
    // The retained publish is also a record of the log.
    expect(readAll(second.node.store, 'default').map((r) => r.payload.toString())).toEqual(['open'])
  })

  test("a client's will is published (and stored) when its socket is destroyed", async () => {
    const { node, url } = await cleanup.node()
    const watcher = await cleanup.mqttWithInbox(url, { ...V311, clientId: 'watcher' })
    await watcher.client.subscribeAsync('wills/#', { qos: 1 })
    const doomed = await cleanup.mqtt(url, {
      ...V311,
      clientId: 'doomed',
      will: { topic: 'wills/doomed', payload: Buffer.from('gone'), qos: 1, retain: false },
    })
    doomed.stream.destroy()

    const [will] = await watcher.inbox.take(1)
    expect(will?.topic).toBe('wills/doomed')
    expect(will?.payload.toString()).toBe('gone')
    const records = readAll(node.store, 'default')
    expect(records.map((r) => [r.topic, r.clientId, r.payload.toString()])).toEqual([
      ['wills/doomed', 'doomed', 'gone'],
    ])
  })

  test('a persistent QoS 1 subscriber gets what was published while it was away', async () => {
    const { url } = await cleanup.node()
    const options = { ...V311, clientId: 'keeper', clean: false }
    const away = await cleanup.mqtt(url, options)
    await away.subscribeAsync('queue/#', { qos: 1 })
    await away.endAsync()

    const seen = await fence(url, 'queue/#')
    const publisher = await cleanup.mqtt(url, { ...V311, clientId: 'producer' })
    for (const n of [1, 2, 3]) await publisher.publishAsync(`queue/${n}`, `m${n}`, { qos: 1 })
    await seen.take(3)

    const back = await cleanup.mqttWithInbox(url, options)
    expect(back.connack.sessionPresent).toBe(true)
    const messages = await back.inbox.take(3)
    expect(messages.map((m) => `${m.topic}=${m.payload.toString()}`)).toEqual([
      'queue/1=m1',
      'queue/2=m2',
      'queue/3=m3',
    ])
  })

  test('a persistent session survives a node restart: queued and new messages both arrive', async () => {
    const first = await cleanup.node()
    const options = { ...V311, clientId: 'keeper-restart', clean: false }
    const away = await cleanup.mqtt(first.url, options)
    await away.subscribeAsync('queue/#', { qos: 1 })
    await away.endAsync()
    const seenBefore = await fence(first.url, 'queue/#')
    const before = await cleanup.mqtt(first.url, { ...V311, clientId: 'producer-1' })
    await before.publishAsync('queue/a', 'before-1', { qos: 1 })
    await before.publishAsync('queue/b', 'before-2', { qos: 1 })
    await seenBefore.take(2)
    await first.stop()

    const second = await cleanup.node({ dataDir: first.dataDir })
    // The subscription itself came back from disk: a publish made after the restart is queued too.
    const seenAfter = await fence(second.url, 'queue/#')
    const after = await cleanup.mqtt(second.url, { ...V311, clientId: 'producer-2' })
    await after.publishAsync('queue/c', 'after-1', { qos: 1 })
    await seenAfter.take(1)

    const back = await cleanup.mqttWithInbox(second.url, options)
    expect(back.connack.sessionPresent).toBe(true)
    const messages = await back.inbox.take(3)
    expect(messages.map((m) => m.payload.toString())).toEqual(['before-1', 'before-2', 'after-1'])
    expect(messages.every((m) => m.packet.qos === 1)).toBe(true)
    // Nothing more (a duplicate) follows: a QoS 1 publish round trip on the same connection completes first.
    await back.client.publishAsync('queue/z', 'last', { qos: 1 })
    expect((await back.inbox.take(4)).map((m) => m.payload.toString())).toEqual([
      'before-1',
      'before-2',
      'after-1',
      'last',
    ])
  })

  test('a full session queue drops its oldest deliveries and counts them in /metrics; the log keeps all', async () => {
    const { node, url, httpUrl } = await cleanup.node({ config: { limits: { maxQueuedPerSession: 2 } } })
    const options = { ...V311, clientId: 'keeper-full', clean: false }
    const away = await cleanup.mqtt(url, options)
    await away.subscribeAsync('queue/#', { qos: 1 })
    await away.endAsync()

    const seen = await fence(url, 'queue/#')
    const publisher = await cleanup.mqtt(url, { ...V311, clientId: 'producer-full' })
    for (const n of [1, 2, 3, 4, 5]) await publisher.publishAsync(`queue/${n}`, `m${n}`, { qos: 1 })
    await seen.take(5)

    const metrics = prometheusSamples(await (await fetch(`${httpUrl}/metrics`)).text())
    expect(metrics.get('tributary_session_queue_dropped_total')).toBe(3)
    expect(readAll(node.store, 'default').map((r) => r.payload.toString())).toEqual([
      'm1',
      'm2',
      'm3',
      'm4',
      'm5',
    ])

    const back = await cleanup.mqttWithInbox(url, options)
    expect(back.connack.sessionPresent).toBe(true)
    // Only the newest two were kept: a publish made now arrives right after them.
    await back.client.publishAsync('queue/z', 'last', { qos: 1 })
    expect((await back.inbox.take(3)).map((m) => m.payload.toString())).toEqual(['m4', 'm5', 'last'])
  })
})
