// Retransmissions do not duplicate records (ingest.ts dedupe rules), driven
// with raw MQTT packets so packet ids and DUP flags are exactly what a
// device would send.

import type { IPublishPacket } from 'mqtt-packet'
import { afterEach, describe, expect, test } from 'vitest'
import { Cleanup, readAll } from '../helpers/integration.ts'
import { RawMqtt } from '../helpers/raw-mqtt.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

async function rawClient(port: number, clientId: string, clean = true): Promise<RawMqtt> {
  const { conn, connack } = await RawMqtt.connect(port, { clientId, clean })
  cleanup.defer(`destroy raw connection ${clientId}`, () => conn.destroy())
  expect(connack.returnCode).toBe(0)
  return conn
}

function publish(
  messageId: number,
  qos: 1 | 2,
  payload: string,
  options: { dup?: boolean; topic?: string } = {},
): IPublishPacket {
  return {
    cmd: 'publish',
    messageId,
    qos,
    dup: options.dup ?? false,
    retain: false,
    topic: options.topic ?? 'dedupe/test',
    payload: Buffer.from(payload),
  }
}

function payloads(records: ReturnType<typeof readAll>): string[] {
  return records.map((r) => `${r.offset}:${r.payload.toString()}`)
}

describe('QoS 1', () => {
  test('a DUP retry of packet id 7 is acked and not stored again; a new publish reusing id 7 is', async () => {
    const { node, port } = await cleanup.node()
    const conn = await rawClient(port, 'q1-device')

    conn.send(publish(7, 1, 'first'))
    expect((await conn.next('puback')).messageId).toBe(7)
    expect(payloads(readAll(node.store, 'default'))).toEqual(['0:first'])

    conn.send(publish(7, 1, 'first', { dup: true }))
    expect((await conn.next('puback')).messageId).toBe(7)
    expect(payloads(readAll(node.store, 'default'))).toEqual(['0:first'])

    // Same id, DUP clear, other payload: the client reused the id for a new message.
    conn.send(publish(7, 1, 'second'))
    expect((await conn.next('puback')).messageId).toBe(7)
    expect(payloads(readAll(node.store, 'default'))).toEqual(['0:first', '1:second'])
    expect(node.ingest.stats).toMatchObject({ records: 2, duplicates: 1 })
    expect(conn.isClosed).toBe(false)
  })

  test('a DUP publish whose payload differs from the stored one is a new record', async () => {
    const { node, port } = await cleanup.node()
    const conn = await rawClient(port, 'q1-other')
    conn.send(publish(3, 1, 'one'))
    expect((await conn.next('puback')).messageId).toBe(3)
    conn.send(publish(3, 1, 'two', { dup: true }))
    expect((await conn.next('puback')).messageId).toBe(3)
    expect(payloads(readAll(node.store, 'default'))).toEqual(['0:one', '1:two'])
  })
})

describe('QoS 2', () => {
  test('a retransmitted PUBLISH id 9 gets PUBREC and no second record; after PUBREL/PUBCOMP id 9 is new', async () => {
    const { node, port } = await cleanup.node()
    const conn = await rawClient(port, 'q2-device')

    conn.send(publish(9, 2, 'once'))
    expect((await conn.next('pubrec')).messageId).toBe(9)
    conn.send(publish(9, 2, 'once', { dup: true }))
    expect((await conn.next('pubrec')).messageId).toBe(9)
    expect(payloads(readAll(node.store, 'default'))).toEqual(['0:once'])

    conn.send({ cmd: 'pubrel', messageId: 9 })
    expect((await conn.next('pubcomp')).messageId).toBe(9)
    expect(payloads(readAll(node.store, 'default'))).toEqual(['0:once'])

    conn.send(publish(9, 2, 'again'))
    expect((await conn.next('pubrec')).messageId).toBe(9)
    conn.send({ cmd: 'pubrel', messageId: 9 })
    expect((await conn.next('pubcomp')).messageId).toBe(9)
    expect(payloads(readAll(node.store, 'default'))).toEqual(['0:once', '1:again'])
    expect(node.ingest.stats).toMatchObject({ records: 2, duplicates: 1 })
  })

  test('a retransmit without the DUP flag is answered from the marker too', async () => {
    const { node, port } = await cleanup.node()
    const conn = await rawClient(port, 'q2-nodup')
    conn.send(publish(5, 2, 'x'))
    expect((await conn.next('pubrec')).messageId).toBe(5)
    conn.send(publish(5, 2, 'x'))
    expect((await conn.next('pubrec')).messageId).toBe(5)
    conn.send({ cmd: 'pubrel', messageId: 5 })
    expect((await conn.next('pubcomp')).messageId).toBe(5)
    expect(payloads(readAll(node.store, 'default'))).toEqual(['0:x'])
  })

  // A clean session starts packet ids over (ingest.forgetClient at CONNECT). If the old
  // marker survived, the new message would get PUBREC/PUBCOMP without being stored.
  test('a clean-session reconnect starts packet ids over: id 9 is a new message', async () => {
    const { node, port } = await cleanup.node()
    const before = await rawClient(port, 'q2-clean')
    before.send(publish(9, 2, 'old'))
    expect((await before.next('pubrec')).messageId).toBe(9)
    await before.destroy()

    const after = await rawClient(port, 'q2-clean')
    after.send(publish(9, 2, 'new'))
    expect((await after.next('pubrec')).messageId).toBe(9)
    after.send({ cmd: 'pubrel', messageId: 9 })
    expect((await after.next('pubcomp')).messageId).toBe(9)
    expect(payloads(readAll(node.store, 'default'))).toEqual(['0:old', '1:new'])
  })

  // The same flow seen by a subscriber: a clean session discards the old session's
  // unfinished QoS 2 state [MQTT-3.1.2-6], so the new message is delivered, not taken
  // for a retransmission.
  test('after a clean-session reconnect, a QoS 2 publish reusing an unfinished id is delivered live', async () => {
    const { url, port } = await cleanup.node()
    const watcher = await cleanup.mqttWithInbox(url, { clientId: 'q2-watcher' })
    await watcher.client.subscribeAsync('dedupe/#', { qos: 2 })
    const before = await rawClient(port, 'q2-clean-live')
    before.send(publish(9, 2, 'old'))
    expect((await before.next('pubrec')).messageId).toBe(9)
    await before.destroy()

    const after = await rawClient(port, 'q2-clean-live')
    after.send(publish(9, 2, 'new'))
    expect((await after.next('pubrec')).messageId).toBe(9)
    after.send({ cmd: 'pubrel', messageId: 9 })
    expect((await after.next('pubcomp')).messageId).toBe(9)
    // A later message on the same connection bounds the wait: by the time it arrives,
    // anything published before it from this connection has been delivered.
    after.send(publish(10, 2, 'fence'))
    expect((await after.next('pubrec')).messageId).toBe(10)
    await watcher.inbox.until(
      (messages) => messages.some((m) => m.payload.toString() === 'fence'),
      'the fence message',
    )
    expect(watcher.inbox.messages.map((m) => m.payload.toString())).toEqual(['old', 'new', 'fence'])
  })

  test('a QoS 2 retransmit after a node restart (persistent session) is still answered from the marker', async () => {
    const first = await cleanup.node()
    const before = await rawClient(first.port, 'q2-restart', false)
    before.send(publish(11, 2, 'survives'))
    expect((await before.next('pubrec')).messageId).toBe(11)
    await before.destroy()
    await first.stop()

    const second = await cleanup.node({ dataDir: first.dataDir })
    expect(payloads(readAll(second.node.store, 'default'))).toEqual(['0:survives'])
    const { conn: after, connack } = await RawMqtt.connect(second.port, {
      clientId: 'q2-restart',
      clean: false,
    })
    cleanup.defer('destroy raw connection q2-restart (after restart)', () => after.destroy())
    // (aedes reports sessionPresent from subscriptions only, so it is not asserted here.)
    expect(connack.returnCode).toBe(0)

    after.send(publish(11, 2, 'survives', { dup: true }))
    expect((await after.next('pubrec')).messageId).toBe(11)
    expect(payloads(readAll(second.node.store, 'default'))).toEqual(['0:survives'])
    after.send({ cmd: 'pubrel', messageId: 11 })
    expect((await after.next('pubcomp')).messageId).toBe(11)
    expect(payloads(readAll(second.node.store, 'default'))).toEqual(['0:survives'])
    expect(second.node.ingest.stats).toMatchObject({ records: 0, duplicates: 1 })

    // Released: id 11 is free again.
    after.send(publish(11, 2, 'next'))
    expect((await after.next('pubrec')).messageId).toBe(11)
    expect(payloads(readAll(second.node.store, 'default'))).toEqual(['0:survives', '1:next'])
  })
})
