// The Kafka sink against a real Apache Kafka 4.x broker (test/helpers/kafka.ts),
// checked with kcat (librdkafka, read_committed), in what only Kafka has: an
// outage of the cluster in exactly-once mode, and a backlog larger than one
// produce request. Records, keys, headers and order, an at-least-once outage,
// a record Kafka will never take and a broker that accepts connections but
// never answers are the Sink conformance suite's (sink-conformance-kafka.test.ts).

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Cleanup, readAll, waitFor } from '../helpers/integration.ts'
import { type KafkaBroker, startKafka } from '../helpers/kafka.ts'
import { type KcatRecord, kcatRead } from '../helpers/kafka-read.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

let kafka: KafkaBroker
beforeAll(async () => {
  kafka = await startKafka()
}, 120_000)
afterAll(() => kafka?.stop())

let topicSeq = 0
function sinkConfig(sink: Record<string, unknown> = {}) {
  const stream = `sensors-${++topicSeq}`
  return {
    stream,
    config: {
      streams: [
        { name: stream, match: [`${stream}/#`], partitions: 3, key: { from: 'topic-level', level: 1 } },
      ],
      sinks: [
        {
          name: 'central',
          type: 'kafka',
          brokers: [kafka.bootstrap],
          lingerMs: 20,
          retry: { initialMs: 100, maxMs: 500 },
          requestTimeoutMs: 5000,
          ...sink,
        },
      ],
    },
  }
}

async function publish(
  url: string,
  stream: string,
  count: number,
  from = 0,
  payload = (i: number) => `v${i}`,
) {
  const client = await cleanup.mqtt(url, { protocolVersion: 5 })
  for (let i = from; i < from + count; i++) {
    await client.publishAsync(`${stream}/dev${i % 7}/t`, payload(i), {
      qos: 1,
      properties: { userProperties: { unit: 'C' } },
    })
  }
}

describe('Kafka sink', () => {
  it('delivers every record published while the cluster was down (exactly once)', async () => {
    const { stream, config } = sinkConfig({ exactlyOnce: true })
    const { url, node } = await cleanup.node({ config })
    await publish(url, stream, 30)
    await pollKcat(stream, 30)
    await kafka.halt()
    try {
      await publish(url, stream, 60, 30)
      await waitFor(
        () => (node.upstream?.status() ?? []).some((s) => s.state === 'retrying'),
        'a retrying forwarder',
      )
      expect(node.upstream?.status().reduce((n, s) => n + s.lagRecords, 0)).toBe(60)
    } finally {
      await kafka.restart()
    }
    const records = await pollKcat(stream, 90)
    const payloads = records.map((r) => r.payload)
    expect(new Set(payloads).size).toBe(90)
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const again = await kcatRead(kafka.bootstrap, stream)
    expect(again).toHaveLength(90)
  })

  it('splits a backlog larger than Kafka takes in one request, dead-lettering nothing', async () => {
    const { stream, config } = sinkConfig({ maxBatchBytes: 4 * 1024 * 1024, maxBatchRecords: 20_000 })
    const { url, node } = await cleanup.node({ config })
    await kafka.halt()
    try {
      await publish(url, stream, 1500, 0, (i) => `${i}:${'x'.repeat(2000)}`)
    } finally {
      await kafka.restart()
    }
    const records = await pollKcat(stream, 1500)
    expect(new Set(records.map((r) => r.payload)).size).toBe(1500)
    expect(readAll(node.store, `${stream}.dead-letter`)).toHaveLength(0)
    expect(node.upstream?.status().reduce((n, s) => n + s.splitBatches, 0)).toBe(0)
  })
})

/**
 * Waits until `topic` holds `count` distinct payloads (every test publishes
 * unique ones): at-least-once modes may deliver some twice, and a count of
 * records alone could be reached before the last ones arrive.
 */
async function pollKcat(topic: string, count: number, timeoutMs = 60_000): Promise<KcatRecord[]> {
  const deadline = Date.now() + timeoutMs
  let records: KcatRecord[] = []
  let distinct = 0
  while (Date.now() < deadline) {
    records = await kcatRead(kafka.bootstrap, topic).catch(() => [])
    distinct = new Set(records.map((r) => r.payload)).size
    if (distinct >= count) return records
    await new Promise((resolve) => setTimeout(resolve, 300))
  }
  throw new Error(`timed out: ${distinct} of ${count} distinct payloads in ${topic}`)
}
