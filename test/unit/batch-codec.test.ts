import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { isTributaryError } from '../../src/errors.ts'
import {
  BATCH_FORMAT_VERSION,
  decodeBatch,
  encodeBatch,
  readBatchHeader,
  type TimedRecord,
  verifyBatch,
} from '../../src/log/batch-codec.ts'

// The on-disk format's golden bytes: test/fixtures/batch-v1.bin was written by
// format version 1 and batch-v2.bin by version 2 (incarnation 7); both must
// decode forever, and encoding these records must give exactly the current
// version's bytes. A change here is a new format version, never an edit.
const fixture = (name: string) => readFileSync(join(import.meta.dirname, '..', 'fixtures', name))
const GOLDEN_V1 = fixture('batch-v1.bin')
const GOLDEN = fixture('batch-v2.bin')

const RECORDS: TimedRecord[] = [
  {
    key: Buffer.from('sensor-17'),
    topic: 'sensors/sensor-17/temperature',
    payload: Buffer.from('{"c":21.5}'),
    headers: [
      ['unit', 'celsius'],
      ['unit', 'kelvin'],
    ],
    clientId: 'sensor-17',
    qos: 1,
    deviceTimeMs: 1_767_225_600_000,
    timestampMs: 1_767_225_600_123,
  },
  {
    key: null,
    topic: 'été/温度',
    payload: Buffer.from([0x00, 0xff, 0x10]),
    headers: [],
    clientId: '',
    qos: 2,
    deviceTimeMs: null,
    timestampMs: 1_767_225_600_125,
  },
  {
    key: Buffer.alloc(0),
    topic: 'a',
    payload: Buffer.alloc(0),
    headers: [['k', '']],
    clientId: 'c',
    qos: 0,
    deviceTimeMs: -1,
    timestampMs: 1_767_225_600_125,
  },
]

describe('batch codec v2', () => {
  it('encodes the golden bytes', () => {
    expect(encodeBatch(41, RECORDS, 7).equals(GOLDEN)).toBe(true)
  })

  it('still decodes format version 1, as the first incarnation', () => {
    expect(decodeBatch(GOLDEN_V1)).toEqual(RECORDS.map((r, i) => ({ ...r, offset: 41 + i, incarnation: 1 })))
    expect(readBatchHeader(GOLDEN_V1)).toMatchObject({ version: 1, baseOffset: 41, incarnation: 1 })
  })

  it('decodes the golden bytes to the same records with dense offsets', () => {
    const decoded = decodeBatch(GOLDEN)
    expect(decoded).toEqual(RECORDS.map((r, i) => ({ ...r, offset: 41 + i, incarnation: 7 })))
    expect(readBatchHeader(GOLDEN)).toMatchObject({
      version: BATCH_FORMAT_VERSION,
      baseOffset: 41,
      recordCount: 3,
      firstTimestampMs: 1_767_225_600_123,
      maxTimestampMs: 1_767_225_600_125,
      incarnation: 7,
    })
  })

  it('starts with the version byte and a CRC32C of the rest', () => {
    // version 2 | CRC32C | attributes 0 | base offset 41; incarnation 7 after the timestamps
    expect(GOLDEN.subarray(0, 1).toString('hex')).toBe('02')
    expect(GOLDEN.subarray(5, 14).toString('hex')).toBe('000000000000000029')
    expect(GOLDEN.subarray(34, 38).toString('hex')).toBe('00000007')
    expect(verifyBatch(GOLDEN).crc).toBe(GOLDEN.readUInt32BE(1))
  })

  it('detects any flipped byte', () => {
    for (let i = 0; i < GOLDEN.length; i++) {
      const damaged = Buffer.from(GOLDEN)
      damaged[i] = (damaged[i] ?? 0) ^ 0x40
      expect(() => decodeBatch(damaged), `byte ${i}`).toThrow()
      try {
        decodeBatch(damaged)
      } catch (err) {
        expect(
          isTributaryError(err, 'TRIB_BATCH_CORRUPT') || isTributaryError(err, 'TRIB_BATCH_VERSION'),
        ).toBe(true)
      }
    }
  })

  it('refuses a future format version with its own code', () => {
    const future = Buffer.from(GOLDEN)
    future[0] = 3
    expect(() => decodeBatch(future)).toThrow(expect.objectContaining({ code: 'TRIB_BATCH_VERSION' }))
  })

  it('refuses truncated batches', () => {
    expect(() => decodeBatch(GOLDEN.subarray(0, 20))).toThrow(
      expect.objectContaining({ code: 'TRIB_BATCH_CORRUPT' }),
    )
    expect(() => decodeBatch(GOLDEN.subarray(0, GOLDEN.length - 1))).toThrow(
      expect.objectContaining({ code: 'TRIB_BATCH_CORRUPT' }),
    )
  })
})
