import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { isTributaryError } from '../../src/errors.ts'
import {
  DEFAULT_MAX_FRAME_BYTES,
  encodeMessage,
  FrameDecoder,
  REPLICATION_PROTOCOL_VERSION,
  type ReplicationMessage,
  type ReplicationMessageType,
} from '../../src/replication/frame-codec.ts'

// The replication protocol's golden bytes: test/fixtures/replication-v1/<type>.bin
// were written by protocol version 1, one frame each, and must decode forever;
// encoding these messages must give exactly those bytes. A change here is a new
// protocol version, never an edit. TRIBUTARY_WRITE_FIXTURES=1 writes a fixture
// that does not exist yet (it never overwrites one; a test run must not change
// the checkout).
const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'replication-v1')
const WRITE_FIXTURES = process.env.TRIBUTARY_WRITE_FIXTURES === '1'
// A real stored batch (batch-codec.test.ts pins its format); opaque here.
const BATCH_V1 = readFileSync(join(import.meta.dirname, '..', 'fixtures', 'batch-v1.bin'))

type MessageOf<T extends ReplicationMessageType> = Extract<ReplicationMessage, { type: T }>

const GOLDEN_MESSAGES: { readonly [T in ReplicationMessageType]: MessageOf<T> } = {
  hello: {
    type: 'hello',
    protocol: 1,
    cluster: 'plant-été',
    nodeId: '0d9c7a52-4f0e-4b7e-9a51-2f7d3c6e8b10',
    incarnation: 3,
    replicationPort: 7443,
  },
  refuse: {
    type: 'refuse',
    code: 'wrong-cluster',
    message: 'this node belongs to cluster "plant-2" (温度), not "plant-1"',
  },
  heartbeat: { type: 'heartbeat', sentAtMs: 86_400_123, echoMs: 86_399_877 },
  catalog: {
    type: 'catalog',
    partitions: [
      { stream: 'sensors', partition: 0, firstOffset: 0, durableNext: 44, incarnation: 1 },
      {
        stream: 'été',
        partition: 70_000,
        firstOffset: 2 ** 40,
        durableNext: 2 ** 40 + 5,
        incarnation: 0xffff_ffff,
      },
    ],
  },
  fetch: {
    type: 'fetch',
    requestId: 0xdead_beef,
    maxWaitMs: 500,
    maxBytes: 1024 * 1024,
    partitions: [
      { stream: 'sensors', origin: 'node-a', partition: 0, nextOffset: 0, lastIncarnation: 0, lastCrc: 0 },
      {
        stream: 'été',
        origin: 'node-b',
        partition: 70_000,
        nextOffset: 2 ** 40 + 3,
        lastIncarnation: 2,
        lastCrc: 0x62ba_39be,
      },
    ],
  },
  'fetch-response': {
    type: 'fetch-response',
    requestId: 0xdead_beef,
    partitions: [
      {
        stream: 'sensors',
        origin: 'node-a',
        partition: 0,
        status: 'ok',
        firstOffset: 0,
        durableNext: 44,
        divergedAt: 0,
        incarnation: 1,
        batches: [BATCH_V1, Buffer.from('opaque batch bytes')],
      },
      {
        stream: 'été',
        origin: 'node-b',
        partition: 70_000,
        status: 'diverged',
        firstOffset: 2 ** 40,
        durableNext: 2 ** 40 + 5,
        divergedAt: 2 ** 40 + 2,
        incarnation: 3,
        batches: [],
      },
      {
        stream: 'gone',
        origin: 'node-a',
        partition: 9,
        status: 'unknown-partition',
        firstOffset: 0,
        durableNext: 0,
        divergedAt: 0,
        incarnation: 0,
        batches: [],
      },
      {
        stream: 'sensors',
        origin: 'node-a',
        partition: 1,
        status: 'out-of-range',
        firstOffset: 100,
        durableNext: 120,
        divergedAt: 0,
        incarnation: 1,
        batches: [],
      },
    ],
  },
  synced: {
    type: 'synced',
    partitions: [
      { stream: 'sensors', origin: 'node-a', partition: 0, syncedNext: 44 },
      { stream: 'été', origin: 'node-b', partition: 70_000, syncedNext: Number.MAX_SAFE_INTEGER },
    ],
  },
}

const TYPES = Object.keys(GOLDEN_MESSAGES) as ReplicationMessageType[]
const ALL_MESSAGES: ReplicationMessage[] = TYPES.map((type) => GOLDEN_MESSAGES[type])

function golden(type: ReplicationMessageType): Buffer {
  const path = join(FIXTURES, `${type}.bin`)
  if (WRITE_FIXTURES && !existsSync(path)) {
    mkdirSync(FIXTURES, { recursive: true })
    writeFileSync(path, encodeMessage(GOLDEN_MESSAGES[type]))
  }
  return readFileSync(path)
}

const GOLDEN = new Map(TYPES.map((type) => [type, golden(type)]))
const goldenOf = (type: ReplicationMessageType): Buffer => GOLDEN.get(type) ?? Buffer.alloc(0)
const ALL_GOLDEN = Buffer.concat(TYPES.map(goldenOf))

/** mulberry32: a small seeded PRNG, so every run feeds the same bytes. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const randomInt = (rand: () => number, below: number): number => Math.floor(rand() * below)

/**
 * Feeds `bytes` in chunks of the given sizes (the rest in one last chunk), each
 * through one scratch buffer that is overwritten after every push, as a socket
 * reusing its read buffer would.
 */
function feed(decoder: FrameDecoder, bytes: Buffer, sizes: Iterable<number>): ReplicationMessage[] {
  const scratch = Buffer.alloc(bytes.length)
  const out: ReplicationMessage[] = []
  let pos = 0
  const push = (n: number): void => {
    const chunk = scratch.subarray(0, n)
    bytes.copy(chunk, 0, pos, pos + n)
    out.push(...decoder.push(chunk))
    chunk.fill(0xaa)
    pos += n
  }
  for (const size of sizes) {
    if (pos >= bytes.length) break
    push(Math.min(size, bytes.length - pos))
  }
  if (pos < bytes.length) push(bytes.length - pos)
  return out
}

function decodeOne(bytes: Buffer): ReplicationMessage[] {
  const decoder = new FrameDecoder()
  const messages = decoder.push(bytes)
  decoder.end()
  return messages
}

/** A raw frame, for bytes encodeMessage would never write. */
function rawFrame(type: number, body: Buffer | number[], version = REPLICATION_PROTOCOL_VERSION): Buffer {
  const b = Buffer.from(body)
  const head = Buffer.alloc(6)
  head.writeUInt32BE(2 + b.length, 0)
  head.writeUInt8(version, 4)
  head.writeUInt8(type, 5)
  return Buffer.concat([head, b])
}

const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff])
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}
const u64 = (high: number, low: number): Buffer => Buffer.concat([u32(high), u32(low)])
const str = (s: string | Buffer): Buffer => {
  const b = Buffer.from(s)
  return Buffer.concat([u16(b.length), b])
}

function expectRefused(action: () => unknown, reason: RegExp): void {
  let thrown: unknown
  try {
    action()
  } catch (err) {
    thrown = err
  }
  expect(isTributaryError(thrown, 'TRIB_REPLICATION_PROTOCOL'), String(thrown)).toBe(true)
  expect((thrown as Error).message).toMatch(reason)
}

describe('replication frame codec v1: golden bytes', () => {
  it.each(TYPES)('encodes the golden bytes of %s', (type) => {
    expect(encodeMessage(GOLDEN_MESSAGES[type]).equals(goldenOf(type))).toBe(true)
  })

  it.each(TYPES)('decodes the golden bytes of %s', (type) => {
    expect(decodeOne(goldenOf(type))).toEqual([GOLDEN_MESSAGES[type]])
  })

  it('starts every frame with its length, the protocol version and the type number', () => {
    TYPES.forEach((type, i) => {
      const bytes = goldenOf(type)
      expect(bytes.readUInt32BE(0), type).toBe(bytes.length - 4)
      expect(bytes[4], type).toBe(1)
      expect(bytes[5], type).toBe(i + 1)
    })
    expect(REPLICATION_PROTOCOL_VERSION).toBe(1)
    // length 18 | version 1 | type 3 | sentAtMs 86400123 | echoMs 86399877
    expect(goldenOf('heartbeat').toString('hex')).toBe(
      '00000012' + '01' + '03' + '0000000005265c7b' + '0000000005265b85',
    )
  })

  it('carries the stored batches byte for byte', () => {
    const [response] = decodeOne(goldenOf('fetch-response'))
    if (response?.type !== 'fetch-response') throw new Error('not a fetch-response')
    expect(response.partitions[0]?.batches[0]?.equals(BATCH_V1)).toBe(true)
    expect(goldenOf('fetch-response').includes(BATCH_V1)).toBe(true)
  })
})

describe('replication frame codec v1: round trips', () => {
  const longName = 'n'.repeat(65_535)
  const cases: ReplicationMessage[] = [
    {
      type: 'hello',
      protocol: 0xffff,
      cluster: '',
      nodeId: longName,
      incarnation: 0xffff_ffff,
      replicationPort: 65_535,
    },
    {
      type: 'hello',
      protocol: 0,
      cluster: '🌊 flux\u0000nul',
      nodeId: '\uFEFFnœud',
      incarnation: 0,
      replicationPort: 0,
    },
    { type: 'refuse', code: '', message: '' },
    { type: 'refuse', code: 'node-id-conflict', message: 'é'.repeat(32_767) },
    { type: 'heartbeat', sentAtMs: 0, echoMs: 0 },
    { type: 'heartbeat', sentAtMs: Number.MAX_SAFE_INTEGER, echoMs: 2 ** 32 },
    { type: 'heartbeat', sentAtMs: 2 ** 32 - 1, echoMs: 2 ** 32 + 1 },
    { type: 'catalog', partitions: [] },
    {
      type: 'catalog',
      partitions: [
        {
          stream: '温度',
          partition: 0xffff_ffff,
          firstOffset: Number.MAX_SAFE_INTEGER - 1,
          durableNext: Number.MAX_SAFE_INTEGER,
          incarnation: 0xffff_ffff,
        },
        { stream: '', partition: 0, firstOffset: 0, durableNext: 0, incarnation: 0 },
      ],
    },
    { type: 'fetch', requestId: 0, maxWaitMs: 0, maxBytes: 0, partitions: [] },
    {
      type: 'fetch',
      requestId: 0xffff_ffff,
      maxWaitMs: 0xffff_ffff,
      maxBytes: 0xffff_ffff,
      partitions: Array.from({ length: 300 }, (_, i) => ({
        stream: `s${i}`,
        origin: 'ö',
        partition: i,
        nextOffset: 2 ** 52 + i,
        lastIncarnation: 0xffff_ffff,
        lastCrc: 0xffff_ffff - i,
      })),
    },
    { type: 'fetch-response', requestId: 1, partitions: [] },
    {
      type: 'fetch-response',
      requestId: 0xffff_ffff,
      partitions: [
        {
          stream: 's',
          origin: 'o',
          partition: 0xffff_ffff,
          status: 'ok',
          firstOffset: 0,
          durableNext: Number.MAX_SAFE_INTEGER,
          divergedAt: 0,
          incarnation: 0xffff_ffff,
          batches: [Buffer.alloc(0), BATCH_V1, Buffer.alloc(1024 * 1024, 7), Buffer.alloc(0)],
        },
        {
          stream: 's',
          origin: 'o',
          partition: 1,
          status: 'ok',
          firstOffset: 5,
          durableNext: 5 + 1000,
          divergedAt: 0,
          incarnation: 2,
          batches: Array.from({ length: 1000 }, (_, i) => Buffer.alloc(i % 17, i)),
        },
        {
          stream: 's',
          origin: 'o',
          partition: 2,
          status: 'diverged',
          firstOffset: 0,
          durableNext: 10,
          divergedAt: Number.MAX_SAFE_INTEGER,
          incarnation: 0,
          batches: [],
        },
      ],
    },
    { type: 'synced', partitions: [] },
    {
      type: 'synced',
      partitions: [{ stream: longName, origin: longName, partition: 0xffff_ffff, syncedNext: 0 }],
    },
  ]

  it.each(cases.map((msg, i) => [i, msg.type, msg] as const))('case %i (%s)', (_, __, msg) => {
    const bytes = encodeMessage(msg)
    const decoded = decodeOne(bytes)
    expect(decoded).toEqual([msg])
    expect(encodeMessage(decoded[0] as ReplicationMessage).equals(bytes)).toBe(true)
  })

  it('decoded batches are copies: the caller may reuse its chunk', () => {
    const bytes = encodeMessage(GOLDEN_MESSAGES['fetch-response'])
    const chunk = Buffer.from(bytes)
    const [msg] = new FrameDecoder().push(chunk)
    chunk.fill(0)
    expect(msg).toEqual(GOLDEN_MESSAGES['fetch-response'])
  })
})

describe('replication frame codec v1: incremental decoding', () => {
  it('decodes several frames from one chunk', () => {
    const decoder = new FrameDecoder()
    expect(decoder.push(ALL_GOLDEN)).toEqual(ALL_MESSAGES)
    expect(decoder.bufferedBytes).toBe(0)
  })

  it('decodes the golden frames fed one byte at a time', () => {
    const decoder = new FrameDecoder()
    const out: ReplicationMessage[] = []
    for (let i = 0; i < ALL_GOLDEN.length; i++) {
      const chunk = feed(decoder, ALL_GOLDEN.subarray(i, i + 1), [1])
      out.push(...chunk)
      expect(decoder.bufferedBytes).toBeLessThanOrEqual(i + 1)
    }
    expect(out).toEqual(ALL_MESSAGES)
    expect(decoder.bufferedBytes).toBe(0)
    decoder.end()
  })

  it('decodes the golden frames split at random points (seeded)', () => {
    const rand = prng(0x7ab1e)
    for (let round = 0; round < 300; round++) {
      const maxChunk = 1 + randomInt(rand, round % 2 === 0 ? 16 : 600)
      const sizes = Array.from({ length: ALL_GOLDEN.length }, () => 1 + randomInt(rand, maxChunk))
      const decoder = new FrameDecoder()
      expect(feed(decoder, ALL_GOLDEN, sizes), `round ${round}`).toEqual(ALL_MESSAGES)
      decoder.end()
    }
  })

  it('ignores empty chunks', () => {
    const decoder = new FrameDecoder()
    expect(decoder.push(Buffer.alloc(0))).toEqual([])
    expect(decoder.push(goldenOf('hello').subarray(0, 3))).toEqual([])
    expect(decoder.push(Buffer.alloc(0))).toEqual([])
    expect(decoder.push(goldenOf('hello').subarray(3))).toEqual([GOLDEN_MESSAGES.hello])
  })
})

describe('replication frame codec v1: malformed input', () => {
  const heartbeatBody = Buffer.concat([u64(0, 1), u64(0, 2)])

  it('refuses another protocol version as soon as its byte arrives', () => {
    for (const version of [0, 2, 255]) {
      const frame = rawFrame(3, heartbeatBody, version)
      expectRefused(
        () => new FrameDecoder().push(frame.subarray(0, 5)),
        new RegExp(`protocol version ${version}`),
      )
    }
  })

  it('refuses an unknown message type', () => {
    for (const type of [0, 8, 255]) {
      expectRefused(
        () => decodeOne(rawFrame(type, heartbeatBody)),
        new RegExp(`unknown message type ${type}`),
      )
    }
  })

  it('refuses a frame too short for its version and type', () => {
    expectRefused(() => new FrameDecoder().push(u32(0)), /frame length 0 cannot hold/)
    expectRefused(() => new FrameDecoder().push(u32(1)), /frame length 1 cannot hold/)
  })

  it('refuses a body shorter than its fields, naming the field', () => {
    expectRefused(
      () => decodeOne(rawFrame(3, heartbeatBody.subarray(0, 12))),
      /heartbeat frame truncated: echoMs/,
    )
    expectRefused(() => decodeOne(rawFrame(3, [])), /heartbeat frame truncated: sentAtMs/)
    const hello = Buffer.concat([u16(1), u16(200), Buffer.from('short')])
    expectRefused(() => decodeOne(rawFrame(1, hello)), /hello frame truncated: cluster needs 200 bytes/)
    const blob = Buffer.concat([
      u32(1),
      u32(1),
      str('s'),
      str('o'),
      u32(0),
      Buffer.from([1]),
      u64(0, 0),
      u64(0, 0),
      u64(0, 0),
      u32(0),
      u16(1),
      u32(1000),
      Buffer.from('abc'),
    ])
    expectRefused(
      () => decodeOne(rawFrame(6, blob)),
      /fetch-response frame truncated: batch needs 1000 bytes/,
    )
  })

  it('refuses bytes left over after the last field', () => {
    expectRefused(
      () => decodeOne(rawFrame(3, Buffer.concat([heartbeatBody, Buffer.from([0])]))),
      /heartbeat frame: 1 trailing bytes/,
    )
    expectRefused(
      () => decodeOne(rawFrame(4, Buffer.concat([u32(0), u32(0)]))),
      /catalog frame: 4 trailing bytes/,
    )
  })

  it('refuses strings that are not valid UTF-8 (never replaces them)', () => {
    const invalid = [
      [0xc3, 0x28], // a lead byte without its continuation
      [0xc0, 0x80], // an overlong NUL
      [0xed, 0xa0, 0x80], // a UTF-16 surrogate
      [0xff],
    ]
    for (const bytes of invalid) {
      const body = Buffer.concat([str(Buffer.from(bytes)), str('message')])
      expectRefused(() => decodeOne(rawFrame(2, body)), /refuse frame: code is not valid UTF-8/)
    }
  })

  it('refuses a u64 above the largest safe integer', () => {
    expectRefused(
      () => decodeOne(rawFrame(3, Buffer.concat([u64(0x20_0000, 0), u64(0, 0)]))),
      /sentAtMs is above 2\^53/,
    )
    expectRefused(
      () => decodeOne(rawFrame(3, Buffer.concat([u64(0, 0), u64(0xffff_ffff, 0xffff_ffff)]))),
      /echoMs is above 2\^53/,
    )
    expect(decodeOne(rawFrame(3, Buffer.concat([u64(0x1f_ffff, 0xffff_ffff), u64(0, 0)])))).toEqual([
      { type: 'heartbeat', sentAtMs: Number.MAX_SAFE_INTEGER, echoMs: 0 },
    ])
  })

  it('refuses a count the bytes left cannot hold, before reading any entry', () => {
    expectRefused(
      () => decodeOne(rawFrame(4, u32(0xffff_ffff))),
      /catalog frame: partition count is 4294967295/,
    )
    expectRefused(
      () => decodeOne(rawFrame(7, Buffer.concat([u32(2), Buffer.alloc(31)]))),
      /synced frame: partition count is 2, more than the 31 bytes/,
    )
    const response = Buffer.concat([
      u32(1),
      u32(1),
      str(''),
      str(''),
      u32(0),
      Buffer.from([1]),
      u64(0, 0),
      u64(0, 0),
      u64(0, 0),
      u32(0),
      u16(0xffff),
    ])
    expectRefused(() => decodeOne(rawFrame(6, response)), /batch count is 65535/)
  })

  it('refuses an unknown fetch status', () => {
    for (const status of [0, 5, 255]) {
      const body = Buffer.concat([
        u32(1),
        u32(1),
        str(''),
        str(''),
        u32(0),
        Buffer.from([status]),
        u64(0, 0),
        u64(0, 0),
        u64(0, 0),
        u32(0),
        u16(0),
      ])
      expectRefused(() => decodeOne(rawFrame(6, body)), new RegExp(`unknown status ${status}`))
    }
  })

  it('refuses a frame over maxFrameBytes from its length field alone, without buffering it', () => {
    const tooLong = u32(DEFAULT_MAX_FRAME_BYTES - 4 + 1)
    const decoder = new FrameDecoder()
    expect(decoder.push(tooLong.subarray(0, 3))).toEqual([])
    expectRefused(
      () => decoder.push(tooLong.subarray(3)),
      /a frame of 16842753 bytes is over the limit of 16842752/,
    )
    expectRefused(() => new FrameDecoder().push(u32(0xffff_ffff)), /over the limit/)

    // A heartbeat frame is 22 bytes: 4 length, 1 version, 1 type, 16 body.
    const small = new FrameDecoder({ maxFrameBytes: 22 })
    expect(small.push(rawFrame(3, heartbeatBody))).toEqual([{ type: 'heartbeat', sentAtMs: 1, echoMs: 2 }])
    expect(() => new FrameDecoder({ maxFrameBytes: 21 }).push(rawFrame(3, heartbeatBody))).toThrow(
      /over the limit of 21/,
    )
  })

  it('holds only the bytes that arrived, whatever length a frame claims', () => {
    const decoder = new FrameDecoder()
    const before = process.memoryUsage().arrayBuffers
    // A frame claiming the largest allowed length, of which 100 body bytes arrive.
    const head = Buffer.concat([u32(DEFAULT_MAX_FRAME_BYTES - 4), Buffer.from([1, 6])])
    expect(decoder.push(Buffer.concat([head, Buffer.alloc(100)]))).toEqual([])
    expect(decoder.bufferedBytes).toBe(106)
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(4 * 1024 * 1024)
    expectRefused(() => decoder.end(), /the stream ended inside a frame \(106 bytes of it received\)/)
  })

  it('is unusable after an error', () => {
    const decoder = new FrameDecoder()
    expectRefused(() => decoder.push(rawFrame(9, [])), /unknown message type 9/)
    expectRefused(() => decoder.push(goldenOf('heartbeat')), /decoder already failed/)
    expectRefused(() => decoder.end(), /decoder already failed/)
  })

  it('drops the messages completed earlier in the chunk that failed', () => {
    const decoder = new FrameDecoder()
    expectRefused(() => decoder.push(Buffer.concat([goldenOf('heartbeat'), rawFrame(9, [])])), /type 9/)
  })
})

describe('replication frame codec v1: what the encoder refuses (programmer errors)', () => {
  const base = GOLDEN_MESSAGES.heartbeat
  const entry = GOLDEN_MESSAGES['fetch-response'].partitions[0]
  it.each([
    ['an unsafe u64', { ...base, sentAtMs: 2 ** 53 }],
    ['a negative u64', { ...base, echoMs: -1 }],
    ['a fractional time', { ...base, sentAtMs: 1.5 }],
    ['NaN', { ...base, sentAtMs: Number.NaN }],
    ['a u32 over 2^32 - 1', { ...GOLDEN_MESSAGES.hello, incarnation: 2 ** 32 }],
    ['a u16 over 65535', { ...GOLDEN_MESSAGES.hello, replicationPort: 65_536 }],
    ['a string over 65535 bytes', { ...GOLDEN_MESSAGES.refuse, message: 'é'.repeat(32_768) }],
    ['a lone surrogate', { ...GOLDEN_MESSAGES.refuse, code: 'x\ud800' }],
    [
      'more than 65535 batches',
      {
        ...GOLDEN_MESSAGES['fetch-response'],
        partitions: [{ ...entry, batches: Array.from({ length: 65_536 }, () => Buffer.alloc(0)) }],
      },
    ],
    [
      'an unknown status',
      { ...GOLDEN_MESSAGES['fetch-response'], partitions: [{ ...entry, status: 'maybe' }] },
    ],
    ['an unknown type', { type: 'gossip' }],
  ])('%s', (_, msg) => {
    expect(() => encodeMessage(msg as ReplicationMessage)).toThrow(RangeError)
  })
})

describe('replication frame codec v1: fuzz', () => {
  const ITERATIONS = 20_000
  const TIME_BOUND_MS = 5_000

  /** One damaged copy of 1 to 3 golden frames: bit flips, truncations, random lengths, inserts, cuts. */
  function mutate(rand: () => number): Buffer {
    const frames = Array.from({ length: 1 + randomInt(rand, 3) }, () =>
      goldenOf(TYPES[randomInt(rand, 7)] ?? 'hello'),
    )
    let bytes = Buffer.concat(frames)
    const mutations = 1 + randomInt(rand, 3)
    for (let m = 0; m < mutations && bytes.length > 0; m++) {
      const at = randomInt(rand, bytes.length)
      switch (randomInt(rand, 7)) {
        case 0:
          bytes[at] = (bytes[at] ?? 0) ^ (1 << randomInt(rand, 8))
          break
        case 1:
          bytes = bytes.subarray(0, at)
          break
        case 2: // a random length or count, anywhere
          if (at + 4 <= bytes.length) bytes.writeUInt32BE(randomInt(rand, 2 ** 32), at)
          break
        case 3: // a random u16 (string length, batch count)
          if (at + 2 <= bytes.length) bytes.writeUInt16BE(randomInt(rand, 2 ** 16), at)
          break
        case 4: // a large value: just over a limit, or the largest
          if (at + 4 <= bytes.length) {
            bytes.writeUInt32BE(
              [0xffff_ffff, 0x7fff_ffff, DEFAULT_MAX_FRAME_BYTES - 3, 0x20_0000][randomInt(rand, 4)] ?? 0,
              at,
            )
          }
          break
        case 5:
          bytes = Buffer.concat([
            bytes.subarray(0, at),
            Buffer.from(Array.from({ length: 1 + randomInt(rand, 8) }, () => randomInt(rand, 256))),
            bytes.subarray(at),
          ])
          break
        default:
          bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1 + randomInt(rand, 16))])
      }
      bytes = Buffer.from(bytes)
    }
    return bytes
  }

  it('returns messages or throws TRIB_REPLICATION_PROTOCOL, never anything else', () => {
    const rand = prng(20_260_101)
    const deadline = performance.now() + TIME_BOUND_MS
    const outcomes = { decoded: 0, refused: 0 }
    let iterations = 0
    for (; iterations < ITERATIONS && performance.now() < deadline; iterations++) {
      const input = mutate(rand)
      const decoder = new FrameDecoder()
      const sizes = Array.from({ length: 8 }, () => 1 + randomInt(rand, 64))
      let messages: ReplicationMessage[] = []
      try {
        messages = feed(decoder, input, sizes)
        // It never holds more than it was given.
        expect(decoder.bufferedBytes).toBeLessThanOrEqual(input.length)
        outcomes.decoded++
        // Whatever decodes re-encodes to the very bytes it came from.
        const again = Buffer.concat(messages.map(encodeMessage))
        expect(again.equals(input.subarray(0, input.length - decoder.bufferedBytes))).toBe(true)
        decoder.end() // throws when the input ended inside a frame
      } catch (err) {
        if (!isTributaryError(err, 'TRIB_REPLICATION_PROTOCOL')) {
          throw new Error(`iteration ${iterations}, input ${input.toString('hex')}: ${String(err)}`, {
            cause: err,
          })
        }
        outcomes.refused++
      }
    }
    expect(iterations).toBeGreaterThan(0)
    expect(outcomes.refused).toBeGreaterThan(0)
    expect(outcomes.decoded).toBeGreaterThan(0)
  }, 30_000)
})
