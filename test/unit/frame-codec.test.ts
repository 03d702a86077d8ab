import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { isTributaryError } from '../../src/errors.ts'
import {
  decodeFrame,
  encodeFrame,
  FRAME_FORMAT_VERSION,
  type Frame,
  frameIntact,
  frameLength,
  frameSegment,
  parseFrame,
  stampSegment,
} from '../../src/log/frame-codec.ts'

// The segment frame's golden bytes: test/fixtures/frame-v1.bin was written by
// frame format version 1 and must decode forever; encoding this frame must
// give exactly those bytes. A change here is a new format version, never an edit.
// The batches inside are opaque here (batch-codec.test.ts pins their format).
const GOLDEN = readFileSync(join(import.meta.dirname, '..', 'fixtures', 'frame-v1.bin'))
const BATCH_A = readFileSync(join(import.meta.dirname, '..', 'fixtures', 'batch-v1.bin'))
const BATCH_B = Buffer.from('opaque batch bytes')
const SEGMENT = 0x01020304

const FRAME: Frame = {
  batches: [
    { partitionId: 3, batch: BATCH_A },
    { partitionId: 70_000, batch: BATCH_B },
  ],
  markers: [
    {
      kind: 'put',
      key: 'q2\u0000sensor-17\u00007',
      marker: {
        digest: 0xdeadbeef,
        offsets: [
          ['sensors', 0, 41],
          ['été', 2, 2 ** 40],
        ],
      },
    },
    { kind: 'remove', prefix: 'q2\u0000sensor-9\u0000' },
  ],
}

describe('segment frame codec v1', () => {
  it('encodes the golden bytes', () => {
    expect(encodeFrame(FRAME, SEGMENT).bytes.equals(GOLDEN)).toBe(true)
  })

  it('decodes the golden bytes, batches located inside the frame', () => {
    const decoded = decodeFrame(GOLDEN)
    expect(decoded.markers).toEqual(FRAME.markers)
    expect(decoded.batches.map((b) => [b.partitionId, Buffer.from(b.batch)])).toEqual([
      [3, BATCH_A],
      [70_000, BATCH_B],
    ])
    for (const b of decoded.batches)
      expect(GOLDEN.subarray(b.at, b.at + b.batch.length).equals(b.batch)).toBe(true)
    expect(encodeFrame(FRAME, SEGMENT).batchAt).toEqual(decoded.batches.map((b) => b.at))
  })

  it('starts with magic, version, CRC32C and length', () => {
    expect(GOLDEN.subarray(0, 5).toString('hex')).toBe(
      `54524652${FRAME_FORMAT_VERSION.toString(16).padStart(2, '0')}`,
    )
    expect(frameLength(GOLDEN)).toBe(GOLDEN.length)
    expect(GOLDEN.readUInt32BE(9)).toBe(GOLDEN.length - 17)
    expect(frameSegment(GOLDEN)).toBe(SEGMENT)
    expect(frameIntact(GOLDEN)).toBe(true)
  })

  it('detects any flipped byte', () => {
    for (let i = 0; i < GOLDEN.length; i++) {
      const damaged = Buffer.from(GOLDEN)
      damaged[i] = (damaged[i] ?? 0) ^ 0x40
      expect(frameIntact(damaged), `byte ${i}`).toBe(false)
      expect(() => decodeFrame(damaged), `byte ${i}`).toThrow()
      try {
        decodeFrame(damaged)
      } catch (err) {
        expect(isTributaryError(err, 'TRIB_BATCH_CORRUPT')).toBe(true)
      }
    }
  })

  it('parses a frame whose CRC fails but whose structure holds (salvage)', () => {
    const damaged = Buffer.from(GOLDEN)
    const at = decodeFrame(GOLDEN).batches[1]?.at ?? 0
    damaged[at] = (damaged[at] ?? 0) ^ 0xff
    expect(frameIntact(damaged)).toBe(false)
    expect(parseFrame(damaged).batches[0]?.batch.equals(BATCH_A)).toBe(true)
  })

  it('does not take a truncated frame or another version for a frame', () => {
    expect(frameLength(GOLDEN.subarray(0, 12))).toBeNull()
    expect(frameIntact(GOLDEN.subarray(0, GOLDEN.length - 1))).toBe(false)
    const future = Buffer.from(GOLDEN)
    future[4] = 2
    expect(frameLength(future)).toBeNull()
  })

  it('restamps the segment sequence with a CRC32C that still holds', () => {
    const frame = encodeFrame(FRAME, 1).bytes
    expect(frameIntact(frame)).toBe(true)
    stampSegment(frame, SEGMENT)
    expect(frame.equals(GOLDEN)).toBe(true)
  })

  it('encodes a frame with no batches (only marker changes)', () => {
    const frame = encodeFrame({ batches: [], markers: [{ kind: 'remove', prefix: 'x' }] }, 1)
    expect(decodeFrame(frame.bytes)).toEqual({ batches: [], markers: [{ kind: 'remove', prefix: 'x' }] })
  })
})
