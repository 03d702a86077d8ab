// The Sink seam: what a forwarder needs from an upstream destination (Kafka,
// MQTT, HTTP). A sink delivers whole batches of one partition and says how a
// failure should be treated: retriable (TRIB_SINK_UNAVAILABLE, the default for
// anything unexpected) or never deliverable (TRIB_SINK_REJECTED, the records
// go to the dead-letter stream). Sinks connect lazily on the first send and
// reconnect on the next send after reset().

import { TributaryError } from '../errors.ts'
import type { PartitionRef } from '../log/log-store.ts'
import type { Header, StoredRecord } from '../log/record.ts'

/** `origin` is the node that accepted the records: the partition's origin. */
export interface SinkBatch extends PartitionRef {
  /** Consecutive records of the partition, oldest first (offsets may skip deleted or damaged ones). */
  readonly records: readonly StoredRecord[]
}

export interface Sink {
  readonly name: string
  /**
   * Resolves once the peer has acknowledged every record of the batch.
   * Rejects with TRIB_SINK_REJECTED when it never will, any other error when
   * a retry may succeed. `signal` aborts a send the watchdog gave up on.
   */
  send(batch: SinkBatch, signal: AbortSignal): Promise<void>
  /**
   * Exactly-once sinks keep their forward position at the peer, written
   * atomically with the records: the offset to go on from, or null when the
   * peer has none. At-least-once sinks leave this out.
   */
  committedPosition?(ref: PartitionRef): Promise<number | null>
  /** Tears down connections (the watchdog's restart); the next send connects again. */
  reset(): Promise<void>
  close(): Promise<void>
}

/** The headers every sink sends with a record, so upstream can trace it back. */
export const FORWARD_HEADER = {
  origin: 'tributary-origin',
  stream: 'tributary-stream',
  partition: 'tributary-partition',
  offset: 'tributary-offset',
  topic: 'tributary-mqtt-topic',
  deviceTime: 'tributary-device-time',
} as const

export function forwardHeaders(batch: SinkBatch, record: StoredRecord): Header[] {
  const headers: Header[] = [
    [FORWARD_HEADER.origin, batch.origin],
    [FORWARD_HEADER.stream, batch.stream],
    [FORWARD_HEADER.partition, String(batch.partition)],
    [FORWARD_HEADER.offset, String(record.offset)],
    [FORWARD_HEADER.topic, record.topic],
  ]
  if (record.deviceTimeMs !== null) headers.push([FORWARD_HEADER.deviceTime, String(record.deviceTimeMs)])
  return [...headers, ...record.headers]
}

/** The batch's position range, e.g. for an idempotency key: `origin/stream/partition/first-last`. */
export function batchRange(batch: SinkBatch): string {
  const first = batch.records[0]?.offset ?? 0
  const last = batch.records.at(-1)?.offset ?? first
  return `${batch.origin}/${batch.stream}/${batch.partition}/${first}-${last}`
}

/** Fills a topic or name template: `{stream}`, `{origin}`, `{partition}`, `{topic}`. */
export function fillTemplate(template: string, batch: SinkBatch, record?: StoredRecord): string {
  return template.replace(/\{(stream|origin|partition|topic)\}/g, (_, name: string) => {
    if (name === 'stream') return batch.stream
    if (name === 'origin') return batch.origin
    if (name === 'partition') return String(batch.partition)
    return record?.topic ?? ''
  })
}

export function rejected(detail: string, cause?: unknown): TributaryError {
  return new TributaryError('TRIB_SINK_REJECTED', detail, { cause })
}

export function unavailable(detail: string, cause?: unknown): TributaryError {
  return new TributaryError('TRIB_SINK_UNAVAILABLE', detail, { cause })
}
