// Record batch codec: the bytes of one partition's records from one group
// commit, as stored on disk (and, later, sent to followers). Pure functions.
//
// Format version 2, all integers big-endian:
//   0  u8   format version (2)
//   1  u32  CRC32C (Castagnoli) of bytes [5, end)
//   5  u8   attributes (reserved, 0)
//   6  u64  base offset
//  14  u32  record count
//  18  u64  first timestamp (ms)
//  26  u64  max timestamp (ms)
//  34  u32  incarnation of the origin that wrote the batch (see below)
//  38  records, each:
//        u8  flags: bits 0-1 QoS, bit 2 key present, bit 3 device time present
//        u32 timestamp delta from the first timestamp (ms)
//        u64 device time (ms), only when flagged
//        u16 key length + key bytes, only when flagged
//        u16 topic length + UTF-8 topic
//        u16 client id length + UTF-8 client id
//        u16 header count, then per header u16 name length + name, u16 value length + value
//        u32 payload length + payload bytes
// Offsets are dense, so record i has offset base + i. A record's identity is
// (origin, incarnation, offset): a node starts a new incarnation at every
// start, so an offset given again after a lost tail never names the same
// record twice. Version 1 is the same without the incarnation (records at
// byte 34); it is read as incarnation 1, the one every node began with.

import { crc32c } from '@node-rs/crc32'
import { TributaryError } from '../errors.ts'
import type { Header, Qos, RecordInput, StoredRecord } from './record.ts'

export const BATCH_FORMAT_VERSION = 2
/** The incarnation of batches written before incarnations (format version 1). */
export const FIRST_INCARNATION = 1
export const BATCH_HEADER_BYTES = 38
const V1_HEADER_BYTES = 34

const FLAG_QOS_MASK = 0b11
const FLAG_KEY = 0b100
const FLAG_DEVICE_TIME = 0b1000

export interface BatchHeader {
  readonly version: number
  readonly crc: number
  readonly baseOffset: number
  readonly recordCount: number
  readonly firstTimestampMs: number
  readonly maxTimestampMs: number
  readonly incarnation: number
}

export interface TimedRecord extends RecordInput {
  readonly timestampMs: number
}

function encodedRecordBytes(record: TimedRecord): number {
  let size = 1 + 4 + 2 + Buffer.byteLength(record.topic) + 2 + Buffer.byteLength(record.clientId) + 2 + 4
  if (record.deviceTimeMs !== null) size += 8
  if (record.key !== null) size += 2 + record.key.length
  for (const [name, value] of record.headers) size += 4 + Buffer.byteLength(name) + Buffer.byteLength(value)
  return size + record.payload.length
}

function writeString16(buf: Buffer, pos: number, value: string): number {
  const len = buf.write(value, pos + 2, 'utf8')
  buf.writeUInt16BE(len, pos)
  return pos + 2 + len
}

/** Encodes records with consecutive offsets from `baseOffset`. Timestamps must be non-decreasing. */
export function encodeBatch(
  baseOffset: number,
  records: readonly TimedRecord[],
  incarnation: number,
): Buffer {
  const first = records[0]
  if (first === undefined) throw new RangeError('a batch holds at least one record')
  const last = records[records.length - 1] ?? first
  let size = BATCH_HEADER_BYTES
  for (const r of records) size += encodedRecordBytes(r)
  const buf = Buffer.allocUnsafe(size)
  buf.writeUInt8(BATCH_FORMAT_VERSION, 0)
  buf.writeUInt8(0, 5)
  buf.writeBigUInt64BE(BigInt(baseOffset), 6)
  buf.writeUInt32BE(records.length, 14)
  buf.writeBigUInt64BE(BigInt(first.timestampMs), 18)
  buf.writeBigUInt64BE(BigInt(last.timestampMs), 26)
  buf.writeUInt32BE(incarnation, 34)
  let pos = BATCH_HEADER_BYTES
  for (const r of records) {
    let flags: number = r.qos
    if (r.key !== null) flags |= FLAG_KEY
    if (r.deviceTimeMs !== null) flags |= FLAG_DEVICE_TIME
    pos = buf.writeUInt8(flags, pos)
    pos = buf.writeUInt32BE(r.timestampMs - first.timestampMs, pos)
    if (r.deviceTimeMs !== null) pos = buf.writeBigInt64BE(BigInt(r.deviceTimeMs), pos)
    if (r.key !== null) {
      pos = buf.writeUInt16BE(r.key.length, pos)
      pos += r.key.copy(buf, pos)
    }
    pos = writeString16(buf, pos, r.topic)
    pos = writeString16(buf, pos, r.clientId)
    pos = buf.writeUInt16BE(r.headers.length, pos)
    for (const [name, value] of r.headers) {
      pos = writeString16(buf, pos, name)
      pos = writeString16(buf, pos, value)
    }
    pos = buf.writeUInt32BE(r.payload.length, pos)
    pos += r.payload.copy(buf, pos)
  }
  buf.writeUInt32BE(crc32c(buf.subarray(5)), 1)
  return buf
}

/** Reads the fixed header without checking the CRC (cheap; for indexes and scans). */
export function readBatchHeader(buf: Uint8Array): BatchHeader {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  const version = b.length === 0 ? 0 : b.readUInt8(0)
  if (version !== 1 && version !== BATCH_FORMAT_VERSION) {
    throw new TributaryError(
      'TRIB_BATCH_VERSION',
      `format version ${version}, this build reads 1 to ${BATCH_FORMAT_VERSION}`,
    )
  }
  if (b.length < recordsStart(version)) {
    throw new TributaryError('TRIB_BATCH_CORRUPT', `batch is ${b.length} bytes, shorter than its header`)
  }
  return {
    version,
    crc: b.readUInt32BE(1),
    baseOffset: Number(b.readBigUInt64BE(6)),
    recordCount: b.readUInt32BE(14),
    firstTimestampMs: Number(b.readBigUInt64BE(18)),
    maxTimestampMs: Number(b.readBigUInt64BE(26)),
    incarnation: version === 1 ? FIRST_INCARNATION : b.readUInt32BE(34),
  }
}

/** Where the records start in a batch of format `version`. */
function recordsStart(version: number): number {
  return version === 1 ? V1_HEADER_BYTES : BATCH_HEADER_BYTES
}

class Reader {
  pos: number
  readonly #buf: Buffer

  constructor(buf: Buffer, pos: number) {
    this.#buf = buf
    this.pos = pos
  }

  #need(n: number): void {
    if (this.pos + n > this.#buf.length) {
      throw new TributaryError(
        'TRIB_BATCH_CORRUPT',
        `record runs past the end of the batch at byte ${this.pos}`,
      )
    }
  }

  u8(): number {
    this.#need(1)
    return this.#buf.readUInt8(this.pos++)
  }

  u16(): number {
    this.#need(2)
    const v = this.#buf.readUInt16BE(this.pos)
    this.pos += 2
    return v
  }

  u32(): number {
    this.#need(4)
    const v = this.#buf.readUInt32BE(this.pos)
    this.pos += 4
    return v
  }

  i64(): number {
    this.#need(8)
    const v = Number(this.#buf.readBigInt64BE(this.pos))
    this.pos += 8
    return v
  }

  bytes(n: number): Buffer {
    this.#need(n)
    // Copy: batches may be views into LMDB's memory map, which the next write may reuse.
    const out = Buffer.from(this.#buf.subarray(this.pos, this.pos + n))
    this.pos += n
    return out
  }

  string16(): string {
    const n = this.u16()
    this.#need(n)
    const s = this.#buf.toString('utf8', this.pos, this.pos + n)
    this.pos += n
    return s
  }

  get atEnd(): boolean {
    return this.pos === this.#buf.length
  }
}

/** Checks version, CRC and structure; returns the header or throws a TRIB_BATCH_* error. */
export function verifyBatch(buf: Uint8Array): BatchHeader {
  const header = readBatchHeader(buf)
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  const actual = crc32c(b.subarray(5))
  if (actual !== header.crc) {
    throw new TributaryError(
      'TRIB_BATCH_CORRUPT',
      `CRC32C mismatch (stored ${header.crc.toString(16)}, computed ${actual.toString(16)})`,
    )
  }
  return header
}

/** Decodes and verifies a whole batch. */
export function decodeBatch(buf: Uint8Array): StoredRecord[] {
  const header = verifyBatch(buf)
  const reader = new Reader(
    Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength),
    recordsStart(header.version),
  )
  const records: StoredRecord[] = []
  for (let i = 0; i < header.recordCount; i++) {
    const flags = reader.u8()
    const timestampMs = header.firstTimestampMs + reader.u32()
    const deviceTimeMs = flags & FLAG_DEVICE_TIME ? reader.i64() : null
    const key = flags & FLAG_KEY ? reader.bytes(reader.u16()) : null
    const topic = reader.string16()
    const clientId = reader.string16()
    const headerCount = reader.u16()
    const headers: Header[] = []
    for (let h = 0; h < headerCount; h++) headers.push([reader.string16(), reader.string16()])
    const payload = reader.bytes(reader.u32())
    const qos = (flags & FLAG_QOS_MASK) as Qos
    records.push({
      offset: header.baseOffset + i,
      incarnation: header.incarnation,
      timestampMs,
      deviceTimeMs,
      key,
      topic,
      clientId,
      headers,
      payload,
      qos,
    })
  }
  if (!reader.atEnd) throw new TributaryError('TRIB_BATCH_CORRUPT', 'trailing bytes after the last record')
  return records
}
