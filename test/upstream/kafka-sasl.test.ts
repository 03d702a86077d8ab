// The Kafka sink logging in with SASL (PLAIN and SCRAM-SHA-256) to a broker
// listener that requires it; a wrong password is reported and retried, and
// nothing is lost once it is fixed.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Cleanup, waitFor } from '../helpers/integration.ts'
import { type KafkaBroker, startKafka } from '../helpers/kafka.ts'
import { kcatRead } from '../helpers/kafka-read.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

let kafka: KafkaBroker
beforeAll(async () => {
  kafka = await startKafka({ sasl: { alice: 'alice-secret' } })
}, 120_000)
afterAll(() => kafka?.stop())

function config(stream: string, sasl: Record<string, unknown>) {
  return {
    streams: [{ name: stream, match: [`${stream}/#`] }],
    sinks: [
      {
        name: 'central',
        type: 'kafka',
        brokers: [kafka.saslBootstrap],
        sasl,
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

describe('Kafka sink with SASL', () => {
  for (const mechanism of ['PLAIN', 'SCRAM-SHA-256'] as const) {
    it(`logs in with ${mechanism} (password from a file) and forwards`, async () => {
      const stream = `sasl-${mechanism.toLowerCase()}`
      const passwordFile = join(await cleanup.dir(), 'password')
      writeFileSync(passwordFile, 'alice-secret\n')
      const { url } = await cleanup.node({
        config: config(stream, { mechanism, username: 'alice', passwordFile }),
      })
      await publish(url, stream, 5)
      await kafkaHas(stream, 5)
    })
  }

  it('reports a wrong password, keeps the records, and forwards them once it is fixed', async () => {
    const stream = 'sasl-wrong'
    const wrong = await cleanup.node({
      config: config(stream, { mechanism: 'PLAIN', username: 'alice', password: 'not-it' }),
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
      config: config(stream, { mechanism: 'PLAIN', username: 'alice', password: 'alice-secret' }),
    })
    expect(fixed.node.nodeId).toBe(wrong.node.nodeId)
    await kafkaHas(stream, 3)
  })
})
