// SegmentLogStore.repairBatch: a batch of the node's own, quarantined at
// open (damaged on disk), is put back into its hole from an intact copy of
// the same bytes; anything that is not exactly a hole is refused. A repair
// written after the last index commit is found again by the replay.

import { cpSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { AppendEntry } from '../../src/log/log-store.ts'
import { SegmentLogStore } from '../../src/log/segment-log-store.ts'
import { invertAfterMarker } from '../helpers/damage-file.ts'
import { Cleanup } from '../helpers/integration.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

const ref = { stream: 's', origin: 'node-a', partition: 0 }
const RECORD = { key: null, topic: 't', headers: [], clientId: 'c', qos: 1 as const, deviceTimeMs: null }

function entry(payload: string): AppendEntry {
  return { stream: 's', partition: 0, record: { ...RECORD, payload: Buffer.from(payload) } }
}

async function open(dir: string): Promise<SegmentLogStore> {
  const store = new SegmentLogStore({ dataDir: dir, origin: 'node-a', maxPendingAppends: 1000 })
  await store.open()
  cleanup.defer(`close store ${dir}`, () => store.close())
  return store
}

/** A store with four batches whose second is damaged on disk, reopened (so it is quarantined), and the intact bytes. */
async function storeWithHole(): Promise<{ dir: string; store: SegmentLogStore; intact: Buffer }> {
  const dir = await cleanup.dir()
  const first = await open(dir)
  await first.ensureStream('s', 1)
  for (const payload of ['r0', 'VICTIM-r1', 'r2', 'r3'])
    await first.append({ entries: [entry(payload)], durability: 'durable' })
  const [intact] = first.readBatches(ref, 1, 1)
  await first.close()
  const segments = join(dir, 'segments')
  for (const file of readdirSync(segments)) invertAfterMarker(join(segments, file), 'VICTIM', 2, 4)
  const store = await open(dir)
  expect(store.verify().gaps).toEqual([{ ...ref, from: 1, to: 1 }])
  if (intact === undefined) throw new Error('no batch at offset 1')
  return { dir, store, intact: intact.bytes }
}

const payloads = (store: SegmentLogStore) => store.read(ref, 0).records.map((r) => r.payload.toString())

describe('repairBatch', () => {
  it('puts a quarantined batch back into its hole, for good', async () => {
    const { dir, store, intact } = await storeWithHole()
    await store.repairBatch(ref, intact)
    expect(payloads(store)).toEqual(['r0', 'VICTIM-r1', 'r2', 'r3'])
    expect(store.verify().gaps).toEqual([])
    await store.append({ entries: [entry('r4')], durability: 'durable' })
    await store.close()
    const again = await open(dir)
    expect(payloads(again)).toEqual(['r0', 'VICTIM-r1', 'r2', 'r3', 'r4'])
  })

  it('refuses a batch that is not exactly a hole', async () => {
    const { store, intact } = await storeWithHole()
    const [present] = store.readBatches(ref, 2, 1)
    if (present === undefined) throw new Error('no batch at offset 2')
    await expect(store.repairBatch(ref, present.bytes)).rejects.toMatchObject({ code: 'TRIB_REPAIR_REFUSED' })
    const damaged = Buffer.from(intact)
    damaged[damaged.length - 1] = (damaged[damaged.length - 1] ?? 0) ^ 1
    await expect(store.repairBatch(ref, damaged)).rejects.toMatchObject({ code: 'TRIB_BATCH_CORRUPT' })
    expect(store.verify().gaps).toEqual([{ ...ref, from: 1, to: 1 }])
  })

  it('a repair the index missed (a crash before its commit) is found by the replay', async () => {
    const { dir, store, intact } = await storeWithHole()
    await store.close()
    // The index as it was before the repair: the repair's frame is past its segment position.
    const before = await cleanup.dir()
    cpSync(join(dir, 'log.mdb'), join(before, 'log.mdb'))
    const repairing = await open(dir)
    await repairing.repairBatch(ref, intact)
    await repairing.close()
    rmSync(join(dir, 'log.mdb'))
    cpSync(join(before, 'log.mdb'), join(dir, 'log.mdb'))
    const replayed = await open(dir)
    expect(payloads(replayed)).toEqual(['r0', 'VICTIM-r1', 'r2', 'r3'])
    expect(replayed.verify().gaps).toEqual([])
  })
})
