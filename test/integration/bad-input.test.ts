// Bad input from one client costs that client its message (or its
// connection) and nothing else: the node keeps serving a second,
// well-behaved client, and every publish it acknowledged is in the log.

import type { IPubackPacket, Packet } from 'mqtt-packet'
import { afterEach, describe, expect, test } from 'vitest'
import { Cleanup, readAll } from '../helpers/integration.ts'
import type { RunningNode } from '../helpers/node.ts'
import { RawMqtt } from '../helpers/raw-mqtt.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

const MAX_PAYLOAD_BYTES = 1024
const limits = { limits: { maxPayloadBytes: MAX_PAYLOAD_BYTES } }

/** Payloads of every record in the default stream. */
function stored(running: RunningNode): string[] {
  return readAll(running.node.store, 'default').map((r) => r.payload.toString())
}

/**
 * A well-behaved client that published (and got a PUBACK for) `before` ahead of
 * the bad input; call check() afterwards: it publishes again on the same
 * connection and from a brand-new one, and asserts every acked payload is stored.
 */
async function wellBehaved(running: RunningNode, tag: string): Promise<{ check(): Promise<void> }> {
  const acked: string[] = []
  const first = await cleanup.mqtt(running.url, { clientId: `good-${tag}`, protocolVersion: 4 })
  await first.publishAsync('ok/data', `${tag}-before`, { qos: 1 })
  acked.push(`${tag}-before`)
  return {
    async check() {
      await first.publishAsync('ok/data', `${tag}-after`, { qos: 1 })
      acked.push(`${tag}-after`)
      const second = await cleanup.mqtt(running.url, { clientId: `good2-${tag}`, protocolVersion: 4 })
      await second.publishAsync('ok/data', `${tag}-new-client`, { qos: 2 })
      acked.push(`${tag}-new-client`)
      const records = stored(running)
      for (const payload of acked) expect(records).toContain(payload)
    },
  }
}

async function raw(port: number, clientId: string, protocolVersion: 4 | 5 = 4): Promise<RawMqtt> {
  const { conn, connack } = await RawMqtt.connect(port, { clientId, protocolVersion })
  cleanup.defer(`destroy raw connection ${clientId}`, () => conn.destroy())
  expect(protocolVersion === 5 ? connack.reasonCode : connack.returnCode).toBe(0)
  return conn
}

async function rawOpen(port: number): Promise<RawMqtt> {
  const conn = await RawMqtt.open(port)
  cleanup.defer('destroy raw socket', () => conn.destroy())
  return conn
}

function cmds(packets: readonly Packet[]): string[] {
  return packets.map((p) => p.cmd)
}

describe('payload over limits.maxPayloadBytes', () => {
  test('MQTT 5: PUBACK/PUBREC with a failure reason code and TRIB_PAYLOAD_TOO_LARGE; nothing stored; the client stays connected', async () => {
    const running = await cleanup.node({ config: limits })
    const good = await wellBehaved(running, 'v5-large')
    const client = await cleanup.mqtt(running.url, { clientId: 'v5-big', protocolVersion: 5 })
    const acks: IPubackPacket[] = []
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'puback' || packet.cmd === 'pubrec') acks.push(packet as IPubackPacket)
    })
    const big = Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x61)

    await expect(client.publishAsync('big/data', big, { qos: 1 })).rejects.toThrow()
    await expect(client.publishAsync('big/data', big, { qos: 2 })).rejects.toThrow()
    expect(acks.map((a) => a.cmd)).toEqual(['puback', 'pubrec'])
    // README "Errors": reason code 0x87 and a reason string that starts with the code.
    for (const ack of acks) {
      expect(ack.reasonCode).toBe(0x87)
      expect(ack.properties?.reasonString).toMatch(/^TRIB_PAYLOAD_TOO_LARGE: /)
    }

    // Exactly at the limit is fine, on the same connection.
    const atLimit = Buffer.alloc(MAX_PAYLOAD_BYTES, 0x62)
    await client.publishAsync('big/data', atLimit, { qos: 1 })
    expect(client.connected).toBe(true)
    const records = readAll(running.node.store, 'default')
    expect(records.filter((r) => r.topic === 'big/data').map((r) => r.payload.equals(atLimit))).toEqual([
      true,
    ])
    expect(records.every((r) => r.payload.length <= MAX_PAYLOAD_BYTES)).toBe(true)
    expect(running.node.ingest.stats.rejected).toBe(2)
    await good.check()
  })

  test('MQTT 3.1.1: the client is disconnected without a PUBACK; nothing stored', async () => {
    const running = await cleanup.node({ config: limits })
    const good = await wellBehaved(running, 'v311-large')
    const conn = await raw(running.port, 'v311-big')
    conn.send({
      cmd: 'publish',
      qos: 1,
      messageId: 1,
      dup: false,
      retain: false,
      topic: 'big/data',
      payload: Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x61),
    })
    await conn.waitClosed()
    expect(cmds(conn.unread)).toEqual([])
    expect(readAll(running.node.store, 'default').some((r) => r.topic === 'big/data')).toBe(false)
    await good.check()
  })
})

describe('malformed bytes', () => {
  test('garbage instead of CONNECT: the connection is closed', async () => {
    const running = await cleanup.node()
    const good = await wellBehaved(running, 'garbage')
    const http = await rawOpen(running.port)
    http.write(Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'))
    await http.waitClosed()
    const zeros = await rawOpen(running.port)
    zeros.write(Buffer.from([0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x7f]))
    await zeros.waitClosed()
    expect([...cmds(http.unread), ...cmds(zeros.unread)]).toEqual([])
    await good.check()
  })

  test('a malformed packet after a good CONNECT (PUBLISH with QoS 3): the connection is closed, nothing stored', async () => {
    const running = await cleanup.node()
    const good = await wellBehaved(running, 'malformed')
    const conn = await raw(running.port, 'malformed')
    // PUBLISH, both QoS bits set [MQTT-3.3.1-4]; topic "x/y", packet id 1, payload "boom".
    conn.write(Buffer.from([0x36, 0x0b, 0x00, 0x03, 0x78, 0x2f, 0x79, 0x00, 0x01, 0x62, 0x6f, 0x6f, 0x6d]))
    await conn.waitClosed()
    expect(cmds(conn.unread)).toEqual([])
    expect(stored(running)).not.toContain('boom')
    await good.check()
  })

  test('a zero-length client id with clean session 0 (MQTT 3.1.1): CONNACK return code 2, then closed', async () => {
    const running = await cleanup.node()
    const good = await wellBehaved(running, 'empty-id')
    const conn = await rawOpen(running.port)
    // mqtt-packet refuses to encode this CONNECT, so it is written by hand:
    // "MQTT", level 4, flags 0 (clean session 0), keep alive 60, client id "".
    conn.write(
      Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x00, 0x00, 0x3c, 0x00, 0x00]),
    )
    const connack = await conn.next('connack')
    expect(connack.returnCode).toBe(2)
    await conn.waitClosed()
    await good.check()
  })
})

describe('invalid topics in PUBLISH', () => {
  test('a wildcard in a PUBLISH topic closes the connection; nothing stored', async () => {
    const running = await cleanup.node()
    const good = await wellBehaved(running, 'wildcard')
    for (const [i, topic] of ['sensors/+/temp', 'sensors/#'].entries()) {
      const conn = await raw(running.port, `wild-${i}`)
      conn.send({ cmd: 'publish', qos: 1, messageId: 1, dup: false, retain: false, topic, payload: 'wild' })
      await conn.waitClosed()
      expect(cmds(conn.unread)).toEqual([])
    }
    expect(stored(running)).not.toContain('wild')
    await good.check()
  })

  test('a topic starting with $ from an MQTT 3.1.1 client: disconnected, nothing stored', async () => {
    const running = await cleanup.node()
    const good = await wellBehaved(running, 'dollar-311')
    const conn = await raw(running.port, 'dollar-311')
    conn.send({
      cmd: 'publish',
      qos: 1,
      messageId: 1,
      dup: false,
      retain: false,
      topic: '$SYS/x',
      payload: 'd1',
    })
    await conn.waitClosed()
    expect(cmds(conn.unread)).toEqual([])
    expect(stored(running)).not.toContain('d1')
    expect(running.node.store.partitions().map((p) => p.stream)).toEqual(['default'])
    await good.check()
  })

  test('a topic starting with $ from an MQTT 5 client: PUBACK 0x87 with TRIB_TOPIC_INVALID, nothing stored, still connected', async () => {
    const running = await cleanup.node()
    const good = await wellBehaved(running, 'dollar-5')
    const conn = await raw(running.port, 'dollar-5', 5)
    conn.send({
      cmd: 'publish',
      qos: 1,
      messageId: 2,
      dup: false,
      retain: false,
      topic: '$data/x',
      payload: 'd2',
    })
    const puback = await conn.next('puback')
    expect(puback.messageId).toBe(2)
    expect(puback.reasonCode).toBe(0x87)
    expect(stored(running)).not.toContain('d2')
    // Still connected: a good publish on the same connection is acked and stored.
    conn.send({
      cmd: 'publish',
      qos: 1,
      messageId: 3,
      dup: false,
      retain: false,
      topic: 'data/x',
      payload: 'd3',
    })
    const next = await conn.next('puback')
    expect([next.messageId, next.reasonCode ?? 0]).toEqual([3, 0])
    expect(stored(running)).toContain('d3')
    await good.check()
    // README "Errors": the reason string starts with the error code.
    expect(puback.properties?.reasonString).toMatch(/^TRIB_TOPIC_INVALID: /)
  })
})
