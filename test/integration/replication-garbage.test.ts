// The frame decoder's fuzz run (test/unit/replication-codec.test.ts) shows
// it never crashes and refuses bad bytes with TRIB_REPLICATION_PROTOCOL;
// this shows what a node does with them over a real link: a peer that holds
// the secret (TLS-PSK to a node on 127.0.0.1) says a proper hello, then
// sends damaged frames (golden frames with bits flipped, lengths and counts
// replaced, bytes inserted; seeded). Each time the node answers with a
// `refuse` naming the code and the decoder's reason, closes that
// connection, and goes on serving: a proper peer still gets its hello.

import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { readClusterSecret, writeClusterSecret } from '../../src/cluster/secret.ts'
import { isTributaryError } from '../../src/errors.ts'
import {
  encodeMessage,
  FrameDecoder,
  REPLICATION_PROTOCOL_VERSION,
  type ReplicationMessage,
} from '../../src/replication/frame-codec.ts'
import { TlsPskTransport } from '../../src/replication/transport.ts'
import { freePort } from '../helpers/free-port.ts'
import { Cleanup } from '../helpers/integration.ts'
import { seededRandom } from '../helpers/link-proxy.ts'

const CLUSTER = 'garbage'
const ROUNDS = 25
const TIME_BOUND_MS = 20_000
const CLOSE_WAIT_MS = 5_000
const GOLDEN_DIR = join(import.meta.dirname, '..', 'fixtures', 'replication-v1')

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

const randomInt = (rand: () => number, below: number): number => Math.floor(rand() * below)

/** A golden frame with 1 to 3 mutations; only ones the decoder refuses are kept by the caller. */
function damaged(rand: () => number, golden: readonly Buffer[]): Buffer {
  let bytes = Buffer.from(golden[randomInt(rand, golden.length)] ?? Buffer.alloc(0))
  for (let m = 1 + randomInt(rand, 3); m > 0 && bytes.length > 0; m--) {
    const at = randomInt(rand, bytes.length)
    switch (randomInt(rand, 4)) {
      case 0:
        bytes[at] = (bytes[at] ?? 0) ^ (1 << randomInt(rand, 8))
        break
      case 1:
        if (at + 4 <= bytes.length) bytes.writeUInt32BE(randomInt(rand, 2 ** 32), at)
        break
      case 2:
        if (at + 2 <= bytes.length) bytes.writeUInt16BE(randomInt(rand, 2 ** 16), at)
        break
      default:
        bytes = Buffer.concat([
          bytes.subarray(0, at),
          Buffer.from(Array.from({ length: 1 + randomInt(rand, 8) }, () => randomInt(rand, 256))),
          bytes.subarray(at),
        ])
    }
  }
  return bytes
}

/** Why a fresh decoder refuses `bytes`, or null when it takes them (whole messages or a frame to finish). */
function refusal(bytes: Buffer): string | null {
  try {
    new FrameDecoder().push(bytes)
    return null
  } catch (err) {
    if (isTributaryError(err, 'TRIB_REPLICATION_PROTOCOL')) return err.message
    throw err
  }
}

/** Every message `socket` delivers until it closes (or CLOSE_WAIT_MS pass: then `closed` is false). */
function collect(socket: Duplex): { messages: ReplicationMessage[]; done: Promise<boolean> } {
  const decoder = new FrameDecoder()
  const messages: ReplicationMessage[] = []
  socket.on('data', (chunk: Buffer) => messages.push(...decoder.push(chunk)))
  const done = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), CLOSE_WAIT_MS)
    socket.once('close', () => {
      clearTimeout(timer)
      resolve(true)
    })
    // A reset after the refuse is still a close; the error itself is not the point here.
    socket.on('error', () => undefined)
  })
  return { messages, done }
}

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + CLOSE_WAIT_MS
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
}

describe('a node sent damaged frames over a real link', () => {
  it('refuses each with its reason, closes that connection, and goes on serving', async () => {
    const dir = await cleanup.dir()
    const secretFile = join(dir, 'cluster.secret')
    writeClusterSecret(secretFile)
    const port = await freePort()
    const node = await cleanup.node({
      config: {
        cluster: {
          name: CLUSTER,
          secretFile,
          peers: [],
          mdns: false,
          replicationHost: '127.0.0.1',
          replicationPort: port,
        },
      },
    })
    const client = new TlsPskTransport({ cluster: CLUSTER, secret: readClusterSecret(secretFile) })
    cleanup.defer('close the test transport', () => client.close())
    const hello = encodeMessage({
      type: 'hello',
      protocol: REPLICATION_PROTOCOL_VERSION,
      cluster: CLUSTER,
      nodeId: 'fuzzer',
      incarnation: 1,
      replicationPort: 1,
    })
    const golden = readdirSync(GOLDEN_DIR).map((f) => readFileSync(join(GOLDEN_DIR, f)))
    const rand = seededRandom(20_261_208)
    const deadline = performance.now() + TIME_BOUND_MS

    let rounds = 0
    for (let tries = 0; rounds < ROUNDS && performance.now() < deadline && tries < 100 * ROUNDS; tries++) {
      const garbage = damaged(rand, golden)
      const reason = refusal(garbage)
      if (reason === null) continue
      rounds++
      const conn = await client.connect('127.0.0.1', port)
      const seen = collect(conn.socket)
      conn.socket.write(hello)
      // Every other round the damage comes in the hello's own write, before the node's hello is back.
      if (rounds % 2 === 0) await until(() => seen.messages.length > 0)
      conn.socket.write(garbage)
      const closed = await seen.done
      const context = `round ${rounds}, bytes ${garbage.toString('hex')}`
      expect(closed, context).toBe(true)
      expect(seen.messages[0], context).toMatchObject({ type: 'hello', nodeId: node.node.nodeId })
      expect(seen.messages.at(-1), context).toEqual({
        type: 'refuse',
        code: 'TRIB_REPLICATION_PROTOCOL',
        message: reason,
      })
    }
    expect(rounds).toBeGreaterThan(0)

    // Still serving: a proper peer says hello and hears the node's.
    const conn = await client.connect('127.0.0.1', port)
    const seen = collect(conn.socket)
    conn.socket.write(hello)
    await until(() => seen.messages.length > 0)
    expect(seen.messages[0]).toMatchObject({ type: 'hello', nodeId: node.node.nodeId })
    conn.socket.destroy()
  })
})
