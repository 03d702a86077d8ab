// A node's lost tail and its incarnations, with whole nodes on 127.0.0.1
// (static peers, TLS from a fresh secret): a data dir restored from an older
// copy fetches its tail back from its follower before it writes a record;
// restored while the follower is away, it begins an incarnation of its own,
// and the follower's longer copy goes to its quarantine when it returns.
// A damaged batch of the node's own is put back from its follower's copy.
// Whatever happens, no (origin, incarnation, offset) names two records.

import { cpSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { writeClusterSecret } from '../../src/cluster/secret.ts'
import { decodeBatch } from '../../src/log/batch-codec.ts'
import type { PartitionRef } from '../../src/log/log-store.ts'
import type { SegmentLogStore } from '../../src/log/segment-log-store.ts'
import { invertAfterMarker } from '../helpers/damage-file.ts'
import { freePort } from '../helpers/free-port.ts'
import { Cleanup, waitFor } from '../helpers/integration.ts'
import type { RunningNode } from '../helpers/node.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

const STREAMS = [{ name: 'temps', match: ['t/#'] }]

/** Two nodes a and b naming each other as static peers; each can be stopped and started again on its data dir. */
async function twoNodes(tailRecoveryMs: number) {
  const secretFile = join(await cleanup.dir(), 'cluster.secret')
  writeClusterSecret(secretFile)
  const ports = { a: await freePort(), b: await freePort() }
  const dirs = { a: await cleanup.dir(), b: await cleanup.dir() }
  const cluster = (own: number, peer: number) => ({
    name: 'tails',
    secretFile,
    peers: [`127.0.0.1:${peer}`],
    mdns: false,
    replicationHost: '127.0.0.1',
    replicationPort: own,
    heartbeatMs: 100,
    tailRecoveryMs,
  })
  const start = (which: 'a' | 'b'): Promise<RunningNode> =>
    cleanup.node({
      dataDir: dirs[which],
      config: {
        streams: STREAMS,
        cluster: which === 'a' ? cluster(ports.a, ports.b) : cluster(ports.b, ports.a),
      },
    })
  return { start, dirs }
}

async function publish(node: RunningNode, payloads: readonly string[]): Promise<void> {
  const sensor = await cleanup.mqtt(node.url, { clientId: `sensor-${payloads[0]}` })
  for (const payload of payloads) await sensor.publishAsync('t/x', payload, { qos: 1 })
  await sensor.endAsync()
}

/** Every record held, as `incarnation/offset` -> payload, read from the stored batches. */
function identities(store: SegmentLogStore, ref: PartitionRef): Map<string, string> {
  const out = new Map<string, string>()
  for (const batch of store.readBatches(ref, store.partition(ref)?.firstOffset ?? 0, 1 << 30)) {
    const incarnation = batch.bytes.readUInt32BE(34)
    for (const record of decodeBatch(batch.bytes))
      out.set(`${incarnation}/${record.offset}`, record.payload.toString())
  }
  return out
}

/** Adds `more` to `all`, failing when an identity already names another record. */
function noIdentityTwice(all: Map<string, string>, more: Map<string, string>): void {
  for (const [identity, payload] of more) {
    expect(all.get(identity) ?? payload, `(origin, ${identity}) names two records`).toBe(payload)
    all.set(identity, payload)
  }
}

const copied = (holder: RunningNode, ref: PartitionRef, next: number) =>
  holder.node.store.partition(ref) !== undefined && holder.node.store.durableNext(ref) === next

describe('a data dir restored from an older copy', () => {
  it('fetches its lost tail back from its follower before it writes, then goes on in a new incarnation', async () => {
    const { start, dirs } = await twoNodes(10_000)
    let a = await start('a')
    const b = await start('b')
    const ref = { stream: 'temps', origin: a.node.nodeId, partition: 0 }
    await publish(a, ['one-0', 'one-1', 'one-2'])
    await waitFor(() => copied(b, ref, 3), 'b to copy the first records')
    await a.stop()
    const backup = await cleanup.dir()
    cpSync(dirs.a, backup, { recursive: true })

    a = await start('a')
    await publish(a, ['two-3', 'two-4', 'two-5', 'two-6'])
    await waitFor(() => copied(b, ref, 7), 'b to copy the records the backup lacks')
    const seen = identities(b.node.store, ref)
    await a.stop()
    rmSync(dirs.a, { recursive: true })
    cpSync(backup, dirs.a, { recursive: true })

    a = await start('a')
    // Back before MQTT listened: the four records only b held.
    expect(a.node.store.partition(ref)?.nextOffset).toBe(7)
    const status = (await (await fetch(`${a.httpUrl}/v1/status`)).json()) as {
      incarnation: { incarnation: number; recoveredRecords: number; uncertain: boolean }
    }
    expect(status.incarnation).toMatchObject({ recoveredRecords: 4, uncertain: false })
    await publish(a, ['three-7'])
    await waitFor(() => copied(b, ref, 8), 'b to copy the record after the recovered tail')

    const all = new Map(seen)
    noIdentityTwice(all, identities(a.node.store, ref))
    noIdentityTwice(all, identities(b.node.store, ref))
    expect([...identities(a.node.store, ref).values()]).toEqual([
      'one-0',
      'one-1',
      'one-2',
      'two-3',
      'two-4',
      'two-5',
      'two-6',
      'three-7',
    ])
    const newest = [...identities(a.node.store, ref).keys()].at(-1)
    expect(newest).toBe(`${status.incarnation.incarnation}/7`)
    expect(b.node.store.verify().quarantined).toBe(0)
  })

  it('restored while its follower is away: a new incarnation, and the longer copy moves aside, never mixed', async () => {
    const { start, dirs } = await twoNodes(300)
    let a = await start('a')
    let b = await start('b')
    const ref = { stream: 'temps', origin: a.node.nodeId, partition: 0 }
    await publish(a, ['one-0', 'one-1'])
    await waitFor(() => copied(b, ref, 2), 'b to copy the first records')
    await a.stop()
    const backup = await cleanup.dir()
    cpSync(dirs.a, backup, { recursive: true })

    a = await start('a')
    await publish(a, ['two-2', 'two-3', 'two-4'])
    await waitFor(() => copied(b, ref, 5), 'b to copy the records the backup lacks')
    const heldByB = identities(b.node.store, ref)
    await b.stop()
    await a.stop()
    rmSync(dirs.a, { recursive: true })
    cpSync(backup, dirs.a, { recursive: true })

    a = await start('a')
    const status = (await (await fetch(`${a.httpUrl}/v1/status`)).json()) as {
      incarnation: { incarnation: number; unconfirmedFollowers: string[]; uncertain: boolean }
    }
    expect(status.incarnation).toMatchObject({ unconfirmedFollowers: [b.node.nodeId], uncertain: true })
    await publish(a, ['three-2', 'three-3'])
    const written = identities(a.node.store, ref)
    // The lost records' offsets are given again, in another incarnation.
    expect(written.get(`${status.incarnation.incarnation}/2`)).toBe('three-2')

    b = await start('b')
    await waitFor(
      () =>
        copied(b, ref, 4) &&
        identities(b.node.store, ref).get(`${status.incarnation.incarnation}/3`) === 'three-3',
      "b's copy to follow the new incarnation",
    )
    expect([...identities(b.node.store, ref).values()]).toEqual(['one-0', 'one-1', 'three-2', 'three-3'])
    // b's records of the lost incarnation are kept for inspection, not mixed in.
    expect(b.node.store.verify().quarantined).toBeGreaterThan(0)
    const all = new Map(heldByB)
    noIdentityTwice(all, written)
    noIdentityTwice(all, identities(b.node.store, ref))
  })
})

describe('a damaged batch of the node itself', () => {
  it('is put back from its follower copy at start: no hole, no gap record', async () => {
    const { start, dirs } = await twoNodes(10_000)
    let a = await start('a')
    const b = await start('b')
    const ref = { stream: 'temps', origin: a.node.nodeId, partition: 0 }
    const payloads = ['r0', 'r1', 'r2', 'VICTIM-r3', 'r4', 'r5']
    await publish(a, payloads)
    await waitFor(() => copied(b, ref, 6), 'b to copy a')
    await a.stop()
    const segments = join(dirs.a, 'segments')
    const damaged = readdirSync(segments).flatMap(
      (f) => invertAfterMarker(join(segments, f), 'VICTIM', 2, 4).offsets,
    )
    expect(damaged.length).toBeGreaterThan(0)

    a = await start('a')
    const status = (await (await fetch(`${a.httpUrl}/v1/status`)).json()) as {
      incarnation: { mendedBatches: number }
    }
    expect(status.incarnation.mendedBatches).toBe(1)
    const records = a.node.store.read(ref, 0).records
    expect(records.map((r) => r.payload.toString())).toEqual(payloads)
    expect(records.map((r) => r.offset)).toEqual([0, 1, 2, 3, 4, 5])
    const verified = a.node.store.verify()
    expect(verified.gaps).toEqual([])
    expect(verified.corrupt).toEqual([])
    // The damaged original stays in the quarantine for inspection.
    expect(verified.quarantined).toBe(1)
    await publish(a, ['r6'])
    expect(a.node.store.read(ref, 6).records.map((r) => r.payload.toString())).toEqual(['r6'])
    await waitFor(() => copied(b, ref, 7), 'b to copy on past the mended batch')
    expect(b.node.store.verify().quarantined).toBe(0)
    // The mended batch is in the index for good: a restart finds it without asking again.
    await a.stop()
    a = await start('a')
    expect(a.node.store.read(ref, 0).records.map((r) => r.payload.toString())).toEqual([...payloads, 'r6'])
    expect(a.node.store.verify().gaps).toEqual([])
  })
})
