// The Kafka sink against a real Apache Kafka 4.x broker (test/helpers/kafka.ts),
// checked with kcat (librdkafka, read_committed): records, keys, headers,
// partitions and order; an outage of the cluster during publishing in both
// delivery modes; a record Kafka will never take; a broker that accepts
// connections but never answers.

import { Admin } from '@platformatic/kafka'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { partitionForKey } from '../../src/ingest/partitioner.ts'
import { DEAD_LETTER_HEADER } from '../../src/upstream/dead-letter.ts'
import { FORWARD_HEADER } from '../../src/upstream/sink.ts'
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
  it("forwards records with key, headers and origin to the key's partition, in order", async () => {
    const { stream, config } = sinkConfig({ compression: 'lz4' })
    const { url, node } = await cleanup.node({ config })
    await publish(url, stream, 70)
    const records = await pollKcat(stream, 70)

    expect(records).toHaveLength(70)
    for (const r of records) {
      expect(r.partition).toBe(partitionForKey(Buffer.from(r.key ?? ''), 3))
      expect(header(r, FORWARD_HEADER.origin)).toBe(node.nodeId)
      expect(header(r, FORWARD_HEADER.stream)).toBe(stream)
      expect(header(r, FORWARD_HEADER.topic)).toBe(`${stream}/${r.key}/t`)
      expect(header(r, 'unit')).toBe('C')
    }
    for (const device of ['dev0', 'dev3', 'dev6']) {
      const values = records.filter((r) => r.key === device).map((r) => Number(r.payload?.slice(1)))
      expect(values).toEqual([...values].sort((a, b) => a - b))
      expect(values).toHaveLength(10)
    }
  })

  for (const exactlyOnce of [false, true]) {
    it(`delivers every record published while the cluster was down (${exactlyOnce ? 'exactly once' : 'idempotent, at least once'})`, async () => {
      const { stream, config } = sinkConfig({ exactlyOnce })
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
      if (exactlyOnce) {
        await new Promise((resolve) => setTimeout(resolve, 1000))
        const again = await kcatRead(kafka.bootstrap, stream)
        expect(again).toHaveLength(90)
      }
    })
  }

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

  it('sends a record Kafka refuses as too large to the dead-letter stream and goes on', async () => {
    const { stream, config } = sinkConfig()
    const admin = new Admin({ clientId: 'test-admin', bootstrapBrokers: [kafka.bootstrap] })
    try {
      await admin.createTopics({
        topics: [stream],
        partitions: 3,
        replicas: 1,
        configs: [{ name: 'max.message.bytes', value: '4000' }],
      })
    } finally {
      await admin.close()
    }
    const { url, node } = await cleanup.node({ config })
    await publish(url, stream, 20, 0, (i) => (i === 7 ? 'x'.repeat(20_000) : `v${i}`))
    await pollKcat(stream, 19)
    await waitFor(() => readAll(node.store, `${stream}.dead-letter`).length === 1, 'a dead letter')
    const [letter] = readAll(node.store, `${stream}.dead-letter`)
    expect(letter?.payload.length).toBe(20_000)
    const reason = new Map(letter?.headers).get(DEAD_LETTER_HEADER.reason)
    expect(reason).toMatch(/MESSAGE_TOO_LARGE|RECORD_LIST_TOO_LARGE/)
    // Halving 20 records down to the poison one takes a few refused batches, not twenty.
    const splits = node.upstream?.status().reduce((n, s) => n + s.splitBatches, 0) ?? 0
    expect(splits).toBeGreaterThan(0)
    expect(splits).toBeLessThan(10)
    const again = await kcatRead(kafka.bootstrap, stream)
    expect(again.map((r) => r.payload)).not.toContain('x'.repeat(20_000))
  })

  it('restarts a connection to a broker that accepts but never answers (watchdog)', async () => {
    const { stream, config } = sinkConfig({ stuckAfterMs: 1500, requestTimeoutMs: 60_000 })
    const { url, node } = await cleanup.node({ config })
    await publish(url, stream, 5)
    await pollKcat(stream, 5)
    kafka.pause()
    try {
      await publish(url, stream, 10, 5)
      await waitFor(
        () => (node.upstream?.status() ?? []).some((s) => s.stuckRestarts > 0),
        'the watchdog firing',
        { timeoutMs: 20_000 },
      )
    } finally {
      kafka.resume()
    }
    const records = await pollKcat(stream, 15)
    expect(new Set(records.map((r) => r.payload)).size).toBe(15)
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

function header(record: KcatRecord, name: string): string | undefined {
  return record.headers.find(([n]) => n === name)?.[1]
}
