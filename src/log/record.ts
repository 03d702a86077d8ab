// The record as it is stored, read and (later) forwarded: the unit a sensor's
// publish becomes once it is in a partition. Plain data, no behaviour.

export type Qos = 0 | 1 | 2

/**
 * An MQTT 5 user property; names may repeat. aedes hands user properties over
 * as an object (mqtt-packet's parse), so headers come grouped by name in the
 * order each name first appeared (integer-like names first, as JS objects
 * order keys); the values of one name keep their order.
 */
export type Header = readonly [name: string, value: string]

/** What ingest hands to the log; the log assigns offset and ingest time. */
export interface RecordInput {
  readonly key: Buffer | null
  readonly topic: string
  readonly payload: Buffer
  readonly headers: readonly Header[]
  readonly clientId: string
  readonly qos: Qos
  /** Device time in ms since the epoch, when the publisher gave one. */
  readonly deviceTimeMs: number | null
}

export interface StoredRecord extends RecordInput {
  readonly offset: number
  /**
   * The incarnation of its origin that wrote it (batch-codec.ts): with the
   * origin and the offset, the record's identity, which no other record shares.
   */
  readonly incarnation: number
  /** Ingest time on this node's clock, ms since the epoch; non-decreasing within a partition. */
  readonly timestampMs: number
}
