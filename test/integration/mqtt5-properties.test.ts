// MQTT 5 publish properties kept on the record: user properties become
// headers in arrival order (repeated names kept) [MQTT-3.3.2-18], and the
// `device-time` user property (ms since the epoch or ISO 8601) becomes
// deviceTimeMs.

import { afterEach, describe, expect, test } from 'vitest'
import { Cleanup, readAll } from '../helpers/integration.ts'
import { RawMqtt } from '../helpers/raw-mqtt.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

function mqttString(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8')
  const length = Buffer.alloc(2)
  length.writeUInt16BE(bytes.length)
  return Buffer.concat([length, bytes])
}

function varInt(n: number): Buffer {
  const out: number[] = []
  let rest = n
  do {
    let byte = rest % 128
    rest = Math.floor(rest / 128)
    if (rest > 0) byte |= 0x80
    out.push(byte)
  } while (rest > 0)
  return Buffer.from(out)
}

/**
 * An MQTT 5 QoS 1 PUBLISH with user properties in exactly this order, built by
 * hand: mqtt-packet (and so mqtt.js) takes user properties as an object, which
 * cannot express `a, b, a` or keep a name like "10" after "b".
 */
function publishWithUserProperties(
  topic: string,
  messageId: number,
  properties: ReadonlyArray<readonly [string, string]>,
  payload: Buffer,
): Buffer {
  const props = Buffer.concat(
    properties.map(([name, value]) =>
      Buffer.concat([Buffer.from([0x26]), mqttString(name), mqttString(value)]),
    ),
  )
  const id = Buffer.alloc(2)
  id.writeUInt16BE(messageId)
  const body = Buffer.concat([mqttString(topic), id, varInt(props.length), props, payload])
  return Buffer.concat([Buffer.from([0x32]), varInt(body.length), body])
}

describe('MQTT 5 user properties', () => {
  test('user properties from mqtt.js become headers, repeated names kept in order; device-time in ms', async () => {
    const { node, url } = await cleanup.node()
    const client = await cleanup.mqtt(url, { clientId: 'v5-dev', protocolVersion: 5 })
    await client.publishAsync('v5/readings', 'r1', {
      qos: 1,
      properties: {
        userProperties: { site: 'north', tag: ['a', 'b'], 'device-time': '1700000000123' },
      },
    })
    await client.publishAsync('v5/readings', 'r2', { qos: 1 })

    const [withProps, without] = readAll(node.store, 'default')
    expect(withProps?.payload.toString()).toBe('r1')
    expect(withProps?.headers).toEqual([
      ['site', 'north'],
      ['tag', 'a'],
      ['tag', 'b'],
      ['device-time', '1700000000123'],
    ])
    expect(withProps?.deviceTimeMs).toBe(1700000000123)
    expect(without?.headers).toEqual([])
    expect(without?.deviceTimeMs).toBeNull()
  })

  test('device-time as ISO 8601 is converted to ms; an unreadable one leaves deviceTimeMs null', async () => {
    const { node, url } = await cleanup.node()
    const client = await cleanup.mqtt(url, { clientId: 'v5-iso', protocolVersion: 5 })
    const iso = '2024-05-01T12:00:00.250Z'
    await client.publishAsync('v5/iso', 'iso', {
      qos: 1,
      properties: { userProperties: { 'device-time': iso } },
    })
    await client.publishAsync('v5/iso', 'offset', {
      qos: 1,
      properties: { userProperties: { 'device-time': '2024-05-01T14:00:00.250+02:00' } },
    })
    await client.publishAsync('v5/iso', 'garbage', {
      qos: 2,
      properties: { userProperties: { 'device-time': 'yesterday' } },
    })

    const records = readAll(node.store, 'default')
    expect(records.map((r) => [r.payload.toString(), r.deviceTimeMs])).toEqual([
      ['iso', Date.UTC(2024, 4, 1, 12, 0, 0, 250)],
      ['offset', Date.UTC(2024, 4, 1, 12, 0, 0, 250)],
      ['garbage', null],
    ])
    // The header is kept as sent even when it is not a time.
    expect(records[2]?.headers).toEqual([['device-time', 'yesterday']])
  })

  // aedes hands user properties over as mqtt-packet's object, which cannot keep
  // interleaved order [MQTT-3.3.2-18]; this pins the documented order (record.ts):
  // grouped by name in first-appearance order, integer-like names first.
  test('headers of interleaved repeated names come grouped, as documented', async () => {
    const { node, port } = await cleanup.node()
    const { conn, connack } = await RawMqtt.connect(port, { clientId: 'v5-raw', protocolVersion: 5 })
    cleanup.defer('destroy raw v5 connection', () => conn.destroy())
    expect(connack.reasonCode).toBe(0)
    const sent: Array<[string, string]> = [
      ['unit', 'C'],
      ['sensor', 'a'],
      ['unit', 'F'],
      ['10', 'ten'],
      ['sensor', 'b'],
    ]
    conn.write(publishWithUserProperties('v5/order', 21, sent, Buffer.from('ordered')))
    const puback = await conn.next('puback')
    expect(puback.messageId).toBe(21)
    expect(puback.reasonCode ?? 0).toBe(0)

    const [record] = readAll(node.store, 'default')
    expect(record?.payload.toString()).toBe('ordered')
    expect(record?.headers).toEqual([
      ['10', 'ten'],
      ['unit', 'C'],
      ['unit', 'F'],
      ['sensor', 'a'],
      ['sensor', 'b'],
    ])
  })
})
