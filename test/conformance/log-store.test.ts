// The LogStore conformance suite: every implementation runs it, in every
// durability mode (aedes-persistence's abstract.js is the model).

import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { isTributaryError } from '../../src/errors.ts'
import { SegmentLogStore } from '../../src/log/segment-log-store.ts'
import type { AppendEntry, Durability, LogStore } from '../../src/log/log-store.ts'
import type { RecordInput } from '../../src/log/record.ts'
import { tempDir } from '../helpers/temp-dir.ts'

interface Factory {
  readonly name: string
  /** Opens a store on `dir`; the same dir reopens the same data. */
  readonly create: (dir: string, maxPendingAppends?: number) => LogStore
}

const implementations: Factory[] = [
  {
    name: 'SegmentLogStore',
    create: (dir, maxPendingAppends = 10_000) =>
      new SegmentLogStore({ dataDir: dir, origin: 'node-a', maxPendingAppends }),
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
        const { records, nextOffset } = store.read({ stream: 's', partition: 1 }, 0)
        expect(nextOffset).toBe(2)
        expect(records[0]).toMatchObject({ ...record, offset: 0 })
        expect(records[0]?.payload.equals(Buffer.from('hello'))).toBe(true)
        expect(records[1]?.payload.toString()).toBe('again')
        expect(records[0]?.timestampMs).toBe(first?.timestampMs)
      })

      it('keeps call order within a partition across concurrent appends', async () => {
        const all = await Promise.all(Array.from({ length: 200 }, (_, i) => append(entry('s', 0, `m${i}`))))
        expect(all.map(([a]) => a?.offset)).toEqual(Array.from({ length: 200 }, (_, i) => i))
        const { records } = store.read({ stream: 's', partition: 0 }, 0, { maxRecords: 500 })
        expect(records.map((r) => r.payload.toString())).toEqual(
          Array.from({ length: 200 }, (_, i) => `m${i}`),
        )
        const timestamps = records.map((r) => r.timestampMs)
        expect([...timestamps].sort((a, b) => a - b)).toEqual(timestamps)
      })

      it('reads from the middle of a batch and honours record and byte limits', async () => {
        await append(...Array.from({ length: 10 }, (_, i) => entry('s', 0, `r${i}`)))
        const mid = store.read({ stream: 's', partition: 0 }, 4, { maxRecords: 3 })
        expect(mid.records.map((r) => r.offset)).toEqual([4, 5, 6])
        expect(mid.nextOffset).toBe(7)
        const bytes = store.read({ stream: 's', partition: 0 }, 0, { maxBytes: 5 })
        expect(bytes.records.length).toBeGreaterThanOrEqual(1)
        expect(bytes.records.length).toBeLessThan(10)
        const end = store.read({ stream: 's', partition: 0 }, 10)
        expect(end.records).toEqual([])
        expect(end.nextOffset).toBe(10)
      })

      it('finds the first offset at or after a timestamp', async () => {
        const [a] = await append(entry('s', 0, 'a'))
        await new Promise((r) => setTimeout(r, 15))
        const [b] = await append(entry('s', 0, 'b'))
        expect(store.offsetForTimestamp({ stream: 's', partition: 0 }, 0)).toBe(0)
        expect(store.offsetForTimestamp({ stream: 's', partition: 0 }, (a?.timestampMs ?? 0) + 1)).toBe(
          b?.offset,
        )
        expect(store.offsetForTimestamp({ stream: 's', partition: 0 }, (b?.timestampMs ?? 0) + 1)).toBe(2)
      })

      it('finds timestamps across many batches, like a scan would', async () => {
        for (let i = 0; i < 40; i++) {
          await append(...Array.from({ length: 1 + (i % 3) }, (_, j) => entry('s', 2, `b${i}-${j}`)))
          if (i % 4 === 0) await new Promise((r) => setTimeout(r, 2))
        }
        const ref = { stream: 's', partition: 2 }
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
        expect(store.read({ stream: 's', partition: 0 }, 0).records.map((r) => r.payload.toString())).toEqual(
          ['one', 'two', 'three'],
        )
        expect(store.partitions().find((p) => p.partition === 0)).toMatchObject({
          firstOffset: 0,
          nextOffset: 3,
        })
      })

      it('deletes by age and size but never past a retention floor unless forced', async () => {
        for (let i = 0; i < 5; i++) await append(entry('s', 0, 'x'.repeat(100)))
        store.setRetentionFloor('sink-a', { stream: 's', partition: 0 }, 2)
        const held = await store.applyRetention(() => ({ maxAgeMs: 1, maxBytes: null }), Date.now() + 1000)
        expect(held.recordsDeleted).toBe(2)
        expect(held.heldBack).toEqual([{ stream: 's', partition: 0 }])
        expect(store.read({ stream: 's', partition: 0 }, 0).records[0]?.offset).toBe(2)
        store.setRetentionFloor('sink-b', { stream: 's', partition: 0 }, 3)
        store.removeRetentionFloor('sink-a', { stream: 's', partition: 0 })
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
