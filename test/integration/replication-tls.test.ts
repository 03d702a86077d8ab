// Whole nodes replicating over the real transport on 127.0.0.1 (TLS 1.3
// keyed from the cluster secret; the transport's own refusals are in
// test/unit/peer-transport-tls.test.ts): static peers copying each other's
// partitions, a node with another secret shown refused, and ack: replicated.

import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { writeClusterSecret } from '../../src/cluster/secret.ts'
import { invertAfterMarker } from '../helpers/damage-file.ts'
import { freePort } from '../helpers/free-port.ts'
import { Cleanup, waitFor } from '../helpers/integration.ts'
import type { RunningNode } from '../helpers/node.ts'
import { runTributary } from '../helpers/run-bounded.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

/**
 * Two nodes a and b on 127.0.0.1 that name each other as static peers (no
 * mDNS), with a fresh secret; `extra` goes into both cluster sections.
 */
async function pair(
  name: string,
  streams: readonly Record<string, unknown>[],
  extra: Record<string, unknown> = {},
): Promise<{
  a: RunningNode
  b: RunningNode
  secretDir: string
  clusterOf: (port: number, peer: number) => Record<string, unknown>
  portA: number
}> {
  const secretDir = await cleanup.dir()
  const secretFile = join(secretDir, 'cluster.secret')
  writeClusterSecret(secretFile)
  const [portA, portB] = [await freePort(), await freePort()]
  const clusterOf = (port: number, peer: number) => ({
    name,
    secretFile,
    peers: [`127.0.0.1:${peer}`],
    mdns: false,
    replicationHost: '127.0.0.1',
    replicationPort: port,
    heartbeatMs: 100,
    ...extra,
  })
  const a = await cleanup.node({ config: { streams, cluster: clusterOf(portA, portB) } })
  const b = await cleanup.node({ config: { streams, cluster: clusterOf(portB, portA) } })
  return { a, b, secretDir, clusterOf, portA }
}

describe('two nodes with static peers on 127.0.0.1', () => {
  it('copy each other partitions, show each other as peers, and say why a third is refused', async () => {
    const streams = [{ name: 'temps', match: ['t/#'], partitions: 2 }]
    const { a, b, secretDir, clusterOf, portA } = await pair('bench-row', streams)
    const sensorA = await cleanup.mqtt(a.url, { clientId: 'sensor-a' })
    const sensorB = await cleanup.mqtt(b.url, { clientId: 'sensor-b' })
    for (let i = 0; i < 20; i++) {
      await sensorA.publishAsync(`t/a${i % 3}`, `a${i}`, { qos: 1 })
      await sensorB.publishAsync(`t/b${i % 3}`, `b${i}`, { qos: 1 })
    }
    const copied = (holder: typeof a, origin: typeof a) =>
      origin.node.store
        .localPartitions()
        .filter((p) => p.stream === 'temps')
        .every((p) => holder.node.store.partition(p)?.nextOffset === p.nextOffset)
    await waitFor(() => copied(b, a) && copied(a, b), 'both nodes to copy each other')
    for (const [holder, origin] of [
      [a, b],
      [b, a],
    ] as const) {
      for (const p of origin.node.store.localPartitions()) {
        expect(holder.node.store.read(p, 0, { maxRecords: 100 }).records).toEqual(
          origin.node.store.read(p, 0, { maxRecords: 100 }).records,
        )
      }
    }
    const peersOfA = (await (await fetch(`${a.httpUrl}/v1/peers`)).json()) as {
      cluster: { name: string; refused: string | null }
      peers: Array<{ nodeId: string; state: string; via: string; rttMs: number | null }>
    }
    expect(peersOfA.cluster).toMatchObject({ name: 'bench-row', refused: null })
    expect(peersOfA.peers).toEqual([
      expect.objectContaining({ nodeId: b.node.nodeId, state: 'connected', via: 'static' }),
    ])
    const httpPort = new URL(a.httpUrl ?? '').port
    const status = await runTributary(['status', '--data-dir', a.dataDir, '--http-port', httpPort])
    expect(status.stdout).toContain('cluster bench-row: 1 of 1 peers connected')
    const peers = await runTributary(['peers', '--data-dir', a.dataDir, '--http-port', httpPort])
    expect(peers.code, peers.stderr).toBe(0)
    expect(peers.stdout).toMatch(
      new RegExp(`${b.node.nodeId}\\s+127\\.0\\.0\\.1:\\d+\\s+static\\s+connected`),
    )
    expect(peers.stdout).toMatch(/REPLICATED NEXT/)
    let rtt: number | null = null
    for (let i = 0; i < 100 && rtt === null; i++) {
      const status = (await (await fetch(`${a.httpUrl}/v1/status`)).json()) as {
        peers: Array<{ rttMs: number | null }>
      }
      rtt = status.peers[0]?.rttMs ?? null
      if (rtt === null) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(rtt).toEqual(expect.any(Number))

    // A node with another secret dials a: the handshake fails, and it says so.
    const otherSecret = join(secretDir, 'other.secret')
    writeClusterSecret(otherSecret)
    const c = await cleanup.node({
      config: { streams, cluster: { ...clusterOf(await freePort(), portA), secretFile: otherSecret } },
    })
    let refused: { state: string; lastError: string | null } | undefined
    for (let i = 0; i < 100 && refused?.state !== 'refused'; i++) {
      const answer = (await (await fetch(`${c.httpUrl}/v1/peers`)).json()) as {
        peers: Array<{ state: string; lastError: string | null }>
      }
      refused = answer.peers[0]
      if (refused?.state !== 'refused') await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(refused).toMatchObject({
      state: 'refused',
      lastError: expect.stringMatching(/another cluster secret/),
    })
  })
})

/** waitFor for a condition read over HTTP (bounded the same way: 100 tries, 100 ms apart). */
async function until(condition: () => Promise<boolean>, label: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await condition()) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`timed out waiting for ${label}`)
}

describe('a peer whose link is down', () => {
  it('shows no round trip and claims no copy lag, in /v1/peers, tributary peers and /metrics', async () => {
    const { a, b } = await pair('blink', [{ name: 'temps', match: ['t/#'] }])
    const sensor = await cleanup.mqtt(b.url, { clientId: 'sensor-blink' })
    for (let i = 0; i < 5; i++) await sensor.publishAsync('t/x', `r${i}`, { qos: 1 })
    type Peers = {
      peers: Array<{
        state: string
        rttMs: number | null
        copies: Array<{ stream: string; nextOffset: number; lagRecords: number | null }>
      }>
    }
    const peersOfA = async () => ((await (await fetch(`${a.httpUrl}/v1/peers`)).json()) as Peers).peers
    await until(async () => {
      const [peer] = await peersOfA()
      const temps = peer?.copies.find((c) => c.stream === 'temps')
      return peer?.rttMs !== null && temps?.nextOffset === 5 && temps.lagRecords === 0
    }, 'a to copy b, with a round trip')
    const lagSample = new RegExp(`tributary_replica_lag_records\\{origin="${b.node.nodeId}"`)
    expect(await (await fetch(`${a.httpUrl}/metrics`)).text()).toMatch(lagSample)

    await b.stop()
    await until(async () => (await peersOfA())[0]?.state === 'connecting', 'a to see the link down')
    const [peer] = await peersOfA()
    expect(peer?.rttMs).toBeNull()
    // Known: where the copy ends. Not known: where b ends now.
    expect(peer?.copies.find((c) => c.stream === 'temps')).toMatchObject({ nextOffset: 5, lagRecords: null })
    expect(peer?.copies.every((c) => c.lagRecords === null)).toBe(true)
    expect(await (await fetch(`${a.httpUrl}/metrics`)).text()).not.toMatch(lagSample)
    const httpPort = new URL(a.httpUrl ?? '').port
    const shown = await runTributary(['peers', '--data-dir', a.dataDir, '--http-port', httpPort])
    expect(shown.code, shown.stderr).toBe(0)
    expect(shown.stdout).toMatch(
      new RegExp(`${b.node.nodeId}\\s+\\S+\\s+static\\s+connecting\\s+-\\s+2\\s+\\?`),
    )
  })
})

describe('three nodes, replicas 2 and 3', () => {
  it('copy each partition to replicas - 1 followers, and to another follower once its follower is gone', async () => {
    const secretDir = await cleanup.dir()
    const secretFile = join(secretDir, 'cluster.secret')
    writeClusterSecret(secretFile)
    const ports = [await freePort(), await freePort(), await freePort()]
    const streams = [
      { name: 'temps', match: ['t/#'], partitions: 4 },
      { name: 'all', match: ['all/#'], replicas: 3 },
    ]
    const nodes: RunningNode[] = []
    const clusters: Record<string, unknown>[] = []
    for (const port of ports) {
      const cluster = {
        name: 'trio',
        secretFile,
        peers: ports.filter((p) => p !== port).map((p) => `127.0.0.1:${p}`),
        mdns: false,
        replicationHost: '127.0.0.1',
        replicationPort: port,
        heartbeatMs: 100,
        followerTimeoutMs: 1000,
        followerExpireMs: 2000,
      }
      clusters.push(cluster)
      nodes.push(await cleanup.node({ config: { streams, cluster } }))
    }
    const [a, b, c] = nodes
    if (a === undefined || b === undefined || c === undefined) throw new Error('three nodes')
    for (const [i, n] of nodes.entries()) {
      const sensor = await cleanup.mqtt(n.url, { clientId: `sensor-${i}` })
      for (let j = 0; j < 12; j++) await sensor.publishAsync(`t/k${j}`, `n${i}-${j}`, { qos: 1 })
      await sensor.publishAsync('all/x', `n${i}-all`, { qos: 1 })
    }
    /** The nodes other than the origin whose copy of `p` is complete. */
    const holders = (origin: RunningNode, p: { stream: string; partition: number; nextOffset: number }) =>
      nodes.filter(
        (n) =>
          n !== origin &&
          n.node.store.partition({ ...p, origin: origin.node.nodeId })?.nextOffset === p.nextOffset,
      )
    const own = (n: RunningNode, stream: string) =>
      n.node.store.localPartitions().filter((p) => p.stream === stream)
    const everyPartitionOn = (stream: string, copies: number) =>
      nodes.every((o) => own(o, stream).every((p) => holders(o, p).length === copies))
    await waitFor(() => everyPartitionOn('temps', 1) && everyPartitionOn('all', 2), 'the copies')
    // Exactly replicas - 1 other nodes hold each partition, record for record.
    for (const origin of nodes)
      for (const p of own(origin, 'temps')) {
        const others = nodes.filter((n) => n !== origin && n.node.store.partition(p) !== undefined)
        expect(others).toHaveLength(1)
        expect(others[0]?.node.store.read(p, 0, { maxRecords: 100 }).records).toEqual(
          origin.node.store.read(p, 0, { maxRecords: 100 }).records,
        )
      }

    type PeersView = {
      cluster: {
        partitions: Array<{
          stream: string
          partition: number
          replicas: number
          followers: Array<{ follower: string; inSync: boolean }>
        }>
      }
    }
    const view = async (n: RunningNode) =>
      ((await (await fetch(`${n.httpUrl}/v1/peers`)).json()) as PeersView).cluster.partitions
    await until(async () => (await view(a)).every((p) => p.followers.every((f) => f.inSync)), 'a in sync')
    const ofA = await view(a)
    expect(ofA.filter((p) => p.stream === 'temps').map((p) => [p.replicas, p.followers.length])).toEqual([
      [2, 1],
      [2, 1],
      [2, 1],
      [2, 1],
    ])
    expect(ofA.find((p) => p.stream === 'all')?.followers).toHaveLength(2)
    const metrics = await (await fetch(`${a.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/tributary_partition_insync_followers\{stream="temps",partition="0"\} 1/)
    expect(metrics).toMatch(/tributary_partition_insync_followers\{stream="all",partition="0"\} 2/)

    const httpPort = new URL(a.httpUrl ?? '').port
    const peers = await runTributary(['peers', '--data-dir', a.dataDir, '--http-port', httpPort])
    expect(peers.code, peers.stderr).toBe(0)
    const follower0 = ofA.find((p) => p.stream === 'temps' && p.partition === 0)?.followers[0]?.follower
    expect(peers.stdout).toMatch(new RegExp(`temps\\s+0\\s+2\\s+2\\s+\\d+\\s+\\d+\\s+${follower0}\\n`))

    // The follower of a partition of a's with records stops: after followerTimeoutMs the other node is given it
    // and copies it.
    const p0 = own(a, 'temps').find((p) => p.nextOffset > 0)
    if (p0 === undefined) throw new Error("a's partitions hold no record")
    const [gone] = holders(a, p0)
    const other = nodes.find((n) => n !== a && n !== gone)
    if (gone === undefined || other === undefined) throw new Error('one follower and one other node')
    expect(other.node.store.partition(p0)).toBeUndefined()
    await gone.stop()
    await waitFor(
      () => other.node.store.partition(p0)?.nextOffset === p0.nextOffset,
      'the other node to copy it',
    )
    expect(other.node.store.read(p0, 0, { maxRecords: 100 }).records).toEqual(
      a.node.store.read(p0, 0, { maxRecords: 100 }).records,
    )
    await until(
      async () =>
        (await view(a))
          .find((p) => p.stream === 'temps' && p.partition === p0.partition)
          ?.followers.map((f) => [f.follower, f.inSync])
          .join() === [other.node.nodeId, true].join(),
      'a to show the new follower in sync',
    )

    // The old follower comes back: a keeps p0 with the new one, so the old copy is deleted followerExpireMs
    // after a's catalog left it out (its own clock's duration; nothing compared with a's timestamps).
    const goneAt = nodes.indexOf(gone)
    const back = await cleanup.node({ dataDir: gone.dataDir, config: { streams, cluster: clusters[goneAt] } })
    expect(back.node.store.partition(p0)?.nextOffset).toBe(p0.nextOffset)
    await waitFor(() => {
      const copy = back.node.store.partition(p0)
      return copy !== undefined && copy.firstOffset === copy.nextOffset
    }, 'the copy no longer assigned to be deleted')
    expect(back.node.store.read(p0, 0, { maxRecords: 100 }).records).toEqual([])
    // Still followed by the new follower, in full.
    expect(other.node.store.read(p0, 0, { maxRecords: 100 }).records).toEqual(
      a.node.store.read(p0, 0, { maxRecords: 100 }).records,
    )
  })
})

describe('ack: replicated', () => {
  it('acknowledges only once another node holds the record fdatasync-ed; without it, waits then refuses, or degrades', async () => {
    const streams = [
      { name: 'safe', match: ['safe/#'], ack: 'replicated', minInsync: 2, replicatedTimeoutMs: 800 },
      {
        name: 'soft',
        match: ['soft/#'],
        ack: 'replicated',
        onTooFewReplicas: 'degrade',
        replicatedTimeoutMs: 300,
      },
    ]
    const { a, b } = await pair('acks', streams, { followerTimeoutMs: 1000 })
    const ref = { stream: 'safe', origin: a.node.nodeId, partition: 0 }
    await waitFor(() => b.node.store.partition(ref) !== undefined, 'b to follow a')

    const sensor = await cleanup.mqtt(a.url, { clientId: 'sensor-r', protocolVersion: 5 })
    const reasons: string[] = []
    sensor.on('packetreceive', (packet) => {
      if (packet.cmd === 'puback' && packet.properties?.reasonString !== undefined)
        reasons.push(packet.properties.reasonString)
    })
    for (let i = 0; i < 5; i++) {
      await sensor.publishAsync('safe/x', `r${i}`, { qos: 1 })
      // Acknowledged: b's copy holds it, fdatasync-ed, already.
      expect(b.node.store.durableNext(ref)).toBe(i + 1)
    }

    const view = (await (await fetch(`${a.httpUrl}/v1/peers`)).json()) as {
      cluster: {
        partitions: Array<{ stream: string; minInsync: number; durableNext: number; replicatedNext: number }>
      }
    }
    expect(view.cluster.partitions.find((p) => p.stream === 'safe')).toEqual({
      stream: 'safe',
      partition: 0,
      minInsync: 2,
      replicas: 2,
      durableNext: 5,
      replicatedNext: 5,
      followers: [
        expect.objectContaining({ follower: b.node.nodeId, connected: true, inSync: true, syncedNext: 5 }),
      ],
    })

    await b.stop()
    const started = Date.now()
    await expect(sensor.publishAsync('safe/x', 'alone', { qos: 1 })).rejects.toThrow()
    expect(Date.now() - started).toBeGreaterThanOrEqual(700)
    expect(reasons).toEqual([expect.stringMatching(/^TRIB_NOT_ENOUGH_REPLICAS: /)])
    // Stored here all the same (the client sends it again; a dedupe window or the sink sees a duplicate).
    expect(a.node.store.partition({ ...ref, origin: a.node.nodeId })?.nextOffset).toBe(6)

    await sensor.publishAsync('soft/x', 'degraded', { qos: 1 })
    const metrics = await (await fetch(`${a.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/tributary_replicated_acks_degraded_total\{stream="soft"\} 1/)
  })
})

describe('retention in a cluster', () => {
  it("keeps what a follower has not copied, and a copy follows its origin's log start", async () => {
    const { a, b } = await pair('keep', [{ name: 'temps', match: ['t/#'] }])
    const ref = { stream: 'temps', origin: a.node.nodeId, partition: 0 }
    const sensor = await cleanup.mqtt(a.url, { clientId: 'sensor-k' })
    for (let i = 0; i < 10; i++) await sensor.publishAsync('t/x', `r${i}`, { qos: 1 })
    await waitFor(() => b.node.store.partition(ref)?.nextOffset === 10, 'b to copy a')
    const everything = () => ({ maxAgeMs: null, maxBytes: 1 })

    // b has copied everything: a's retention may delete it all but the last batch
    // (maxBytes keeps going until under the limit), and b's copy follows a's start.
    // a has b's synced report for all ten (its retention floor for b).
    let synced = 0
    for (let i = 0; i < 100 && synced < 10; i++) {
      const answer = (await (await fetch(`${a.httpUrl}/v1/peers`)).json()) as {
        peers: Array<{ synced: Array<{ stream: string; syncedNext: number }> }>
      }
      synced = answer.peers[0]?.synced.find((s) => s.stream === 'temps')?.syncedNext ?? 0
      if (synced < 10) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(synced).toBe(10)
    const first = await a.node.store.applyRetention(everything, Date.now())
    expect(first.recordsDeleted).toBeGreaterThan(0)
    const start = a.node.store.partition(ref)?.firstOffset ?? 0
    expect(start).toBeGreaterThan(0)
    await waitFor(
      () => b.node.store.partition(ref)?.firstOffset === start,
      "b's copy to follow a's log start",
    )

    // b goes away: what it has not copied stays on a.
    await b.stop()
    for (let i = 10; i < 15; i++) await sensor.publishAsync('t/x', `r${i}`, { qos: 1 })
    const held = await a.node.store.applyRetention(everything, Date.now())
    expect(held.heldBack).toContainEqual(ref)
    expect(a.node.store.partition(ref)?.firstOffset).toBeLessThanOrEqual(10)
  })
})

describe('retention after the origin restarts', () => {
  it('holds what a known follower had not copied until it reports or followerExpireMs passes', async () => {
    const streams = [{ name: 'temps', match: ['t/#'] }]
    const { a, b, clusterOf, portA } = await pair('restart-floors', streams, { tailRecoveryMs: 300 })
    const ref = { stream: 'temps', origin: a.node.nodeId, partition: 0 }
    let sensor = await cleanup.mqtt(a.url, { clientId: 'sensor-f' })
    for (let i = 0; i < 5; i++) await sensor.publishAsync('t/x', `r${i}`, { qos: 1 })
    await waitFor(() => b.node.store.durableNext(ref) === 5, 'b to copy a')
    // b goes; a goes on writing, then restarts with b still away.
    await b.stop()
    for (let i = 5; i < 10; i++) await sensor.publishAsync('t/x', `r${i}`, { qos: 1 })
    await sensor.endAsync()
    const dataDir = a.dataDir
    const portB = b.config.cluster?.replicationPort ?? 0
    await a.stop()
    const expireMs = 2_000
    const again = await cleanup.node({
      dataDir,
      config: {
        streams,
        cluster: { ...clusterOf(portA, portB), tailRecoveryMs: 300, followerExpireMs: expireMs },
      },
    })
    const started = performance.now()
    sensor = await cleanup.mqtt(again.url, { clientId: 'sensor-f2' })
    await sensor.publishAsync('t/x', 'after', { qos: 1 })
    const everything = () => ({ maxAgeMs: null, maxBytes: 1 })
    // b, a follower a had, has not reported since the restart: nothing is deleted for it.
    const held = await again.node.store.applyRetention(everything, Date.now())
    expect(performance.now() - started).toBeLessThan(expireMs)
    expect(held.heldBack).toContainEqual(ref)
    expect(held.recordsDeleted).toBe(0)
    expect(again.node.store.partition(ref)?.firstOffset).toBe(0)

    // followerExpireMs later b no longer holds anything back.
    await new Promise((resolve) => setTimeout(resolve, expireMs + 200))
    const freed = await again.node.store.applyRetention(everything, Date.now())
    expect(freed.recordsDeleted).toBeGreaterThan(0)
  })
})

describe('a damaged copy', () => {
  it('is found when its node starts, moved to the quarantine, and copied again from the origin', async () => {
    const streams = [{ name: 'temps', match: ['t/#'] }]
    const { a, b, clusterOf, portA } = await pair('mend', streams)
    const ref = { stream: 'temps', origin: a.node.nodeId, partition: 0 }
    const sensor = await cleanup.mqtt(a.url, { clientId: 'sensor-m' })
    for (let i = 0; i < 6; i++)
      await sensor.publishAsync('t/x', i === 3 ? 'VICTIM-payload' : `r${i}`, { qos: 1 })
    await waitFor(() => b.node.store.partition(ref)?.nextOffset === 6, 'b to copy a')
    const want = a.node.store.read(ref, 0).records
    const dataDir = b.dataDir
    const portB = b.config.cluster?.replicationPort ?? 0
    await b.stop()
    // Bit rot in b's copy of the fourth record (a's own files are untouched).
    const segments = join(dataDir, 'segments')
    const damaged = readdirSync(segments).flatMap(
      (f) => invertAfterMarker(join(segments, f), 'VICTIM', 2, 4).offsets,
    )
    expect(damaged.length).toBeGreaterThan(0)

    const again = await cleanup.node({ dataDir, config: { streams, cluster: clusterOf(portB, portA) } })
    expect(again.node.store.verify().quarantined).toBeGreaterThan(0)
    await waitFor(() => again.node.store.durableNext(ref) === 6, 'the copy to be copied again')
    expect(again.node.store.read(ref, 0).records).toEqual(want)
  })
})
