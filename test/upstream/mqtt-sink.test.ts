// The MQTT sink against a real Mosquitto as the central broker: topics by
// template, payloads, forward headers as MQTT 5 user properties, order per
// partition, and an outage of the central broker while publishing goes on.

import { afterEach, describe, expect, it } from 'vitest'
import { FORWARD_HEADER } from '../../src/upstream/sink.ts'
import { Cleanup, Inbox, waitFor } from '../helpers/integration.ts'
import { Mosquitto } from '../helpers/mosquitto.ts'
import { makeTestCerts } from '../helpers/test-certs.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

async function central(): Promise<Mosquitto> {
  const broker = await Mosquitto.create()
  await broker.start()
  cleanup.defer('remove mosquitto', () => broker.remove())
  return broker
}

/** A subscriber on the central broker with a persistent session, so it misses nothing while reconnecting. */
async function subscriber(broker: Mosquitto): Promise<Inbox> {
  const client = await cleanup.mqtt(broker.url, {
    protocolVersion: 5,
    clientId: 'central-reader',
    clean: false,
    properties: { sessionExpiryInterval: 600 },
    reconnectPeriod: 100,
  })
  const inbox = new Inbox(client)
  await client.subscribeAsync('hq/#', { qos: 1 })
  return inbox
}

function config(url: string): Record<string, unknown> {
  return {
    streams: [
      { name: 'sensors', match: ['sensors/#'], partitions: 2, key: { from: 'topic-level', level: 1 } },
    ],
    sinks: [
      {
        name: 'central',
        type: 'mqtt',
        url,
        topic: 'hq/{origin}/{topic}',
        lingerMs: 20,
        retry: { initialMs: 50, maxMs: 300 },
      },
    ],
  }
}

function property(message: { packet: { properties?: { userProperties?: object } } }, name: string): unknown {
  return (message.packet.properties?.userProperties as Record<string, unknown> | undefined)?.[name]
}

describe('MQTT sink', () => {
  it('connects with TLS and a client certificate (mqtts://)', async () => {
    const certs = makeTestCerts(await cleanup.dir('tributary-certs-'))
    const broker = await Mosquitto.create(certs)
    await broker.start()
    cleanup.defer('remove mosquitto', () => broker.remove())
    const inbox = await subscriber(broker)
    const tlsConfig = config(`mqtts://127.0.0.1:${broker.tlsPort}`)
    const sink = (tlsConfig.sinks as Array<Record<string, unknown>>)[0]
    if (sink !== undefined) sink.tls = { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey }
    const { url } = await cleanup.node({ config: tlsConfig })
    const client = await cleanup.mqtt(url, { protocolVersion: 5 })
    for (let i = 0; i < 3; i++) await client.publishAsync(`sensors/dev${i}/t`, `tls${i}`, { qos: 1 })
    const messages = await inbox.take(3)
    expect(messages.map((m) => m.payload.toString()).sort()).toEqual(['tls0', 'tls1', 'tls2'])
  })

  it('republishes every record to the central broker with its origin as user properties', async () => {
    const broker = await central()
    const inbox = await subscriber(broker)
    const { url, node } = await cleanup.node({ config: config(broker.url) })
    const client = await cleanup.mqtt(url, { protocolVersion: 5 })
    for (let i = 0; i < 30; i++) {
      await client.publishAsync(`sensors/dev${i % 3}/t`, `v${i}`, {
        qos: 1,
        properties: { userProperties: { unit: 'C' } },
      })
    }
    const messages = await inbox.take(30)
    const m0 = messages.find((m) => m.payload.toString() === 'v0')
    expect(m0?.topic).toBe(`hq/${node.nodeId}/sensors/dev0/t`)
    expect(property(m0 ?? { packet: {} }, FORWARD_HEADER.origin)).toBe(node.nodeId)
    expect(property(m0 ?? { packet: {} }, FORWARD_HEADER.stream)).toBe('sensors')
    expect(property(m0 ?? { packet: {} }, 'unit')).toBe('C')
    for (const device of ['dev0', 'dev1', 'dev2']) {
      const values = messages
        .filter((m) => m.topic.includes(`/${device}/`))
        .map((m) => Number(m.payload.toString().slice(1)))
      expect(values).toEqual([...values].sort((a, b) => a - b))
    }
  })

  it('delivers what was published while the central broker was down', async () => {
    const broker = await central()
    const inbox = await subscriber(broker)
    const { url, node } = await cleanup.node({ config: config(broker.url) })
    const client = await cleanup.mqtt(url, { protocolVersion: 5 })
    await client.publishAsync('sensors/dev0/t', 'before', { qos: 1 })
    await inbox.take(1)
    await broker.stop()
    for (let i = 0; i < 20; i++) await client.publishAsync(`sensors/dev${i % 4}/t`, `during${i}`, { qos: 1 })
    await waitFor(
      () => (node.upstream?.status() ?? []).some((s) => s.state === 'retrying'),
      'a retrying forwarder',
    )
    await broker.start()
    await inbox.until(
      (messages) => new Set(messages.map((m) => m.payload.toString())).size >= 21,
      'all 21 distinct records',
      30_000,
    )
    const distinct = new Set(inbox.messages.map((m) => m.payload.toString()))
    for (let i = 0; i < 20; i++) expect(distinct.has(`during${i}`)).toBe(true)
  })
})
