// The replication protocol between two real stores, wired in-process over a
// Duplex pair (no sockets): the hello and its refusals, the follower copying
// the origin's partitions record for record, `synced` reports, a copy that
// diverged found and repaired, and a silent peer dropped by the heartbeat.

import { duplexPair } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { encodeBatch } from '../../src/log/batch-codec.ts'
import type { AppendEntry, PartitionRef } from '../../src/log/log-store.ts'
import { SegmentLogStore } from '../../src/log/segment-log-store.ts'
import { createLogger } from '../../src/observability/logger.ts'
import { Follower } from '../../src/replication/follower.ts'
import { encodeMessage, FrameDecoder, type ReplicationMessage } from '../../src/replication/frame-codec.ts'
import { type LinkOptions, PeerLink } from '../../src/replication/link.ts'
import type { SyncedEntry } from '../../src/replication/messages.ts'
import { OriginServer } from '../../src/replication/origin-server.ts'
import { Cleanup, waitFor } from '../helpers/integration.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())
const logger = createLogger('silent')

function linkOptions(nodeId: string, extra: Partial<LinkOptions> = {}): LinkOptions {
  return {
    cluster: 'c1',
    nodeId,
    incarnation: 1,
    replicationPort: 7625,
    heartbeatMs: 50,
    timeoutMs: 1000,
    ...extra,
  }
}

async function store(origin: string): Promise<SegmentLogStore> {
  const dir = await cleanup.dir()
  const s = new SegmentLogStore({ dataDir: dir, origin, maxPendingAppends: 10_000 })
  await s.open()
  cleanup.defer(`close store ${origin}`, () => s.close())
  return s
}

/** Both ends of one link: `dialer` says hello from one side, `listener` from the other. */
async function connect(a: LinkOptions, b: LinkOptions): Promise<[PeerLink, PeerLink]> {
  const [left, right] = duplexPair()
  const links = await Promise.all([PeerLink.open(left, a), PeerLink.open(right, b)])
  for (const link of links) cleanup.defer(`close link of ${link.peer.nodeId}`, () => link.close('test over'))
  return links
}

function entry(partition: number, payload: string): AppendEntry {
  return {
    stream: 'temps',
    partition,
    record: {
      key: null,
      topic: 't',
      payload: Buffer.from(payload),
      headers: [],
      clientId: 'c',
      qos: 1,
      deviceTimeMs: null,
    },
  }
}

describe('replication over a Duplex', () => {
  it('copies every partition record for record, and reports what the copy holds durably', async () => {
    const a = await store('node-a')
    const b = await store('node-b')
    await a.ensureStream('temps', 2)
    for (let i = 0; i < 30; i++) await a.append({ entries: [entry(i % 2, `r${i}`)], durability: 'durable' })
    const [atOrigin, atFollower] = await connect(linkOptions('node-a'), linkOptions('node-b'))
    expect(atOrigin.peer.nodeId).toBe('node-b')
    expect(atFollower.peer).toEqual({ nodeId: 'node-a', incarnation: 1, replicationPort: 7625 })
    const synced: SyncedEntry[] = []
    const server = new OriginServer({
      link: atOrigin,
      log: a,
      recovering: () => false,
      logger,
      assigned: () => true,
      onSynced: (follower, entries) => {
        expect(follower).toBe('node-b')
        synced.push(...entries)
      },
    })
    cleanup.defer('stop origin server', () => server.close())
    const follower = new Follower({ link: atFollower, log: b, logger })
    const running = follower.run()

    const refs: PartitionRef[] = [0, 1].map((partition) => ({ stream: 'temps', origin: 'node-a', partition }))
    const caughtUp = () => refs.every((ref) => b.partition(ref)?.nextOffset === a.partition(ref)?.nextOffset)
    await waitFor(caughtUp, 'the follower to copy the backlog')
    // Live records travel too (the long poll wakes on the origin's next fdatasync).
    await a.append({ entries: [entry(0, 'live-1'), entry(1, 'live-2')], durability: 'durable' })
    await waitFor(caughtUp, 'the follower to copy live records')
    for (const ref of refs) {
      expect(b.read(ref, 0, { maxRecords: 100 }).records).toEqual(a.read(ref, 0, { maxRecords: 100 }).records)
      await waitFor(
        () =>
          synced.some((s) => s.partition === ref.partition && s.syncedNext === a.partition(ref)?.nextOffset),
        'a synced report for the whole partition',
      )
    }
    expect(follower.positions().map((p) => [p.ref.partition, p.nextOffset, p.originDurableNext])).toEqual([
      [0, 16, 16],
      [1, 16, 16],
    ])
    atFollower.close('test over')
    await running
  })

  it('copies only the partitions the origin assigns, stops fetching one it takes away and keeps that copy', async () => {
    const a = await store('node-a')
    const b = await store('node-b')
    await a.ensureStream('temps', 2)
    for (let i = 0; i < 10; i++) await a.append({ entries: [entry(i % 2, `r${i}`)], durability: 'durable' })
    const [atOrigin, atFollower] = await connect(linkOptions('node-a'), linkOptions('node-b'))
    const assigned = new Set([0])
    const server = new OriginServer({
      link: atOrigin,
      log: a,
      recovering: () => false,
      logger,
      onSynced: () => undefined,
      assigned: (p) => assigned.has(p.partition),
    })
    cleanup.defer('stop origin server', () => server.close())
    const follower = new Follower({ link: atFollower, log: b, logger })
    const running = follower.run()
    const [ref0, ref1] = [0, 1].map((partition) => ({ stream: 'temps', origin: 'node-a', partition }))
    if (ref0 === undefined || ref1 === undefined) throw new Error('two partitions')
    const held = (ref: PartitionRef) => b.partition(ref)?.nextOffset ?? null
    await waitFor(() => held(ref0) === 5, 'partition 0 copied')
    expect(held(ref1)).toBeNull()

    // Partition 1 is given to this follower too: copied. Then partition 0 is taken away.
    assigned.add(1)
    server.refreshCatalog()
    await waitFor(() => held(ref1) === 5, 'partition 1 copied once assigned')
    assigned.delete(0)
    server.refreshCatalog()
    await waitFor(() => follower.positions().length === 1, 'the follower to drop partition 0')
    for (let i = 10; i < 14; i++) await a.append({ entries: [entry(i % 2, `r${i}`)], durability: 'durable' })
    await waitFor(() => held(ref1) === 7, 'partition 1 copied live')
    // Partition 0 is fetched no more, and its copy stays as it was.
    expect(held(ref0)).toBe(5)
    expect(b.read(ref0, 0, { maxRecords: 100 }).records).toEqual(a.read(ref0, 0, { maxRecords: 5 }).records)
    atFollower.close('test over')
    await running
  })

  it('finds a copy that is not a prefix of the origin log, moves its tail aside and copies it again', async () => {
    const a = await store('node-a')
    const b = await store('node-b')
    await a.ensureStream('temps', 1)
    const ref = { stream: 'temps', origin: 'node-a', partition: 0 }
    for (const p of ['a', 'b']) await a.append({ entries: [entry(0, p)], durability: 'durable' })
    // b's copy holds a and b, then a batch at offset 2 the origin never wrote (lost and rewritten there).
    await b.ensureReplica(ref, 0)
    await b.appendReplica(
      ref,
      a.readBatches(ref, 0, 1 << 20).map((x) => x.bytes),
    )
    await b.appendReplica(ref, [encodeBatch(2, [{ ...entry(0, 'stray').record, timestampMs: 1 }], 1)])
    for (const p of ['c', 'd']) await a.append({ entries: [entry(0, p)], durability: 'durable' })

    const [atOrigin, atFollower] = await connect(linkOptions('node-a'), linkOptions('node-b'))
    const server = new OriginServer({
      link: atOrigin,
      log: a,
      recovering: () => false,
      logger,
      assigned: () => true,
      onSynced: () => undefined,
    })
    cleanup.defer('stop origin server', () => server.close())
    const diverged: number[] = []
    const follower = new Follower({
      link: atFollower,
      log: b,
      logger,
      onDiverged: (_, from) => diverged.push(from),
    })
    void follower.run()
    await waitFor(() => b.partition(ref)?.nextOffset === 4 && diverged.length > 0, 'the copy to be repaired')
    expect(diverged).toEqual([2])
    expect(b.read(ref, 0).records.map((r) => r.payload.toString())).toEqual(['a', 'b', 'c', 'd'])
    expect(b.verify().quarantined).toBe(1)
  })

  it('refuses another cluster, another protocol version and a node claiming this node id', async () => {
    const wrongCluster = connect(linkOptions('node-a'), linkOptions('node-b', { cluster: 'c2' }))
    await expect(wrongCluster).rejects.toMatchObject({ code: 'TRIB_PEER_REFUSED' })
    const sameId = connect(linkOptions('node-a'), linkOptions('node-a'))
    await expect(sameId).rejects.toMatchObject({ code: 'TRIB_NODE_ID_CONFLICT' })
  })

  it('closes a link whose peer falls silent (heartbeats), never waiting on mDNS', async () => {
    const [left, right] = duplexPair()
    const opening = PeerLink.open(left, linkOptions('node-a', { heartbeatMs: 20, timeoutMs: 200 }))
    const other = await PeerLink.open(right, linkOptions('node-b', { heartbeatMs: 20, timeoutMs: 200 }))
    const link = await opening
    // The peer's process hangs: nothing it writes arrives any more (its socket stays open).
    right.write = () => true
    const reason = await link.closed()
    expect(reason).toMatch(/no heartbeat from node-b/)
    other.close('test over')
  })
})

describe('heartbeat round trip', () => {
  it('measures the network round trip alone, not the time a heartbeat waited for the next one', async () => {
    const [left, right] = duplexPair()
    let clock = 5000
    const opening = PeerLink.open(left, linkOptions('node-a', { heartbeatMs: 20, now: () => clock }))
    // The other end speaks the protocol by hand, so every time in it is chosen here.
    const decoder = new FrameDecoder()
    const heard: ReplicationMessage[] = []
    right.on('data', (chunk: Buffer) => heard.push(...decoder.push(chunk)))
    right.write(
      encodeMessage({
        type: 'hello',
        protocol: 1,
        cluster: 'c1',
        nodeId: 'node-b',
        incarnation: 1,
        replicationPort: 1,
      }),
    )
    const link = await opening
    cleanup.defer('close the link', () => link.close('test over'))
    right.write(encodeMessage({ type: 'heartbeat', sentAtMs: 1000, echoMs: 0 }))
    // Seen at 5000 on node-a's clock, echoed at once (held 0 ms so far).
    await waitFor(() => heard.some((m) => m.type === 'heartbeat' && m.echoMs === 1000), 'a first echo')
    // node-b's heartbeat arrived at 5000 on node-a's clock; it is held until node-a's next one at 5300.
    clock = 5300
    heard.length = 0
    await waitFor(() => heard.some((m) => m.type === 'heartbeat'), 'the echo')
    const echo = heard.find((m) => m.type === 'heartbeat')
    expect(echo).toMatchObject({ sentAtMs: 5300, echoMs: 1300 })
    // node-b answers 10 ms later on node-a's clock: that is the round trip.
    clock = 5310
    right.write(encodeMessage({ type: 'heartbeat', sentAtMs: 1400, echoMs: 5300 }))
    await waitFor(() => link.rttMs !== null, 'a round trip')
    expect(link.rttMs).toBe(10)
  })
})
