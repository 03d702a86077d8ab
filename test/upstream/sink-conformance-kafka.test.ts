// The Sink conformance suite (sink-conformance.ts) against the Kafka sink
// (at least once, lz4) and a real Apache Kafka 4.x broker of this file's own
// (test/helpers/kafka.ts), which the outage and watchdog cases stop and
// freeze; kcat (librdkafka, read_committed) reads back what arrived. A topic
// created with a small max.message.bytes refuses the poison record
// (MESSAGE_TOO_LARGE).

import { Admin } from '@platformatic/kafka'
import { afterAll, beforeAll } from 'vitest'
import { FORWARD_HEADER } from '../../src/upstream/sink.ts'
import { type KafkaBroker, startKafka } from '../helpers/kafka.ts'
import { type KcatRecord, kcatRead } from '../helpers/kafka-read.ts'
import { type Arrival, sinkConformance } from './sink-conformance.ts'

let kafka: KafkaBroker
beforeAll(async () => {
  kafka = await startKafka()
}, 120_000)
afterAll(() => kafka?.stop())

const FORWARDED = new Set<string>(Object.values(FORWARD_HEADER))

function arrival(record: KcatRecord): Arrival {
  const forward = new Map(record.headers.filter(([name]) => FORWARDED.has(name)))
  return {
    destination: record.topic,
    upstreamPartition: record.partition,
    origin: forward.get(FORWARD_HEADER.origin),
    stream: forward.get(FORWARD_HEADER.stream),
    partition: Number(forward.get(FORWARD_HEADER.partition)),
    offset: Number(forward.get(FORWARD_HEADER.offset)),
    topic: forward.get(FORWARD_HEADER.topic),
    key: record.key,
    payload: record.payload ?? '',
    headers: record.headers.filter(([name]) => !FORWARDED.has(name)),
  }
}

sinkConformance({
  kind: 'kafka',
  keys: true,
  poisonReason: /MESSAGE_TOO_LARGE|RECORD_LIST_TOO_LARGE/,
  silentPeer: { requestTimeoutMs: 60_000 },
  destination: ({ stream }) => stream,
  async peer(_cleanup, { stream, partitions, maxRecordBytes }) {
    if (maxRecordBytes !== undefined) {
      const admin = new Admin({ clientId: 'test-admin', bootstrapBrokers: [kafka.bootstrap] })
      try {
        await admin.createTopics({
          topics: [stream],
          partitions,
          replicas: 1,
          configs: [{ name: 'max.message.bytes', value: String(maxRecordBytes) }],
        })
      } finally {
        await admin.close()
      }
    }
    return {
      sink: { type: 'kafka', brokers: [kafka.bootstrap], compression: 'lz4', requestTimeoutMs: 5000 },
      // The topic appears with the first send: until then there is nothing to read.
      arrivals: async () => (await kcatRead(kafka.bootstrap, stream).catch(() => [])).map(arrival),
      stop: () => kafka.halt(),
      start: () => kafka.restart(),
      pause: () => kafka.pause(),
      resume: () => kafka.resume(),
    }
  },
})
