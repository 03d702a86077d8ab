// Reads the frames of one segment from a position on: what start-up replay
// and read-only openers use to find what the index does not hold yet.
// Intact frames are handed over as they are; a damaged frame (CRC32C or
// structure) is handed over for salvage when the frames after it can be
// found, and reported as an unreadable range otherwise. Damage with no intact
// frame after it, in the last segment, is a torn tail: a write that was never
// acknowledged.

import {
  type DecodedFrame,
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  frameIntact,
  frameLength,
  frameSegment,
  parseFrame,
} from './frame-codec.ts'
import type { SegmentReader } from './segment-files.ts'

export interface ScannedFrame {
  readonly position: number
  readonly length: number
  /** Null when the frame's structure could not be parsed at all. */
  readonly frame: DecodedFrame | null
  readonly intact: boolean
}

export interface ScanResult {
  /** Where the readable frames end: the next frame goes here; anything after it is torn. */
  readonly end: number
}

const SEARCH_CHUNK = 1024 * 1024

/** An intact frame written to this segment (not one left over from an earlier use of the file). */
function ours(bytes: Buffer, sequence: number): boolean {
  return frameIntact(bytes) && frameSegment(bytes) === sequence
}

/** The position of the next intact frame of this segment at or after `from`, or null. */
function nextIntactFrame(reader: SegmentReader, sequence: number, from: number, size: number): number | null {
  const magic = Buffer.allocUnsafe(4)
  magic.writeUInt32BE(FRAME_MAGIC, 0)
  for (let chunkAt = from; chunkAt < size; chunkAt += SEARCH_CHUNK) {
    const chunk = reader.readSome(sequence, chunkAt, SEARCH_CHUNK + 3)
    for (let i = chunk.indexOf(magic); i >= 0 && i < SEARCH_CHUNK; i = chunk.indexOf(magic, i + 1)) {
      const at = chunkAt + i
      const header = reader.readSome(sequence, at, FRAME_HEADER_BYTES)
      const length = frameLength(header)
      if (length === null || at + length > size) continue
      if (ours(reader.read(sequence, at, length), sequence)) return at
    }
  }
  return null
}

/**
 * Calls `onFrame` for every frame from `position` to the end of the file, in
 * order. Ranges that hold no parseable frame but have intact frames after
 * them are skipped: their records show up as a gap before the next batch.
 */
export function scanSegment(
  reader: SegmentReader,
  sequence: number,
  position: number,
  onFrame: (scanned: ScannedFrame) => void,
): ScanResult {
  const size = reader.size(sequence)
  let at = position
  while (at < size) {
    const length = frameLength(reader.readSome(sequence, at, FRAME_HEADER_BYTES))
    const fits = length !== null && at + length <= size
    const bytes = fits ? reader.read(sequence, at, length) : null
    if (bytes !== null && ours(bytes, sequence)) {
      onFrame({ position: at, length: bytes.length, frame: parseFrame(bytes), intact: true })
      at += bytes.length
      continue
    }
    const next = nextIntactFrame(reader, sequence, at + 1, size)
    if (next === null) return { end: at }
    let frame: DecodedFrame | null = null
    // Salvage only a damaged frame: an intact one of another segment is not ours to read.
    if (bytes !== null && at + bytes.length <= next && !frameIntact(bytes)) {
      try {
        frame = parseFrame(bytes)
      } catch {
        // The structure is gone too: nothing in it can be salvaged.
      }
    }
    if (frame !== null) onFrame({ position: at, length: bytes?.length ?? 0, frame, intact: false })
    at = next
  }
  return { end: at }
}
