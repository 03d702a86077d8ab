// The LogStore conformance suite: every implementation runs it, in every
// durability mode (aedes-persistence's abstract.js is the model).

import { appendFileSync, cpSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { open as openHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { isTributaryError } from '../../src/errors.ts'
import { frameIntact, frameLength, stampSegment } from '../../src/log/frame-codec.ts'
import type { AppendEntry, CorruptBatch, Durability, LogStore } from '../../src/log/log-store.ts'
import type { RecordInput } from '../../src/log/record.ts'
import { SegmentLogStore, type SegmentLogStoreOptions } from '../../src/log/segment-log-store.ts'
import { tempDir } from '../helpers/temp-dir.ts'

interface Factory {
  readonly name: string
  /** Opens a store on `dir` as node `origin` (node-a); the same dir reopens the same data. */
  readonly create: (dir: string, maxPendingAppends?: number, origin?: string) => LogStore
}

const implementations: Factory[] = [
  {
    name: 'SegmentLogStore',
    create: (dir, maxPendingAppends = 10_000, origin = 'node-a') =>
      new SegmentLogStore({ dataDir: dir, origin, maxPendingAppends }),
  },
]

function rec(payload: string, extra: Partial<RecordInput> = {}): RecordInput {
  return {
    key: Buffer.from('k1'),
    topic: 'sensors/k1/temp',
    payload: Buffer.from(payload),
    headers: [],
    clientId: 'c1',
    qos: 1,
    deviceTimeMs: null,
    ...extra,
  }
}

function entry(stream: string, partition: number, payload: string): AppendEntry {
  return { stream, partition, record: rec(payload) }
}

for (const impl of implementations) {
  for (const durability of ['durable', 'relaxed'] as Durability[]) {
    describe(`${impl.name} (${durability})`, () => {
      let dir: Awaited<ReturnType<typeof tempDir>>
      let store: LogStore

      const append = (...entries: AppendEntry[]) =>
        store.append({ entries, durability, relaxedFlushMs: 1000 })

      beforeEach(async () => {
        dir = await tempDir()
        store = impl.create(dir.path)
        await store.open()
        await store.ensureStream('s', 3)
      })

      afterEach(async () => {
        await store.close()
        await dir.remove()
      })

      it('assigns dense offsets from 0 per partition and reads every field back', async () => {
        const record = rec('hello', {
          headers: [
            ['a', '1'],
            ['a', '2'],
          ],
          deviceTimeMs: 1_700_000_000_123,
          qos: 2,
          key: null,
        })
        const [first] = await store.append({ entries: [{ stream: 's', partition: 1, record }], durability })
        expect(first?.offset).toBe(0)
        const second = await append(entry('s', 1, 'again'), entry('s', 2, 'other'))
        expect(second.map((a) => [a.partition, a.offset])).toEqual([
          [1, 1],
          [2, 0],
        ])
        const { records, nextOffset } = store.read({ stream: 's', origin: 'node-a', partition: 1 }, 0)
        expect(nextOffset).toBe(2)
        expect(records[0]).toMatchObject({ ...record, offset: 0 })
        expect(records[0]?.payload.equals(Buffer.from('hello'))).toBe(true)
        expect(records[1]?.payload.toString()).toBe('again')
        expect(records[0]?.timestampMs).toBe(first?.timestampMs)
      })

      it('keeps call order within a partition across concurrent appends', async () => {
        const all = await Promise.all(Array.from({ length: 200 }, (_, i) => append(entry('s', 0, `m${i}`))))
        expect(all.map(([a]) => a?.offset)).toEqual(Array.from({ length: 200 }, (_, i) => i))
        const { records } = store.read({ stream: 's', origin: 'node-a', partition: 0 }, 0, {
          maxRecords: 500,
        })
        expect(records.map((r) => r.payload.toString())).toEqual(
          Array.from({ length: 200 }, (_, i) => `m${i}`),
        )
        const timestamps = records.map((r) => r.timestampMs)
        expect([...timestamps].sort((a, b) => a - b)).toEqual(timestamps)
      })

      it('reads from the middle of a batch and honours record and byte limits', async () => {
        await append(...Array.from({ length: 10 }, (_, i) => entry('s', 0, `r${i}`)))
        const mid = store.read({ stream: 's', origin: 'node-a', partition: 0 }, 4, { maxRecords: 3 })
        expect(mid.records.map((r) => r.offset)).toEqual([4, 5, 6])
        expect(mid.nextOffset).toBe(7)
        const bytes = store.read({ stream: 's', origin: 'node-a', partition: 0 }, 0, { maxBytes: 5 })
        expect(bytes.records.length).toBeGreaterThanOrEqual(1)
        expect(bytes.records.length).toBeLessThan(10)
        const end = store.read({ stream: 's', origin: 'node-a', partition: 0 }, 10)
        expect(end.records).toEqual([])
        expect(end.nextOffset).toBe(10)
      })

      it('finds the first offset at or after a timestamp', async () => {
        const [a] = await append(entry('s', 0, 'a'))
        await new Promise((r) => setTimeout(r, 15))
        const [b] = await append(entry('s', 0, 'b'))
        expect(store.offsetForTimestamp({ stream: 's', origin: 'node-a', partition: 0 }, 0)).toBe(0)
        expect(
          store.offsetForTimestamp(
            { stream: 's', origin: 'node-a', partition: 0 },
            (a?.timestampMs ?? 0) + 1,
          ),
        ).toBe(b?.offset)
        expect(
          store.offsetForTimestamp(
            { stream: 's', origin: 'node-a', partition: 0 },
            (b?.timestampMs ?? 0) + 1,
          ),
        ).toBe(2)
      })

      it('finds timestamps across many batches, like a scan would', async () => {
        for (let i = 0; i < 40; i++) {
          await append(...Array.from({ length: 1 + (i % 3) }, (_, j) => entry('s', 2, `b${i}-${j}`)))
          if (i % 4 === 0) await new Promise((r) => setTimeout(r, 2))
        }
        const ref = { stream: 's', origin: 'node-a', partition: 2 }
        const all = store.read(ref, 0, { maxRecords: 1000 }).records
        const times = [...new Set(all.map((r) => r.timestampMs))]
        for (const t of [0, ...times, ...times.map((x) => x + 1), Number.MAX_SAFE_INTEGER]) {
          const expected = all.find((r) => r.timestampMs >= t)?.offset ?? all.length
          expect(store.offsetForTimestamp(ref, t), `time ${t}`).toBe(expected)
        }
      })

      it('writes markers with the records and removes them by prefix', async () => {
        await store.append({
          entries: [entry('s', 0, 'x')],
          durability,
          marker: { key: 'qos2:c1:7', digest: 42 },
        })
        expect(store.marker('qos2:c1:7')).toEqual({ digest: 42, offsets: [['s', 0, 0]] })
        await store.removeMarkers('qos2:c1:')
        expect(store.marker('qos2:c1:7')).toBeUndefined()
      })

      it('keeps everything and continues offsets after reopen', async () => {
        await append(entry('s', 0, 'one'), entry('s', 0, 'two'))
        await store.close()
        store = impl.create(dir.path)
        await store.open()
        const [next] = await append(entry('s', 0, 'three'))
        expect(next?.offset).toBe(2)
        expect(
          store
            .read({ stream: 's', origin: 'node-a', partition: 0 }, 0)
            .records.map((r) => r.payload.toString()),
        ).toEqual(['one', 'two', 'three'])
        expect(store.partitions().find((p) => p.partition === 0)).toMatchObject({
          firstOffset: 0,
          nextOffset: 3,
        })
      })

      it("names another origin's partition (a replica) everywhere it names its own", async () => {
        await append(entry('s', 0, 'a0'))
        await append(entry('s', 0, 'a1'))
        await store.close()
        // The same data opened by node-b: node-a's partitions are another origin's, held here.
        store = impl.create(dir.path, 10_000, 'node-b')
        await store.open()
        const ref = { stream: 's', origin: 'node-a', partition: 0 }
        expect(store.origin).toBe('node-b')
        expect(store.localPartitions()).toEqual([])
        expect(store.partitions().map((p) => [p.origin, p.partition, p.nextOffset])).toEqual([
          ['node-a', 0, 2],
          ['node-a', 1, 0],
          ['node-a', 2, 0],
        ])
        expect(store.partition(ref)).toMatchObject({ firstOffset: 0, nextOffset: 2 })
        expect(store.partition({ ...ref, origin: 'node-b' })).toBeUndefined()
        expect(store.read(ref, 0).records.map((r) => r.payload.toString())).toEqual(['a0', 'a1'])
        expect(store.offsetForTimestamp(ref, 0)).toBe(0)
        store.setRetentionFloor('follower', ref, 1)
        const held = await store.applyRetention(() => ({ maxAgeMs: null, maxBytes: 1 }), Date.now())
        expect(held.heldBack).toEqual([ref])
        expect(store.read(ref, 0).records.map((r) => r.offset)).toEqual([1])
        // Appends go to this node's partitions only; node-b has none of stream s yet.
        await expect(append(entry('s', 0, 'x'))).rejects.toMatchObject({ code: 'TRIB_STREAM_UNKNOWN' })
        expect(() => store.read({ ...ref, origin: 'node-b' }, 0)).toThrow(
          expect.objectContaining({ code: 'TRIB_STREAM_UNKNOWN' }),
        )
        await store.ensureStream('s', 1)
        expect(store.localPartitions().map((p) => [p.origin, p.partition])).toEqual([['node-b', 0]])
      })

      it('deletes by age and size but never past a retention floor unless forced', async () => {
        for (let i = 0; i < 5; i++) await append(entry('s', 0, 'x'.repeat(100)))
        store.setRetentionFloor('sink-a', { stream: 's', origin: 'node-a', partition: 0 }, 2)
        const held = await store.applyRetention(() => ({ maxAgeMs: 1, maxBytes: null }), Date.now() + 1000)
        expect(held.recordsDeleted).toBe(2)
        expect(held.heldBack).toEqual([{ stream: 's', origin: 'node-a', partition: 0 }])
        expect(store.read({ stream: 's', origin: 'node-a', partition: 0 }, 0).records[0]?.offset).toBe(2)
        store.setRetentionFloor('sink-b', { stream: 's', origin: 'node-a', partition: 0 }, 3)
        store.removeRetentionFloor('sink-a', { stream: 's', origin: 'node-a', partition: 0 })
        const released = await store.applyRetention(
          () => ({ maxAgeMs: 1, maxBytes: null }),
          Date.now() + 1000,
        )
        expect(released.recordsDeleted).toBe(1)
        const bySize = await store.applyRetention(() => ({ maxAgeMs: null, maxBytes: 1 }), Date.now(), {
          force: true,
        })
        expect(bySize.recordsDeleted).toBe(2)
        const status = store.partitions().find((p) => p.partition === 0)
        expect(status).toMatchObject({ firstOffset: 5, nextOffset: 5, bytes: 0 })
        const [after] = await append(entry('s', 0, 'new'))
        expect(after?.offset).toBe(5)
      })

      it('verifies a healthy log without findings', async () => {
        await append(entry('s', 0, 'a'), entry('s', 1, 'b'))
        const report = store.verify()
        expect(report).toMatchObject({ corrupt: [], gaps: [], records: 2 })
      })

      it('rejects unknown streams and partitions with stable codes', async () => {
        await expect(append(entry('nope', 0, 'x'))).rejects.toSatisfy((e) =>
          isTributaryError(e, 'TRIB_STREAM_UNKNOWN'),
        )
        await expect(append(entry('s', 9, 'x'))).rejects.toSatisfy((e) =>
          isTributaryError(e, 'TRIB_PARTITION_UNKNOWN'),
        )
      })

      it('rejects appends beyond the pending bound and after close', async () => {
        await store.close()
        store = impl.create(dir.path, 5)
        await store.open()
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, (_, i) => append(entry('s', 0, `${i}`))),
        )
        const rejected = results.filter((r) => r.status === 'rejected')
        expect(rejected.length).toBe(3)
        expect(rejected.every((r) => isTributaryError(r.reason, 'TRIB_APPEND_QUEUE_FULL'))).toBe(true)
        await store.close()
        await store.close()
        await expect(append(entry('s', 0, 'late'))).rejects.toSatisfy((e) =>
          isTributaryError(e, 'TRIB_STORE_CLOSED'),
        )
      })
    })
  }
}

// Segment files with a lazily committed index: what a crash leaves behind.
// A "crash image" is a copy of the data dir taken while the store runs, after
// appends resolved but before the index was committed (the commit interval is
// an hour): the segments hold the frames, LMDB does not index them yet.
for (const durability of ['durable', 'relaxed'] as Durability[]) {
  describe(`SegmentLogStore segments and replay (${durability})`, () => {
    let dir: Awaited<ReturnType<typeof tempDir>>
    const open: SegmentLogStore[] = []
    const damage: Array<[CorruptBatch, string]> = []

    function create(path: string, options: Partial<SegmentLogStoreOptions> = {}): SegmentLogStore {
      const store = new SegmentLogStore({
        dataDir: path,
        origin: 'node-a',
        maxPendingAppends: 10_000,
        indexCommitMs: 3_600_000,
        indexMaxPendingBatches: 1_000_000,
        onCorrupt: (batch, action) => damage.push([batch, action]),
        ...options,
      })
      open.push(store)
      return store
    }

    const append = (store: LogStore, ...entries: AppendEntry[]) =>
      store.append({ entries, durability, relaxedFlushMs: 1000 })

    /** Waits for durability of everything appended, then copies the data dir as a crash would leave it. */
    async function crashImage(store: SegmentLogStore): Promise<string> {
      // A durable append syncs the segment, and with it every frame before it.
      await store.append({ entries: [], durability: 'durable' })
      const image = join(dir.path, `image-${open.length}`)
      cpSync(join(dir.path, 'live'), image, { recursive: true, filter: (src) => !src.endsWith('-lock') })
      return image
    }

    function segmentFiles(path: string): string[] {
      return readdirSync(join(path, 'segments'))
        .filter((f) => f.endsWith('.seg'))
        .map((f) => join(path, 'segments', f))
    }

    const payloads = (store: LogStore, partition = 0) =>
      store
        .read({ stream: 's', origin: 'node-a', partition }, 0, { maxRecords: 10_000 })
        .records.map((r) => r.payload.toString())

    beforeEach(async () => {
      dir = await tempDir()
      damage.length = 0
    })

    afterEach(async () => {
      for (const store of open.splice(0)) await store.close()
      await dir.remove()
    })

    async function liveStore(options: Partial<SegmentLogStoreOptions> = {}): Promise<SegmentLogStore> {
      const store = create(join(dir.path, 'live'), options)
      await store.open()
      await store.ensureStream('s', 2)
      return store
    }

    it('replays frames the index does not hold yet: records, offsets and markers', async () => {
      const live = await liveStore()
      await append(live, entry('s', 0, 'a'), entry('s', 1, 'b'))
      await live.append({ entries: [entry('s', 0, 'c')], durability, marker: { key: 'q2:c1:1', digest: 7 } })
      const image = await crashImage(live)
      const store = create(image)
      const report = await store.open()
      expect(report.quarantined).toEqual([])
      expect(payloads(store)).toEqual(['a', 'c'])
      expect(payloads(store, 1)).toEqual(['b'])
      expect(store.marker('q2:c1:1')).toEqual({ digest: 7, offsets: [['s', 0, 1]] })
      expect(store.partitions().find((p) => p.partition === 0)).toMatchObject({
        firstOffset: 0,
        nextOffset: 2,
      })
      const [next] = await append(store, entry('s', 0, 'd'))
      expect(next?.offset).toBe(2)
      expect(store.verify()).toMatchObject({ corrupt: [], gaps: [], records: 4 })
    })

    it('keeps marker puts and removals in call order, before and after replay', async () => {
      const live = await liveStore()
      const put = (key: string, digest: number) =>
        live.append({ entries: [entry('s', 0, key)], durability, marker: { key, digest } })
      await put('q2\u0000c1\u00001\u0000', 1)
      await put('q2\u0000c1\u00002\u0000', 2)
      await put('q2\u0000c2\u00001\u0000', 4)
      await live.removeMarkers('q2\u0000c1\u0000')
      await put('q2\u0000c1\u00002\u0000', 3)
      const check = (store: LogStore) => {
        expect(store.marker('q2\u0000c1\u00001\u0000')).toBeUndefined()
        expect(store.marker('q2\u0000c1\u00002\u0000')?.digest).toBe(3)
        expect(store.marker('q2\u0000c2\u00001\u0000')?.digest).toBe(4)
      }
      check(live)
      const image = await crashImage(live)
      const store = create(image)
      await store.open()
      check(store)
      await store.close()
      const again = create(image)
      await again.open()
      check(again)
      await again.removeMarkers('q2\u0000c2\u0000')
      expect(again.marker('q2\u0000c2\u00001\u0000')).toBeUndefined()
    })

    /** Node's FileHandle prototype, whose `datasync` the fdatasync tests replace (and put back). */
    async function fileHandleProto(): Promise<{ datasync: () => Promise<void> }> {
      const probe = await openHandle(join(dir.path, 'probe'), 'w')
      await probe.close()
      return Object.getPrototypeOf(probe) as { datasync: () => Promise<void> }
    }

    it('does not ack a frame whose fdatasync failed, and moves on to a new segment', async () => {
      const live = await liveStore()
      await append(live, entry('s', 0, 'a'))
      const proto = await fileHandleProto()
      const datasync = proto.datasync
      proto.datasync = () =>
        Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }))
      try {
        await expect(live.append({ entries: [entry('s', 0, 'b')], durability: 'durable' })).rejects.toSatisfy(
          (e) => isTributaryError(e, 'TRIB_STORE_WRITE_FAILED'),
        )
      } finally {
        proto.datasync = datasync
      }
      const [c] = await live.append({ entries: [entry('s', 0, 'c')], durability: 'durable' })
      expect(c?.offset, 'the unacknowledged offset is not given out again').toBe(2)
      expect(segmentFiles(join(dir.path, 'live'))).toHaveLength(2)
      const payloadsRead = payloads(live)
      expect(payloadsRead[0]).toBe('a')
      expect(payloadsRead.at(-1)).toBe('c')
    })

    it('does not ack a frame written while a failing fdatasync ran, though the next sync succeeds', async () => {
      const live = await liveStore()
      await append(live, entry('s', 0, 'a'))
      const proto = await fileHandleProto()
      const datasync = proto.datasync
      let calls = 0
      proto.datasync = function (this: unknown) {
        calls++
        if (calls > 1) return datasync.call(this)
        return new Promise<void>((_, reject) =>
          setTimeout(
            () => reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })),
            100,
          ),
        )
      }
      try {
        const b = live.append({ entries: [entry('s', 0, 'b')], durability: 'durable' })
        await new Promise((resolve) => setTimeout(resolve, 30))
        const c = live.append({ entries: [entry('s', 0, 'c')], durability: 'durable' })
        const failed = (e: unknown) => isTributaryError(e, 'TRIB_STORE_WRITE_FAILED')
        await expect(b).rejects.toSatisfy(failed)
        await expect(c, 'written into the suspect segment before the failure was known').rejects.toSatisfy(
          failed,
        )
        expect(calls, 'a second fdatasync ran, and succeeded').toBeGreaterThanOrEqual(2)
      } finally {
        proto.datasync = datasync
      }
      const [d] = await live.append({ entries: [entry('s', 0, 'd')], durability: 'durable' })
      expect(d?.offset).toBe(3)
      expect(segmentFiles(join(dir.path, 'live'))).toHaveLength(2)
    })

    it('cuts off a torn frame at the end of the last segment, unreported', async () => {
      const live = await liveStore()
      await append(live, entry('s', 0, 'kept'))
      const image = await crashImage(live)
      const [file] = segmentFiles(image)
      const goodSize = statSync(file ?? '').size
      // The start of a frame (its magic and version) whose rest never reached the disk.
      appendFileSync(file ?? '', Buffer.from('5452465201000000', 'hex'))
      const store = create(image)
      await store.open()
      expect(statSync(file ?? '').size).toBe(goodSize)
      expect(damage).toEqual([])
      await append(store, entry('s', 0, 'after'))
      expect(payloads(store)).toEqual(['kept', 'after'])
    })

    it('never replays an intact frame written for another segment (a file used before)', async () => {
      const live = await liveStore()
      await append(live, entry('s', 0, 'ours'))
      const image = await crashImage(live)
      const [file] = segmentFiles(image)
      const bytes = readFileSync(file ?? '')
      const stale = Buffer.from(bytes.subarray(0, frameLength(bytes) ?? 0))
      stampSegment(stale, 99)
      expect(frameIntact(stale)).toBe(true)
      appendFileSync(file ?? '', stale)
      const store = create(image)
      await store.open()
      expect(damage).toEqual([])
      expect(payloads(store)).toEqual(['ours'])
      expect(statSync(file ?? '').size).toBe(bytes.length)
    })

    it('quarantines a damaged batch followed by good frames, reports it and starts', async () => {
      const live = await liveStore()
      await append(live, entry('s', 0, 'first'))
      await append(live, entry('s', 0, 'VICTIM-payload'))
      await append(live, entry('s', 0, 'third'))
      const image = await crashImage(live)
      const [file] = segmentFiles(image)
      const bytes = readFileSync(file ?? '')
      const at = bytes.indexOf('VICTIM')
      bytes[at] = (bytes[at] ?? 0) ^ 0xff
      writeFileSync(file ?? '', bytes)
      const store = create(image)
      const report = await store.open()
      expect(report.quarantined).toEqual([
        expect.objectContaining({ stream: 's', partition: 0, baseOffset: 1, recordCount: 1 }),
      ])
      expect(damage.map(([d, action]) => [d.baseOffset, action])).toEqual([[1, 'quarantined']])
      expect(payloads(store)).toEqual(['first', 'third'])
      expect(store.verify()).toMatchObject({
        corrupt: [],
        quarantined: 1,
        gaps: [{ stream: 's', partition: 0, from: 1, to: 1 }],
      })
    })

    it('reports records lost with an unreadable frame as the gap before the next good batch', async () => {
      const live = await liveStore()
      await append(live, entry('s', 0, 'first'))
      await append(live, entry('s', 0, 'lost'))
      await append(live, entry('s', 0, 'third'))
      const image = await crashImage(live)
      const [file] = segmentFiles(image)
      const bytes = readFileSync(file ?? '')
      const second = bytes.indexOf(Buffer.from('TRFR'), bytes.indexOf(Buffer.from('TRFR')) + 1)
      bytes.fill(0, second, second + 13)
      writeFileSync(file ?? '', bytes)
      const store = create(image)
      await store.open()
      expect(damage.map(([d, action]) => [d.baseOffset, d.recordCount, action])).toEqual([
        [1, 1, 'quarantined'],
      ])
      expect(payloads(store)).toEqual(['first', 'third'])
    })

    it('rolls segments at the configured size and reads across them, also after reopen', async () => {
      const live = await liveStore({ segmentBytes: 1024 })
      for (let i = 0; i < 40; i++) await append(live, entry('s', i % 2, `m${i}-${'x'.repeat(60)}`))
      const files = segmentFiles(join(dir.path, 'live'))
      expect(files.length).toBeGreaterThan(3)
      for (const f of files) expect(statSync(f).size).toBeLessThanOrEqual(1024)
      const image = await crashImage(live)
      const store = create(image, { segmentBytes: 1024 })
      await store.open()
      const expected = Array.from({ length: 20 }, (_, i) => `m${i * 2}-${'x'.repeat(60)}`)
      expect(payloads(store)).toEqual(expected)
      expect(payloads(live)).toEqual(expected)
      expect(store.verify()).toMatchObject({ corrupt: [], gaps: [], records: 40 })
    })

    it('deletes whole segment files once retention removed every batch in them', async () => {
      const live = await liveStore({ segmentBytes: 1024 })
      for (let i = 0; i < 40; i++) await append(live, entry('s', 0, `m${i}-${'x'.repeat(60)}`))
      const before = segmentFiles(join(dir.path, 'live')).length
      const status = live.partitions().find((p) => p.partition === 0)
      const report = await live.applyRetention(
        () => ({ maxAgeMs: null, maxBytes: Math.floor((status?.bytes ?? 0) / 4) }),
        Date.now(),
      )
      expect(report.recordsDeleted).toBeGreaterThan(20)
      expect(report.bytesDeleted).toBeGreaterThan(0)
      const after = segmentFiles(join(dir.path, 'live')).length
      expect(after).toBeLessThan(before)
      const first = live.partitions().find((p) => p.partition === 0)?.firstOffset ?? 0
      expect(first).toBe(report.recordsDeleted)
      const left = live.read({ stream: 's', origin: 'node-a', partition: 0 }, 0, { maxRecords: 100 })
      expect(left.records[0]?.offset).toBe(first)
      expect(left.corrupt).toEqual([])
      await live.close()
      const reopened = create(join(dir.path, 'live'), { segmentBytes: 1024 })
      await reopened.open()
      expect(reopened.verify()).toMatchObject({ corrupt: [], gaps: [], records: 40 - report.recordsDeleted })
    })

    it('lets a read-only opener see acknowledged records the index does not hold yet', async () => {
      const live = await liveStore()
      await append(live, entry('s', 0, 'one'))
      const reader = create(join(dir.path, 'live'), { readOnly: true })
      await reader.open()
      expect(payloads(reader)).toEqual(['one'])
      await append(live, entry('s', 0, 'two'))
      await live.append({ entries: [], durability: 'durable' })
      reader.refresh()
      expect(payloads(reader)).toEqual(['one', 'two'])
      expect(reader.partitions().find((p) => p.partition === 0)?.nextOffset).toBe(2)
    })
  })
}

// What may leave the node: a read with durableOnly stops before records whose
// write has not been fdatasync'd yet (relaxed appends resolve before it).
describe('SegmentLogStore durable reads', () => {
  it('durableOnly hides records written but not yet synced, and shows them once synced', async () => {
    const dir = await tempDir()
    const store = new SegmentLogStore({
      dataDir: dir.path,
      origin: 'node-a',
      maxPendingAppends: 100,
      indexCommitMs: 3_600_000,
      indexMaxPendingBatches: 1_000_000,
    })
    try {
      await store.open()
      await store.ensureStream('s', 1)
      const read = (durableOnly: boolean) =>
        store
          .read({ stream: 's', origin: 'node-a', partition: 0 }, 0, { durableOnly })
          .records.map((r) => r.payload.toString())
      await store.append({ entries: [entry('s', 0, 'a')], durability: 'durable' })
      await store.append({ entries: [entry('s', 0, 'b')], durability: 'relaxed', relaxedFlushMs: 60_000 })
      expect(read(false)).toEqual(['a', 'b'])
      expect(read(true)).toEqual(['a'])
      expect(
        store.read({ stream: 's', origin: 'node-a', partition: 0 }, 0, { durableOnly: true }).nextOffset,
      ).toBe(1)
      // A durable append syncs the segment, and with it every frame before it.
      await store.append({ entries: [], durability: 'durable' })
      expect(read(true)).toEqual(['a', 'b'])
    } finally {
      await store.close()
      await dir.remove()
    }
  })
})
