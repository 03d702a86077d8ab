// Replication over a bad link, with two broker processes on 127.0.0.1
// (static peers, no mDNS). The follower b reaches the origin a only through
// a userspace TCP proxy (test/helpers/link-proxy.ts; this kernel has no
// sch_netem for `tc netem`) that delays every chunk by 200 +- 150 ms, resets
// connections at random (heavy loss on TCP shows as stalls and resets) and
// black-holes the link for a while. Sensors publish to a at QoS 1 the whole
// time; after the link heals, b's copy must equal a's log record by record
// (same offsets, same bytes, no gap, no duplicate). A second phase cuts b
// off for longer than cluster.followerTimeoutMs: a's /v1/peers shows b leave
// the in-sync set (no synced report, replicatedNext stuck) and come back
// once the link heals.

import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { afterEach, describe, expect, it } from 'vitest'
import { writeClusterSecret } from '../../src/cluster/secret.ts'
import type { StoredRecord } from '../../src/log/record.ts'
import { type ClusterChild, startClusterChild, until } from '../helpers/cluster-child.ts'
import { freePort } from '../helpers/free-port.ts'
import { Cleanup } from '../helpers/integration.ts'
import { HEALTHY, LinkProxy } from '../helpers/link-proxy.ts'
import { type LocatedRecord, readLogContents } from '../helpers/log-contents.ts'

const STREAM = 'chaos'
const HEARTBEAT_MS = 200
const FOLLOWER_TIMEOUT_MS = 2000
/** Records published while the link delays and cuts (bounded: the test's load). */
const RECORDS = 1500
const WINDOW = 25
/** Between windows: spreads the load over the bad-link phase (about 6 s). */
const PACE_MS = 100
/** A bound on each publishing loop (it takes a few seconds). */
const PUBLISH_LIMIT_MS = 30_000
const SEED = Number(process.env.TRIBUTARY_TEST_SEED ?? Date.now() % 1_000_000)

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

/** a's partitions of the stream: how far each is durable and replicated. */
async function originView(a: ClusterChild) {
  return (await a.peers()).cluster.partitions.filter((p) => p.stream === STREAM)
}

/** b's synced reports as a holds them (empty while b is not in the in-sync set). */
async function syncedByB(a: ClusterChild, b: ClusterChild) {
  const peer = (await a.peers()).peers.find((p) => p.nodeId === b.nodeId)
  return (peer?.synced ?? []).filter((s) => s.stream === STREAM)
}

/** True once b reports every partition of a synced up to its durable end, and a counts it. */
async function inSync(a: ClusterChild, b: ClusterChild): Promise<boolean> {
  const parts = await originView(a)
  const synced = await syncedByB(a, b)
  return (
    parts.length > 0 &&
    parts.every(
      (p) =>
        p.replicatedNext === p.durableNext &&
        synced.find((s) => s.partition === p.partition)?.syncedNext === p.durableNext,
    )
  )
}

/** Publishes `count` records in windows of QoS 1 (within PUBLISH_LIMIT_MS); returns the payloads acknowledged. */
async function publish(client: mqtt.MqttClient, tag: string, count: number): Promise<Buffer[]> {
  const acked: Buffer[] = []
  const deadline = Date.now() + PUBLISH_LIMIT_MS
  for (let sent = 0; sent < count; sent += WINDOW) {
    if (Date.now() > deadline)
      throw new Error(`${tag}: ${sent} of ${count} published in ${PUBLISH_LIMIT_MS} ms`)
    const window = Array.from({ length: Math.min(WINDOW, count - sent) }, (_, i) => {
      // A unique head, then random bytes of random length: the copy must keep every byte.
      const payload = Buffer.concat([
        Buffer.from(`${tag}-${sent + i}:`),
        randomBytes(16 + (((sent + i) * 37) % 2000)),
      ])
      return client.publishAsync(`c/${(sent + i) % 8}`, payload, { qos: 1 }).then(() => acked.push(payload))
    })
    await Promise.all(window)
    await new Promise((resolve) => setTimeout(resolve, PACE_MS))
  }
  return acked
}

/** The stream's records written by `origin`, per partition, as read from a stopped node's data dir. */
function ofOrigin(records: readonly LocatedRecord[], origin: string): Map<number, StoredRecord[]> {
  const byPartition = new Map<number, StoredRecord[]>()
  for (const r of records) {
    if (r.stream !== STREAM || r.origin !== origin) continue
    byPartition.set(r.partition, [...(byPartition.get(r.partition) ?? []), r.record])
  }
  return byPartition
}

describe('replication over a link with delay, resets and black holes', () => {
  it('resumes without gaps or duplicates, and a follower cut off too long leaves and rejoins the in-sync set', async () => {
    console.log(`link proxy seed ${SEED} (TRIBUTARY_TEST_SEED=${SEED} replays it)`)
    const dir = await cleanup.dir()
    const secretFile = join(dir, 'cluster.secret')
    writeClusterSecret(secretFile)
    const config = join(dir, 'tributary.yaml')
    writeFileSync(
      config,
      [
        'cluster:',
        '  name: bad-link',
        `  secretFile: ${secretFile}`,
        '  mdns: false',
        '  replicationHost: 127.0.0.1',
        `  heartbeatMs: ${HEARTBEAT_MS}`,
        `  followerTimeoutMs: ${FOLLOWER_TIMEOUT_MS}`,
        'streams:',
        `  - name: ${STREAM}`,
        '    match: ["c/#"]',
        '    partitions: 2',
        '    key: { from: topic-level, level: 1 }',
        '',
      ].join('\n'),
    )
    const env = { TRIBUTARY_CONFIG: config }
    const [portA, portB] = [await freePort(), await freePort()]
    const proxy = await LinkProxy.start({ host: '127.0.0.1', port: portA }, SEED)
    cleanup.defer('close the link proxy', () => proxy.close())
    const start = async (data: string, port: number, peer: string): Promise<ClusterChild> => {
      const child = await startClusterChild(data, {
        args: ['--replication-port', String(port), '--peer', peer],
        env,
      })
      cleanup.defer(`stop broker ${child.broker.pid}`, () => child.broker.kill('SIGKILL'))
      return child
    }
    // a follows b directly; b follows a (the copies checked here) only through the proxy.
    const a = await start(join(dir, 'a'), portA, `127.0.0.1:${portB}`)
    const b = await start(join(dir, 'b'), portB, proxy.address)
    await until('b to follow a through the proxy', () =>
      b.broker.logs.some((l) => l.msg === 'following peer'),
    )

    const sensor = await mqtt.connectAsync(a.broker.url, { clientId: 'sensor-chaos', reconnectPeriod: 0 })
    cleanup.defer('close the sensor', () => sensor.endAsync(true))

    // Phase 1: delay with jitter and random resets while records flow; a short black hole midway
    // (shorter than followerTimeoutMs: a stall the link survives).
    proxy.setFaults({ delayMs: 200, jitterMs: 150, cutChance: 0.03 })
    const quarter = Math.floor(RECORDS / 4)
    const acked = await publish(sensor, 'p1', quarter)
    // At least one reset while the copy is busy, whatever the random cuts did.
    proxy.cutAll()
    acked.push(...(await publish(sensor, 'p1a', quarter)))
    proxy.blackHole()
    await new Promise((resolve) => setTimeout(resolve, FOLLOWER_TIMEOUT_MS / 2))
    proxy.heal()
    acked.push(...(await publish(sensor, 'p1b', RECORDS - 2 * quarter)))
    const faulty = proxy.stats
    console.log(`phase 1: ${JSON.stringify(faulty)}`)
    // The faults happened: connections were reset and b dialed again.
    expect(faulty.cuts).toBeGreaterThan(0)
    expect(faulty.connections).toBeGreaterThan(1)

    proxy.setFaults(HEALTHY)
    await until('b to catch up with a once the link heals', () => inSync(a, b), 60_000)

    // Phase 2: b cannot reach a for longer than followerTimeoutMs; records keep coming to a.
    proxy.blackHole()
    acked.push(...(await publish(sensor, 'p2', 100)))
    await until('a to drop b from the in-sync set', async () => (await syncedByB(a, b)).length === 0)
    await new Promise((resolve) => setTimeout(resolve, FOLLOWER_TIMEOUT_MS))
    const away = await originView(a)
    expect(away.some((p) => p.replicatedNext < p.durableNext)).toBe(true)
    const bView = await b.peers()
    expect(bView.peers.find((p) => p.nodeId === a.nodeId)?.state).not.toBe('connected')
    proxy.heal()
    await until('b to rejoin the in-sync set', () => inSync(a, b), 60_000)

    // The same with nothing new to copy: b, back on a new link, still counts again.
    proxy.blackHole()
    await until('a to drop b again', async () => (await syncedByB(a, b)).length === 0)
    proxy.heal()
    await until('b to follow a again', async () =>
      (await b.peers()).peers.some((p) => p.nodeId === a.nodeId && p.state === 'connected'),
    )
    await until('b to rejoin the in-sync set with nothing new to copy', () => inSync(a, b), 10_000)

    await sensor.endAsync()
    await a.broker.kill('SIGTERM')
    await b.broker.kill('SIGTERM')
    const own = ofOrigin((await readLogContents(a.dataDir, [STREAM])).records, a.nodeId)
    const copy = await readLogContents(b.dataDir, [STREAM])
    expect(copy.corrupt).toEqual([])
    const copied = ofOrigin(copy.records, a.nodeId)

    // Every acknowledged record is in a's log once.
    const held = [...own.values()].flat().map((r) => r.payload.toString('base64'))
    expect(new Set(held).size).toBe(held.length)
    expect(held.sort()).toEqual(acked.map((p) => p.toString('base64')).sort())
    // b's copy of each partition equals a's log: offsets 0..n-1 in order, the same records, byte for byte.
    expect([...copied.keys()].sort()).toEqual([...own.keys()].sort())
    for (const [partition, records] of own) {
      const mine = copied.get(partition) ?? []
      expect(mine.map((r) => r.offset)).toEqual(records.map((_, i) => i))
      expect(mine).toEqual(records)
    }
  })
})
