// The ReplicaLog conformance suite: every store that keeps copies of other
// origins' partitions runs it. Two stores stand for two nodes: node-a writes
// its own partition, node-b copies it batch by batch as replication does
// (readBatches on the origin, appendReplica on the follower) and must hold
// the same records at the same offsets, durable, across a reopen, refusing
// anything that is not the next piece of the origin's log.

import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { encodeBatch } from '../../src/log/batch-codec.ts'
import type { AppendEntry, LogStore, PartitionRef, ReplicaLog } from '../../src/log/log-store.ts'
import type { RecordInput } from '../../src/log/record.ts'
import { SegmentLogStore } from '../../src/log/segment-log-store.ts'
import { tempDir } from '../helpers/temp-dir.ts'

type Store = LogStore & ReplicaLog

interface Factory {
  readonly name: string
  readonly create: (dir: string, origin: string) => Store
}

const implementations: Factory[] = [
  {
    name: 'SegmentLogStore',
    create: (dir, origin) => new SegmentLogStore({ dataDir: dir, origin, maxPendingAppends: 10_000 }),
  },
]

function rec(payload: string): RecordInput {
  return {
    key: Buffer.from('k'),
    topic: 't/1',
    payload: Buffer.from(payload),
    headers: [['h', payload]],
    clientId: 'c',
    qos: 1,
    deviceTimeMs: null,
  }
}

function entry(payload: string): AppendEntry {
  return { stream: 's', partition: 0, record: rec(payload) }
}

const ref: PartitionRef = { stream: 's', origin: 'node-a', partition: 0 }

for (const impl of implementations) {
  describe(`${impl.name} as a ReplicaLog`, () => {
    let dirs: Array<Awaited<ReturnType<typeof tempDir>>>
    let origin: Store
    let follower: Store

    beforeEach(async () => {
      dirs = [await tempDir(), await tempDir()]
      origin = impl.create(dirs[0]?.path ?? '', 'node-a')
      follower = impl.create(dirs[1]?.path ?? '', 'node-b')
      await origin.open()
      await follower.open()
      await origin.ensureStream('s', 1)
    })

    afterEach(async () => {
      await origin.close()
      await follower.close()
      for (const dir of dirs) await dir.remove()
    })

    const write = async (...payloads: string[]) => {
      for (const p of payloads) await origin.append({ entries: [entry(p)], durability: 'durable' })
    }
    /** One fetch round: what the follower lacks, as the origin serves it. */
    const copy = async (maxBytes = 1 << 20) => {
      const from = follower.partition(ref)?.nextOffset ?? 0
      const batches = origin.readBatches(ref, from, maxBytes)
      await follower.appendReplica(
        ref,
        batches.map((b) => b.bytes),
      )
      return batches.length
    }
    const payloads = (store: Store) =>
      store.read(ref, 0, { maxRecords: 1000 }).records.map((r) => r.payload.toString())

    it('holds the origin batches byte for byte, at their offsets, readable like any partition', async () => {
      await write('a', 'b', 'c')
      await follower.ensureReplica(ref, 0)
      expect(await copy()).toBe(3)
      expect(payloads(follower)).toEqual(['a', 'b', 'c'])
      expect(follower.read(ref, 0).records).toEqual(origin.read(ref, 0).records)
      expect(follower.partition(ref)).toMatchObject({ origin: 'node-a', firstOffset: 0, nextOffset: 3 })
      expect(follower.durableNext(ref)).toBe(3)
      expect(follower.readBatches(ref, 0, 1 << 20).map((b) => b.bytes)).toEqual(
        origin.readBatches(ref, 0, 1 << 20).map((b) => b.bytes),
      )
      expect(follower.lastBatchBefore(ref, 3)).toEqual(origin.lastBatchBefore(ref, 3))
      expect(follower.localPartitions()).toEqual([])
    })

    it('serves batches from a batch boundary, up to about maxBytes but at least one', async () => {
      await write('a', 'b', 'c', 'd')
      expect(origin.readBatches(ref, 0, 1).map((b) => b.baseOffset)).toEqual([0])
      expect(origin.readBatches(ref, 2, 1 << 20).map((b) => [b.baseOffset, b.recordCount])).toEqual([
        [2, 1],
        [3, 1],
      ])
      expect(origin.readBatches(ref, 4, 1 << 20)).toEqual([])
      expect(origin.lastBatchBefore(ref, 0)).toBeNull()
      expect(origin.lastBatchBefore(ref, 5)).toBeNull()
      expect(origin.lastBatchBefore(ref, 2)).toEqual({ incarnation: 1, crc: expect.any(Number) })
    })

    it('refuses a gap, an overlap, a run that is not consecutive and a damaged batch, storing nothing', async () => {
      await write('a', 'b', 'c')
      await follower.ensureReplica(ref, 0)
      const [b0, b1, b2] = origin.readBatches(ref, 0, 1 << 20).map((b) => b.bytes)
      if (b0 === undefined || b1 === undefined || b2 === undefined) throw new Error('three batches expected')
      await expect(follower.appendReplica(ref, [b1])).rejects.toMatchObject({ code: 'TRIB_REPLICA_GAP' })
      await expect(follower.appendReplica(ref, [b0, b2])).rejects.toMatchObject({ code: 'TRIB_REPLICA_GAP' })
      const flipped = Buffer.from(b0)
      flipped[flipped.length - 1] = (flipped[flipped.length - 1] ?? 0) ^ 0xff
      await expect(follower.appendReplica(ref, [flipped])).rejects.toMatchObject({
        code: 'TRIB_BATCH_CORRUPT',
      })
      await follower.appendReplica(ref, [b0])
      await expect(follower.appendReplica(ref, [b0])).rejects.toMatchObject({ code: 'TRIB_REPLICA_GAP' })
      expect(follower.partition(ref)?.nextOffset).toBe(1)
      await follower.appendReplica(ref, [b1, b2])
      expect(payloads(follower)).toEqual(['a', 'b', 'c'])
    })

    it('never takes a batch for one of its own partitions, nor copies an unknown replica', async () => {
      await follower.ensureStream('s', 1)
      const own = { stream: 's', origin: 'node-b', partition: 0 }
      await expect(follower.ensureReplica(own, 0)).rejects.toMatchObject({ code: 'TRIB_INTERNAL' })
      const batch = encodeBatch(0, [{ ...rec('x'), timestampMs: 1 }], 1)
      await expect(follower.appendReplica(own, [batch])).rejects.toMatchObject({ code: 'TRIB_INTERNAL' })
      await expect(follower.appendReplica(ref, [batch])).rejects.toMatchObject({
        code: 'TRIB_STREAM_UNKNOWN',
      })
    })

    it('keeps the copy across a reopen, and goes on from where it ended', async () => {
      await write('a', 'b')
      await follower.ensureReplica(ref, 0)
      await copy()
      await follower.close()
      follower = impl.create(dirs[1]?.path ?? '', 'node-b')
      await follower.open()
      expect(follower.partition(ref)).toMatchObject({ firstOffset: 0, nextOffset: 2 })
      await write('c')
      await copy()
      expect(payloads(follower)).toEqual(['a', 'b', 'c'])
    })

    it('starts a copy where the origin log starts, and jumps ahead past what the origin deleted', async () => {
      await write('a', 'b', 'c', 'd')
      await follower.ensureReplica(ref, 2)
      const batches = origin.readBatches(ref, 2, 1 << 20)
      await follower.appendReplica(
        ref,
        batches.map((b) => b.bytes),
      )
      expect(follower.partition(ref)).toMatchObject({ firstOffset: 2, nextOffset: 4 })
      expect(payloads(follower)).toEqual(['c', 'd'])
      await write('e', 'f')
      expect(await follower.restartReplica(ref, 5, 'the origin deleted offset 4 before it was copied')).toBe(
        0,
      )
      await follower.appendReplica(
        ref,
        origin.readBatches(ref, 5, 1 << 20).map((b) => b.bytes),
      )
      expect(payloads(follower)).toEqual(['c', 'd', 'f'])
      expect(follower.partition(ref)).toMatchObject({ firstOffset: 2, nextOffset: 6 })
    })

    it('moves a diverged tail to the quarantine and copies the origin version from there', async () => {
      await write('a', 'b')
      await follower.ensureReplica(ref, 0)
      await copy()
      // A batch at offset 2 that the origin never wrote (its tail was lost and rewritten).
      const stray = encodeBatch(2, [{ ...rec('stray'), timestampMs: 5 }], 1)
      await follower.appendReplica(ref, [stray])
      await write('c', 'd')
      expect(follower.lastBatchBefore(ref, 3)?.crc).not.toBe(origin.lastBatchBefore(ref, 3)?.crc)
      expect(await follower.restartReplica(ref, 2, 'diverged from node-a')).toBe(1)
      expect(follower.partition(ref)?.nextOffset).toBe(2)
      await copy()
      expect(payloads(follower)).toEqual(['a', 'b', 'c', 'd'])
      expect(follower.verify()).toMatchObject({ corrupt: [], quarantined: 1 })
      await follower.close()
      follower = impl.create(dirs[1]?.path ?? '', 'node-b')
      await follower.open()
      expect(payloads(follower)).toEqual(['a', 'b', 'c', 'd'])
    })

    it('restarts inside a batch at that batch boundary, never keeping half a batch', async () => {
      await write('a')
      await origin.append({ entries: [entry('b'), entry('c'), entry('d')], durability: 'durable' })
      await follower.ensureReplica(ref, 0)
      await copy()
      expect(await follower.restartReplica(ref, 2, 'diverged inside a batch')).toBe(1)
      expect(follower.partition(ref)).toMatchObject({ firstOffset: 0, nextOffset: 1 })
      expect(payloads(follower)).toEqual(['a'])
      await copy()
      expect(payloads(follower)).toEqual(['a', 'b', 'c', 'd'])
    })

    it('wakes a long poll when records become durable, and times out when none do', async () => {
      const idle = Date.now()
      await origin.nextDurable(50)
      expect(Date.now() - idle).toBeGreaterThanOrEqual(40)
      const waiting = origin.nextDurable(10_000)
      const started = Date.now()
      await write('a')
      await waiting
      expect(Date.now() - started).toBeLessThan(5_000)
    })
  })
}
