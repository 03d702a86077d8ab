// Replication frame codec: the messages two nodes exchange over a replication
// link, a byte stream (a TLS socket, or any Duplex in tests). encodeMessage
// turns one message into one frame; a FrameDecoder turns the bytes, as they
// arrive, back into messages. Pure: no I/O, no clock, no state beyond the
// decoder's partial frame. Over 400 lines: about a third is this header, the
// byte layout of every message; the field readers are in wire-fields.ts and
// the message types in messages.ts.
//
// Protocol version 1, all integers big-endian. A frame:
//   0  u32  frame length: the bytes after this field (2 + body length)
//   4  u8   protocol version (1)
//   5  u8   message type (1..7, below)
//   6  body
// A whole frame (length field included) is at most the decoder's
// maxFrameBytes (default 16 MiB + 64 KiB); a longer one is refused as soon as
// its length field arrives, before any of it is buffered.
//
// In the bodies: string = u16 byte length + UTF-8 bytes (invalid UTF-8 is
// refused, never replaced); blob = u32 length + bytes; u64 = unsigned, at
// most 2^53 - 1 (Number.MAX_SAFE_INTEGER, the largest offset a JS number
// holds exactly); times are whole milliseconds.
//   1 hello            u16 protocol (the highest protocol version the sender speaks),
//                      string cluster, string nodeId, u32 incarnation, u16 replicationPort
//   2 refuse           string code, string message
//   3 heartbeat        u64 sentAtMs (the sender's monotonic clock),
//                      u64 echoMs (the last sentAtMs received from the other side, 0 if none)
//   4 catalog          u32 count, then per partition (of the sender's own):
//                        string stream, u32 partition, u64 firstOffset, u64 durableNext, u32 incarnation
//   5 fetch            u32 requestId, u32 maxWaitMs, u32 maxBytes, u32 count, then per partition:
//                        string stream, string origin, u32 partition, u64 nextOffset,
//                        u32 lastIncarnation, u32 lastCrc (of the last batch held; 0, 0 when none)
//   6 fetch-response   u32 requestId, u32 count, then per partition:
//                        string stream, string origin, u32 partition,
//                        u8 status (1 ok, 2 diverged, 3 unknown-partition, 4 out-of-range),
//                        u64 firstOffset, u64 durableNext,
//                        u64 divergedAt (meaningful when diverged; 0 otherwise),
//                        u32 incarnation: the one every batch below was written in (an entry never
//                          spans two; the partition's current one when there are no batches),
//                        u16 batch count, then per batch a blob: a stored record batch
//                          (batch-codec.ts bytes) as it is on disk, never re-encoded
//   7 synced           u32 count, then per partition:
//                        string stream, string origin, u32 partition,
//                        u64 syncedNext (below it, the follower's copy is fdatasync'd)
// Every field of a body is read; bytes left over after the last one are refused.
//
// hello and refuse keep these layouts in every later protocol version, so two
// nodes of different versions can always tell each other what they speak (or
// why they hang up); each frame's version byte says how to read that frame.
//
// Batches are opaque here: the follower verifies each (verifyBatch) before
// appending it. Decoded batches share the decoder's copy of their frame, so a
// batch kept alive keeps its whole frame's memory alive. The messages' meaning
// is in messages.ts, the field encodings in wire-fields.ts.

import { TributaryError } from '../errors.ts'
import type {
  CatalogEntry,
  CatalogMessage,
  FetchEntry,
  FetchMessage,
  FetchResponseEntry,
  FetchResponseMessage,
  FetchStatus,
  ReplicationMessage,
  ReplicationMessageType,
  SyncedEntry,
  SyncedMessage,
} from './messages.ts'
import {
  checkUint,
  FieldMeasure,
  FieldReader,
  type FieldSink,
  FieldWriter,
  protocolError,
} from './wire-fields.ts'

export type * from './messages.ts'

export const REPLICATION_PROTOCOL_VERSION = 1
/** The u32 frame length, protocol version and message type before every body. */
export const FRAME_HEADER_BYTES = 6
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024 + 64 * 1024

const LENGTH_FIELD_BYTES = 4

const TYPE_NUMBER = {
  hello: 1,
  refuse: 2,
  heartbeat: 3,
  catalog: 4,
  fetch: 5,
  'fetch-response': 6,
  synced: 7,
} as const satisfies Record<ReplicationMessageType, number>

/** Message type names by number. */
const TYPE_NAME: readonly (ReplicationMessageType | undefined)[] = [
  undefined,
  'hello',
  'refuse',
  'heartbeat',
  'catalog',
  'fetch',
  'fetch-response',
  'synced',
]

/** Status numbers are the index + 1. */
const STATUSES: readonly FetchStatus[] = ['ok', 'diverged', 'unknown-partition', 'out-of-range']

// The smallest encoding of one list entry (empty strings, no batches): a
// claimed count is checked against the bytes left before any entry is read.
const CATALOG_ENTRY_MIN = 2 + 4 + 8 + 8 + 4
const FETCH_ENTRY_MIN = 2 + 2 + 4 + 8 + 4 + 4
const RESPONSE_ENTRY_MIN = 2 + 2 + 4 + 1 + 8 + 8 + 8 + 4 + 2
const SYNCED_ENTRY_MIN = 2 + 2 + 4 + 8
const BATCH_MIN = 4

// ---- encoding ----

function writeResponseEntry(p: FetchResponseEntry, out: FieldSink): void {
  out.string(p.stream, 'fetch-response stream')
  out.string(p.origin, 'fetch-response origin')
  out.u32(p.partition, 'fetch-response partition')
  const status = STATUSES.indexOf(p.status)
  if (status === -1) throw new RangeError(`replication frame: unknown fetch status ${String(p.status)}`)
  out.u8(status + 1, 'fetch-response status')
  out.u64(p.firstOffset, 'fetch-response firstOffset')
  out.u64(p.durableNext, 'fetch-response durableNext')
  out.u64(p.divergedAt, 'fetch-response divergedAt')
  out.u32(p.incarnation, 'fetch-response incarnation')
  out.u16(p.batches.length, 'fetch-response batch count')
  for (const batch of p.batches) out.blob(batch, 'fetch-response batch')
}

function writeBody(msg: ReplicationMessage, out: FieldSink): void {
  switch (msg.type) {
    case 'hello':
      out.u16(msg.protocol, 'hello.protocol')
      out.string(msg.cluster, 'hello.cluster')
      out.string(msg.nodeId, 'hello.nodeId')
      out.u32(msg.incarnation, 'hello.incarnation')
      out.u16(msg.replicationPort, 'hello.replicationPort')
      return
    case 'refuse':
      out.string(msg.code, 'refuse.code')
      out.string(msg.message, 'refuse.message')
      return
    case 'heartbeat':
      out.u64(msg.sentAtMs, 'heartbeat.sentAtMs')
      out.u64(msg.echoMs, 'heartbeat.echoMs')
      return
    case 'catalog':
      out.u32(msg.partitions.length, 'catalog partition count')
      for (const p of msg.partitions) {
        out.string(p.stream, 'catalog stream')
        out.u32(p.partition, 'catalog partition')
        out.u64(p.firstOffset, 'catalog firstOffset')
        out.u64(p.durableNext, 'catalog durableNext')
        out.u32(p.incarnation, 'catalog incarnation')
      }
      return
    case 'fetch':
      out.u32(msg.requestId, 'fetch.requestId')
      out.u32(msg.maxWaitMs, 'fetch.maxWaitMs')
      out.u32(msg.maxBytes, 'fetch.maxBytes')
      out.u32(msg.partitions.length, 'fetch partition count')
      for (const p of msg.partitions) {
        out.string(p.stream, 'fetch stream')
        out.string(p.origin, 'fetch origin')
        out.u32(p.partition, 'fetch partition')
        out.u64(p.nextOffset, 'fetch nextOffset')
        out.u32(p.lastIncarnation, 'fetch lastIncarnation')
        out.u32(p.lastCrc, 'fetch lastCrc')
      }
      return
    case 'fetch-response':
      out.u32(msg.requestId, 'fetch-response.requestId')
      out.u32(msg.partitions.length, 'fetch-response partition count')
      for (const p of msg.partitions) writeResponseEntry(p, out)
      return
    case 'synced':
      out.u32(msg.partitions.length, 'synced partition count')
      for (const p of msg.partitions) {
        out.string(p.stream, 'synced stream')
        out.string(p.origin, 'synced origin')
        out.u32(p.partition, 'synced partition')
        out.u64(p.syncedNext, 'synced syncedNext')
      }
      return
    default: {
      const unknown: never = msg
      throw new RangeError(
        `replication frame: unknown message type ${String((unknown as { type: unknown }).type)}`,
      )
    }
  }
}

/**
 * Encodes one message as one whole frame. A value that does not fit its field
 * (a negative, fractional or unsafe integer, a string over 65535 bytes or with
 * a lone surrogate, more than 65535 batches, an unknown type or status) is a
 * programmer error: RangeError, nothing encoded. Keeping frames under the
 * peer's maxFrameBytes is the caller's job (fetch.maxBytes).
 */
export function encodeMessage(msg: ReplicationMessage): Buffer {
  const measure = new FieldMeasure()
  writeBody(msg, measure)
  const length = 2 + measure.bytes
  checkUint(length, 0xffff_ffff, 'frame length')
  const buf = Buffer.allocUnsafe(LENGTH_FIELD_BYTES + length)
  buf.writeUInt32BE(length, 0)
  buf.writeUInt8(REPLICATION_PROTOCOL_VERSION, 4)
  buf.writeUInt8(TYPE_NUMBER[msg.type], 5)
  const write = new FieldWriter(buf, FRAME_HEADER_BYTES)
  writeBody(msg, write)
  if (write.pos !== buf.length)
    throw new Error(`replication frame: wrote ${write.pos} of ${buf.length} bytes`)
  return buf
}

// ---- decoding ----

function readCatalog(r: FieldReader): CatalogMessage {
  const partitions: CatalogEntry[] = []
  const count = r.count('partition count', CATALOG_ENTRY_MIN, 32)
  for (let i = 0; i < count; i++) {
    partitions.push({
      stream: r.string('stream'),
      partition: r.u32('partition'),
      firstOffset: r.u64('firstOffset'),
      durableNext: r.u64('durableNext'),
      incarnation: r.u32('incarnation'),
    })
  }
  return { type: 'catalog', partitions }
}

function readFetch(r: FieldReader): FetchMessage {
  const requestId = r.u32('requestId')
  const maxWaitMs = r.u32('maxWaitMs')
  const maxBytes = r.u32('maxBytes')
  const partitions: FetchEntry[] = []
  const count = r.count('partition count', FETCH_ENTRY_MIN, 32)
  for (let i = 0; i < count; i++) {
    partitions.push({
      stream: r.string('stream'),
      origin: r.string('origin'),
      partition: r.u32('partition'),
      nextOffset: r.u64('nextOffset'),
      lastIncarnation: r.u32('lastIncarnation'),
      lastCrc: r.u32('lastCrc'),
    })
  }
  return { type: 'fetch', requestId, maxWaitMs, maxBytes, partitions }
}

function readStatus(r: FieldReader): FetchStatus {
  const n = r.u8('status')
  const status = STATUSES[n - 1]
  if (status === undefined) throw protocolError(`fetch-response frame: unknown status ${n}`)
  return status
}

function readResponseEntry(r: FieldReader): FetchResponseEntry {
  const stream = r.string('stream')
  const origin = r.string('origin')
  const partition = r.u32('partition')
  const status = readStatus(r)
  const firstOffset = r.u64('firstOffset')
  const durableNext = r.u64('durableNext')
  const divergedAt = r.u64('divergedAt')
  const incarnation = r.u32('incarnation')
  const batches: Buffer[] = []
  const count = r.count('batch count', BATCH_MIN, 16)
  for (let i = 0; i < count; i++) batches.push(r.blob('batch'))
  return { stream, origin, partition, status, firstOffset, durableNext, divergedAt, incarnation, batches }
}

function readFetchResponse(r: FieldReader): FetchResponseMessage {
  const requestId = r.u32('requestId')
  const partitions: FetchResponseEntry[] = []
  const count = r.count('partition count', RESPONSE_ENTRY_MIN, 32)
  for (let i = 0; i < count; i++) partitions.push(readResponseEntry(r))
  return { type: 'fetch-response', requestId, partitions }
}

function readSynced(r: FieldReader): SyncedMessage {
  const partitions: SyncedEntry[] = []
  const count = r.count('partition count', SYNCED_ENTRY_MIN, 32)
  for (let i = 0; i < count; i++) {
    partitions.push({
      stream: r.string('stream'),
      origin: r.string('origin'),
      partition: r.u32('partition'),
      syncedNext: r.u64('syncedNext'),
    })
  }
  return { type: 'synced', partitions }
}

const READ: { readonly [T in ReplicationMessageType]: (r: FieldReader) => ReplicationMessage } = {
  hello: (r) => ({
    type: 'hello',
    protocol: r.u16('protocol'),
    cluster: r.string('cluster'),
    nodeId: r.string('nodeId'),
    incarnation: r.u32('incarnation'),
    replicationPort: r.u16('replicationPort'),
  }),
  refuse: (r) => ({ type: 'refuse', code: r.string('code'), message: r.string('message') }),
  heartbeat: (r) => ({ type: 'heartbeat', sentAtMs: r.u64('sentAtMs'), echoMs: r.u64('echoMs') }),
  catalog: readCatalog,
  fetch: readFetch,
  'fetch-response': readFetchResponse,
  synced: readSynced,
}

function readBody(type: ReplicationMessageType, body: Buffer): ReplicationMessage {
  const reader = new FieldReader(body, type)
  const msg = READ[type](reader)
  reader.end()
  return msg
}

export interface FrameDecoderOptions {
  /** The largest whole frame accepted, length field included (default 16 MiB + 64 KiB). */
  readonly maxFrameBytes?: number
}

/**
 * Turns a replication link's bytes back into messages, whatever the chunking:
 * a frame may be split across chunks and a chunk may hold several frames.
 * It copies what it keeps, so callers may reuse their chunk buffers. It holds
 * at most one partial frame, never more than the bytes that arrived (a claimed
 * length is not allocated up front) and never more than maxFrameBytes.
 *
 * Malformed input throws TRIB_REPLICATION_PROTOCOL with the reason; the
 * decoder is then unusable (every later call throws again) and the link must
 * be closed: where the next frame would start is unknown. Messages completed
 * earlier in the chunk that failed are dropped with it.
 */
export class FrameDecoder {
  readonly #maxFrameBytes: number
  readonly #header = Buffer.alloc(FRAME_HEADER_BYTES)
  #headerFill = 0
  /** The body's length once the header is complete; -1 while the header is read. */
  #bodyLength = -1
  #type: ReplicationMessageType = 'hello'
  #pieces: Buffer[] = []
  #bodyFill = 0
  #failure: Error | null = null

  constructor(options: FrameDecoderOptions = {}) {
    const max = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
    checkUint(max, LENGTH_FIELD_BYTES + 0xffff_ffff, 'maxFrameBytes')
    if (max < FRAME_HEADER_BYTES) throw new RangeError(`maxFrameBytes must be at least ${FRAME_HEADER_BYTES}`)
    this.#maxFrameBytes = max
  }

  /** Bytes of a partial frame held now (0 between frames). */
  get bufferedBytes(): number {
    return this.#headerFill + this.#bodyFill
  }

  /** Decodes every frame that `chunk` completes, in order. */
  push(chunk: Uint8Array): ReplicationMessage[] {
    this.#checkUsable()
    try {
      return this.#push(chunk)
    } catch (err) {
      // Anything but TRIB_REPLICATION_PROTOCOL is a bug here: passed on as it is, never disguised.
      this.#failure = err instanceof Error ? err : new Error(String(err))
      throw err
    }
  }

  /** The stream ended: throws when it ended inside a frame. */
  end(): void {
    this.#checkUsable()
    if (this.bufferedBytes === 0) return
    this.#failure = protocolError(
      `the stream ended inside a frame (${this.bufferedBytes} bytes of it received)`,
    )
    throw this.#failure
  }

  #checkUsable(): void {
    if (this.#failure !== null) {
      throw new TributaryError(
        'TRIB_REPLICATION_PROTOCOL',
        'the decoder already failed (the cause says why); close the link',
        { cause: this.#failure },
      )
    }
  }

  #push(chunk: Uint8Array): ReplicationMessage[] {
    const messages: ReplicationMessage[] = []
    let pos = 0
    while (pos < chunk.length) {
      if (this.#bodyLength === -1) {
        const n = Math.min(FRAME_HEADER_BYTES - this.#headerFill, chunk.length - pos)
        this.#header.set(chunk.subarray(pos, pos + n), this.#headerFill)
        pos += n
        this.#headerFill += n
        this.#checkHeader()
        if (this.#headerFill < FRAME_HEADER_BYTES) break
        this.#bodyLength = this.#header.readUInt32BE(0) - 2
      }
      const n = Math.min(this.#bodyLength - this.#bodyFill, chunk.length - pos)
      if (n > 0) {
        // Buffer.from copies: the caller may reuse `chunk` once push returns.
        this.#pieces.push(Buffer.from(chunk.subarray(pos, pos + n)))
        pos += n
        this.#bodyFill += n
      }
      if (this.#bodyFill < this.#bodyLength) break
      const body =
        this.#pieces.length === 1
          ? (this.#pieces[0] as Buffer)
          : Buffer.concat(this.#pieces, this.#bodyLength)
      this.#headerFill = 0
      this.#bodyLength = -1
      this.#pieces = []
      this.#bodyFill = 0
      messages.push(readBody(this.#type, body))
    }
    return messages
  }

  /** Checks each header field as soon as it is complete, before anything after it is buffered. */
  #checkHeader(): void {
    const fill = this.#headerFill
    if (fill >= LENGTH_FIELD_BYTES) {
      const length = this.#header.readUInt32BE(0)
      if (length < 2) throw protocolError(`frame length ${length} cannot hold its version and type bytes`)
      if (LENGTH_FIELD_BYTES + length > this.#maxFrameBytes) {
        throw protocolError(
          `a frame of ${LENGTH_FIELD_BYTES + length} bytes is over the limit of ${this.#maxFrameBytes} (maxFrameBytes)`,
        )
      }
    }
    if (fill >= 5) {
      const version = this.#header.readUInt8(4)
      if (version !== REPLICATION_PROTOCOL_VERSION) {
        throw protocolError(`protocol version ${version}, this node reads ${REPLICATION_PROTOCOL_VERSION}`)
      }
    }
    if (fill >= FRAME_HEADER_BYTES) {
      const number = this.#header.readUInt8(5)
      const type = TYPE_NAME[number]
      if (type === undefined) throw protocolError(`unknown message type ${number}`)
      this.#type = type
    }
  }
}
