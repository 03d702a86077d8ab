// The Kafka sink on secured listeners: TLS with a client certificate, and
// SASL (PLAIN and SCRAM-SHA-256) logins; a wrong password is reported and
// retried, and nothing is lost once it is fixed.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Cleanup, waitFor } from '../helpers/integration.ts'
import { type KafkaBroker, startKafka } from '../helpers/kafka.ts'
import { kcatRead } from '../helpers/kafka-read.ts'
import { tempDir } from '../helpers/temp-dir.ts'
import { makeTestCerts, type TestCerts } from '../helpers/test-certs.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

let kafka: KafkaBroker
let certs: TestCerts
beforeAll(async () => {
  const dir = await tempDir('tributary-kafka-certs-')
  afterAll(() => dir.remove())
  certs = makeTestCerts(dir.path)
  kafka = await startKafka({ sasl: { alice: 'alice-secret' }, tls: certs })
}, 120_000)
afterAll(() => kafka?.stop())

function config(stream: string, security: Record<string, unknown>) {
  return {
    streams: [{ name: stream, match: [`${stream}/#`] }],
    sinks: [
      {
        name: 'central',
        type: 'kafka',
        brokers: [security.tls === undefined ? kafka.saslBootstrap : kafka.tlsBootstrap],
        ...security,
        lingerMs: 0,
        retry: { initialMs: 100, maxMs: 300 },
        requestTimeoutMs: 5000,
      },
    ],
  }
}

async function publish(url: string, stream: string, count: number): Promise<void> {
  const client = await cleanup.mqtt(url)
  for (let i = 0; i < count; i++) await client.publishAsync(`${stream}/d1`, `v${i}`, { qos: 1 })
}

/** Waits until `topic` holds `count` records as kcat sees them (read_committed). */
async function kafkaHas(topic: string, count: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let seen = 0
  while (Date.now() < deadline) {
    seen = (await kcatRead(kafka.bootstrap, topic).catch(() => [])).length
    if (seen >= count) return
    await new Promise((resolve) => setTimeout(resolve, 300))
  }
  throw new Error(`timed out: ${seen} of ${count} records in ${topic}`)
}

describe('Kafka sink on secured listeners', () => {
  it('connects with TLS and a client certificate', async () => {
    const stream = 'tls-client-cert'
    const { url } = await cleanup.node({
      config: config(stream, { tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } }),
    })
    await publish(url, stream, 4)
    await kafkaHas(stream, 4)
  })

  for (const mechanism of ['PLAIN', 'SCRAM-SHA-256'] as const) {
    it(`logs in with ${mechanism} (password from a file) and forwards`, async () => {
      const stream = `sasl-${mechanism.toLowerCase()}`
      const passwordFile = join(await cleanup.dir(), 'password')
      writeFileSync(passwordFile, 'alice-secret\n')
      const { url } = await cleanup.node({
        config: config(stream, { sasl: { mechanism, username: 'alice', passwordFile } }),
      })
      await publish(url, stream, 5)
      await kafkaHas(stream, 5)
    })
  }

  it('reports a wrong password, keeps the records, and forwards them once it is fixed', async () => {
    const stream = 'sasl-wrong'
    const wrong = await cleanup.node({
      config: config(stream, { sasl: { mechanism: 'PLAIN', username: 'alice', password: 'not-it' } }),
    })
    await publish(wrong.url, stream, 3)
    await waitFor(
      () => (wrong.node.upstream?.status() ?? []).some((s) => s.state === 'retrying' && s.lastError !== null),
      'a failing forwarder',
    )
    const error = wrong.node.upstream?.status().find((s) => s.lastError !== null)?.lastError
    expect(error?.code).toBe('TRIB_SINK_UNAVAILABLE')
    expect(error?.message).toMatch(/SASL|auth/i)
    await wrong.stop()

    const fixed = await cleanup.node({
      dataDir: wrong.dataDir,
      config: config(stream, { sasl: { mechanism: 'PLAIN', username: 'alice', password: 'alice-secret' } }),
    })
    expect(fixed.node.nodeId).toBe(wrong.node.nodeId)
    await kafkaHas(stream, 3)
  })
})
