// The MQTT sink against a real Mosquitto as the central broker, in what only
// it has: TLS with a client certificate. Topics by template, forward headers
// as MQTT 5 user properties, order, outages, a record over the broker's
// maximum packet size, a silent broker and restarts are the Sink conformance
// suite's (sink-conformance-mqtt.test.ts).

import { afterEach, describe, expect, it } from 'vitest'
import { Cleanup } from '../helpers/integration.ts'
import { centralReader, Mosquitto } from '../helpers/mosquitto.ts'
import { makeTestCerts } from '../helpers/test-certs.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

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

describe('MQTT sink', () => {
  it('connects with TLS and a client certificate (mqtts://)', async () => {
    const certs = makeTestCerts(await cleanup.dir('tributary-certs-'))
    const broker = await Mosquitto.create(certs)
    await broker.start()
    cleanup.defer('remove mosquitto', () => broker.remove())
    const inbox = await centralReader(cleanup, broker, 'hq/#')
    const tlsConfig = config(`mqtts://127.0.0.1:${broker.tlsPort}`)
    const sink = (tlsConfig.sinks as Array<Record<string, unknown>>)[0]
    if (sink !== undefined) sink.tls = { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey }
    const { url } = await cleanup.node({ config: tlsConfig })
    const client = await cleanup.mqtt(url, { protocolVersion: 5 })
    for (let i = 0; i < 3; i++) await client.publishAsync(`sensors/dev${i}/t`, `tls${i}`, { qos: 1 })
    const messages = await inbox.take(3)
    expect(messages.map((m) => m.payload.toString()).sort()).toEqual(['tls0', 'tls1', 'tls2'])
  })
})
