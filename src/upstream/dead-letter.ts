// Records a sink can never accept go to their stream's dead-letter stream,
// with why: the record itself (key, topic, payload, headers) plus headers that
// name the sink, the reason, the sink's answer and where the record came from.
// The forwarder moves on only once the dead letter is durable.

import type { LogStore } from '../log/log-store.ts'
import type { Header, StoredRecord } from '../log/record.ts'

export const DEAD_LETTER_HEADER = {
  sink: 'tributary-dead-letter-sink',
  reason: 'tributary-dead-letter-reason',
  atMs: 'tributary-dead-letter-at',
  origin: 'tributary-origin',
  stream: 'tributary-stream',
  partition: 'tributary-partition',
  offset: 'tributary-offset',
} as const

export interface DeadLetter {
  readonly sink: string
  readonly origin: string
  readonly stream: string
  readonly partition: number
  readonly reason: string
}

export async function writeDeadLetter(
  store: LogStore,
  deadLetterStream: string,
  letter: DeadLetter,
  record: StoredRecord,
): Promise<void> {
  const headers: Header[] = [
    ...record.headers,
    [DEAD_LETTER_HEADER.sink, letter.sink],
    [DEAD_LETTER_HEADER.reason, letter.reason],
    [DEAD_LETTER_HEADER.atMs, String(Date.now())],
    [DEAD_LETTER_HEADER.origin, letter.origin],
    [DEAD_LETTER_HEADER.stream, letter.stream],
    [DEAD_LETTER_HEADER.partition, String(letter.partition)],
    [DEAD_LETTER_HEADER.offset, String(record.offset)],
  ]
  await store.append({
    entries: [
      {
        stream: deadLetterStream,
        partition: 0,
        record: {
          key: record.key,
          topic: record.topic,
          payload: record.payload,
          headers,
          clientId: record.clientId,
          qos: record.qos,
          deviceTimeMs: record.deviceTimeMs,
        },
      },
    ],
    durability: 'durable',
  })
}
