// The one JSON shape of a stored record, shared by everything that shows or
// sends records as JSON: `tributary tail --json`, the HTTP sink, the admin API.
// Bytes are UTF-8 text when they are valid UTF-8, base64 otherwise, and the
// encoding is named beside each value. `id` names the record for good:
// `<origin>/<incarnation>/<stream>/<partition>/<offset>`, the same on every
// node that holds or forwards it, so a receiver can drop a resend whatever
// batch it came in.

import type { Header, Qos, StoredRecord } from './record.ts'

export type BytesEncoding = 'utf8' | 'base64'

export interface RecordJson {
  readonly id: string
  readonly origin: string
  readonly incarnation: number
  readonly stream: string
  readonly partition: number
  readonly offset: number
  readonly timestamp: string
  readonly timestampMs: number
  readonly deviceTimeMs: number | null
  readonly key: string | null
  readonly keyEncoding: BytesEncoding
  readonly topic: string
  readonly clientId: string
  readonly qos: Qos
  readonly headers: readonly Header[]
  readonly payload: string
  readonly payloadEncoding: BytesEncoding
}

export function bytesForHumans(
  bytes: Buffer | null,
  always: 'base64' | null = null,
): { value: string | null; encoding: BytesEncoding } {
  if (bytes === null) return { value: null, encoding: 'utf8' }
  if (always === 'base64') return { value: bytes.toString('base64'), encoding: 'base64' }
  const text = bytes.toString('utf8')
  return Buffer.from(text, 'utf8').equals(bytes)
    ? { value: text, encoding: 'utf8' }
    : { value: bytes.toString('base64'), encoding: 'base64' }
}

export function recordJson(
  where: { readonly stream: string; readonly partition: number; readonly origin: string },
  record: StoredRecord,
  /** `base64`: key and payload always in base64 (the admin API's `encoding=base64`). */
  always: 'base64' | null = null,
): RecordJson {
  const key = bytesForHumans(record.key, always)
  const payload = bytesForHumans(record.payload, always)
  return {
    id: recordId(where, record),
    origin: where.origin,
    incarnation: record.incarnation,
    stream: where.stream,
    partition: where.partition,
    offset: record.offset,
    timestamp: new Date(record.timestampMs).toISOString(),
    timestampMs: record.timestampMs,
    deviceTimeMs: record.deviceTimeMs,
    key: key.value,
    keyEncoding: key.encoding,
    topic: record.topic,
    clientId: record.clientId,
    qos: record.qos,
    headers: record.headers,
    payload: payload.value ?? '',
    payloadEncoding: payload.encoding,
  }
}

/** A record's lasting name: `<origin>/<incarnation>/<stream>/<partition>/<offset>`. */
export function recordId(
  where: { readonly stream: string; readonly partition: number; readonly origin: string },
  record: Pick<StoredRecord, 'incarnation' | 'offset'>,
): string {
  return `${where.origin}/${record.incarnation}/${where.stream}/${where.partition}/${record.offset}`
}
