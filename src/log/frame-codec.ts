// Segment frame codec: what one group commit appends to the active segment
// file. A frame holds the batches of every partition the commit touched
// (batch-codec.ts bytes, each with its own CRC32C) and the changes to ingest's
// markers it made, in call order. Pure functions.
//
// Format version 1, all integers big-endian:
//   0  u32  magic 0x54524652 ("TRFR"): lets a scan find the next frame after damage
//   4  u8   format version (1)
//   5  u32  CRC32C (Castagnoli) of bytes [9, end)
//   9  u32  body length (bytes after the header)
//  13  u32  segment sequence: the file the frame was written to, so a frame
//           left over from an earlier use of the file (or a misplaced file)
//           is never taken for one of this segment's
//  17  body:
//        u16 batch count, then per batch: u32 partition id, u32 batch length, batch bytes
//        u16 marker change count, then per change a u8 kind:
//          1 (put):    u16 key length + UTF-8 key, u32 digest,
//                      u16 offset count, then per offset: u16 stream length + UTF-8 stream, u32 partition, u64 offset
//          2 (remove): u16 length + UTF-8 key prefix (every marker whose key starts with it)

import { crc32c } from '@node-rs/crc32'
import { TributaryError } from '../errors.ts'
import type { Marker } from './log-store.ts'

export const FRAME_MAGIC = 0x54524652
export const FRAME_FORMAT_VERSION = 1
export const FRAME_HEADER_BYTES = 17

export interface FrameBatch {
  readonly partitionId: number
  readonly batch: Buffer
}

export type MarkerChange =
  | { readonly kind: 'put'; readonly key: string; readonly marker: Marker }
  | { readonly kind: 'remove'; readonly prefix: string }

export interface Frame {
  readonly batches: readonly FrameBatch[]
  readonly markers: readonly MarkerChange[]
}

const PUT = 1
const REMOVE = 2

/** A batch as found in a decoded frame: `at` is where its bytes start within the frame. */
export interface LocatedBatch extends FrameBatch {
  readonly at: number
}

export interface DecodedFrame {
  readonly batches: LocatedBatch[]
  readonly markers: MarkerChange[]
}

function changeBytes(change: MarkerChange): number {
  if (change.kind === 'remove') return 1 + 2 + Buffer.byteLength(change.prefix)
  let size = 1 + 2 + Buffer.byteLength(change.key) + 4 + 2
  for (const [stream] of change.marker.offsets) size += 2 + Buffer.byteLength(stream) + 4 + 8
  return size
}

function writeString16(buf: Buffer, pos: number, value: string): number {
  const len = buf.write(value, pos + 2, 'utf8')
  buf.writeUInt16BE(len, pos)
  return pos + 2 + len
}

export interface EncodedFrame {
  readonly bytes: Buffer
  /** Where each batch's bytes start within the frame, in `frame.batches` order. */
  readonly batchAt: number[]
}

/** Encodes a frame for segment `segment` (`stampSegment` changes it once the segment is known). */
export function encodeFrame(frame: Frame, segment: number): EncodedFrame {
  let size = FRAME_HEADER_BYTES + 2 + 2
  for (const b of frame.batches) size += 8 + b.batch.length
  for (const m of frame.markers) size += changeBytes(m)
  const buf = Buffer.allocUnsafe(size)
  buf.writeUInt32BE(FRAME_MAGIC, 0)
  buf.writeUInt8(FRAME_FORMAT_VERSION, 4)
  buf.writeUInt32BE(size - FRAME_HEADER_BYTES, 9)
  buf.writeUInt32BE(segment, 13)
  const batchAt: number[] = []
  let pos = buf.writeUInt16BE(frame.batches.length, FRAME_HEADER_BYTES)
  for (const b of frame.batches) {
    pos = buf.writeUInt32BE(b.partitionId, pos)
    pos = buf.writeUInt32BE(b.batch.length, pos)
    batchAt.push(pos)
    pos += b.batch.copy(buf, pos)
  }
  pos = buf.writeUInt16BE(frame.markers.length, pos)
  for (const m of frame.markers) {
    if (m.kind === 'remove') {
      pos = buf.writeUInt8(REMOVE, pos)
      pos = writeString16(buf, pos, m.prefix)
      continue
    }
    pos = buf.writeUInt8(PUT, pos)
    pos = writeString16(buf, pos, m.key)
    pos = buf.writeUInt32BE(m.marker.digest >>> 0, pos)
    pos = buf.writeUInt16BE(m.marker.offsets.length, pos)
    for (const [stream, partition, offset] of m.marker.offsets) {
      pos = writeString16(buf, pos, stream)
      pos = buf.writeUInt32BE(partition, pos)
      pos = buf.writeBigUInt64BE(BigInt(offset), pos)
    }
  }
  buf.writeUInt32BE(crc32c(buf.subarray(9)), 5)
  return { bytes: buf, batchAt }
}

/** Sets the segment sequence of an encoded frame, in place, and its CRC32C with it. */
export function stampSegment(buf: Buffer, segment: number): void {
  if (buf.readUInt32BE(13) === segment) return
  buf.writeUInt32BE(segment, 13)
  buf.writeUInt32BE(crc32c(buf.subarray(9)), 5)
}

/** The segment sequence in a frame's header (check `frameIntact` first). */
export function frameSegment(buf: Buffer): number {
  return buf.readUInt32BE(13)
}

/**
 * The frame's total length from its header, or null when `buf` does not start
 * with a frame header of this version (or is shorter than one).
 */
export function frameLength(buf: Buffer): number | null {
  if (buf.length < FRAME_HEADER_BYTES) return null
  if (buf.readUInt32BE(0) !== FRAME_MAGIC || buf.readUInt8(4) !== FRAME_FORMAT_VERSION) return null
  return FRAME_HEADER_BYTES + buf.readUInt32BE(9)
}

/** True when `buf` is exactly one whole frame whose CRC32C matches. */
export function frameIntact(buf: Buffer): boolean {
  return frameLength(buf) === buf.length && crc32c(buf.subarray(9)) === buf.readUInt32BE(5)
}

function corrupt(detail: string): TributaryError {
  return new TributaryError('TRIB_BATCH_CORRUPT', `segment frame: ${detail}`)
}

/**
 * Parses a frame's structure without checking its CRC32C: for intact frames,
 * and to salvage the batches (each has its own CRC) of a damaged one. Throws
 * TRIB_BATCH_CORRUPT when the structure does not hold together.
 */
export function parseFrame(buf: Buffer): DecodedFrame {
  if (frameLength(buf) !== buf.length) throw corrupt('header does not match its length')
  let pos = FRAME_HEADER_BYTES
  const need = (n: number): void => {
    if (pos + n > buf.length) throw corrupt(`runs past its end at byte ${pos}`)
  }
  const string16 = (): string => {
    need(2)
    const len = buf.readUInt16BE(pos)
    need(2 + len)
    const s = buf.toString('utf8', pos + 2, pos + 2 + len)
    pos += 2 + len
    return s
  }
  need(2)
  const batchCount = buf.readUInt16BE(pos)
  pos += 2
  const batches: LocatedBatch[] = []
  for (let i = 0; i < batchCount; i++) {
    need(8)
    const partitionId = buf.readUInt32BE(pos)
    const length = buf.readUInt32BE(pos + 4)
    pos += 8
    need(length)
    batches.push({ partitionId, batch: buf.subarray(pos, pos + length), at: pos })
    pos += length
  }
  need(2)
  const markerCount = buf.readUInt16BE(pos)
  pos += 2
  const markers: MarkerChange[] = []
  for (let i = 0; i < markerCount; i++) {
    need(1)
    const kind = buf.readUInt8(pos++)
    if (kind === REMOVE) {
      markers.push({ kind: 'remove', prefix: string16() })
      continue
    }
    if (kind !== PUT) throw corrupt(`unknown marker change kind ${kind}`)
    const key = string16()
    need(6)
    const digest = buf.readUInt32BE(pos)
    const count = buf.readUInt16BE(pos + 4)
    pos += 6
    const offsets: Array<readonly [string, number, number]> = []
    for (let j = 0; j < count; j++) {
      const stream = string16()
      need(12)
      offsets.push([stream, buf.readUInt32BE(pos), Number(buf.readBigUInt64BE(pos + 4))])
      pos += 12
    }
    markers.push({ kind: 'put', key, marker: { digest, offsets } })
  }
  if (pos !== buf.length) throw corrupt('trailing bytes after the last marker')
  return { batches, markers }
}

/** Checks the CRC32C, then parses. */
export function decodeFrame(buf: Buffer): DecodedFrame {
  if (!frameIntact(buf)) throw corrupt('CRC32C mismatch or bad header')
  return parseFrame(buf)
}
