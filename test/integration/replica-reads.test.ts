// A partition written by another node is named everywhere this node's own
// can be: the admin API's records, stream, tail and group routes with
// `origin=`, `tributary tail --origin`, `tributary streams`. Replication
// (the cluster issue) will bring such partitions; here they come from the
// simplest real case: a data dir whose node id changed, so the partitions
// written under the old id are another origin's, held here.

import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { Cleanup } from '../helpers/integration.ts'
import { runTributary } from '../helpers/run-bounded.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

const config = { streams: [{ name: 'events', match: ['ev/#'], partitions: 1 }] }

interface RecordsAnswer {
  origin: string
  nextOffset: number
  records: Array<{ offset: number; payload: string }>
}

describe("another origin's partitions", () => {
  test('are read, tailed, committed and listed by naming their origin', async () => {
    const dataDir = await cleanup.dir()
    const first = await cleanup.node({ dataDir, config })
    const client = await cleanup.mqtt(first.url, { clientId: 'sensor-r' })
    for (const payload of ['a', 'b', 'c']) await client.publishAsync('ev/x', payload, { qos: 1 })
    await client.endAsync()
    await first.stop()
    const old = readFileSync(join(dataDir, 'node-id'), 'utf8').trim()
    writeFileSync(join(dataDir, 'node-id'), 'node-b\n')

    const second = await cleanup.node({ dataDir, config })
    expect(second.node.nodeId).toBe('node-b')
    const get = async (path: string) => fetch(`${second.httpUrl}${path}`)
    const own = (await (await get('/v1/streams/events/partitions/0/records')).json()) as RecordsAnswer
    expect(own).toMatchObject({ origin: 'node-b', nextOffset: 0, records: [] })
    const replica = (await (
      await get(`/v1/streams/events/partitions/0/records?origin=${old}`)
    ).json()) as RecordsAnswer
    expect(replica.origin).toBe(old)
    expect(replica.records.map((r) => r.payload)).toEqual(['a', 'b', 'c'])
    const unknown = await get('/v1/streams/events/partitions/0/records?origin=node-z')
    expect(unknown.status).toBe(404)
    expect(await unknown.json()).toMatchObject({ error: { code: 'TRIB_STREAM_UNKNOWN' } })
    expect(await (await get(`/v1/streams/events?origin=${old}`)).json()).toMatchObject({
      name: 'events',
      records: 3,
      partitions: [{ partition: 0, origin: old, nextOffset: 3 }],
    })

    const commit = await fetch(`${second.httpUrl}/v1/groups/app/offsets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ stream: 'events', origin: old, partition: 0, offset: 1 }),
    })
    expect(commit.status).toBe(200)
    const offsets = (await (await get('/v1/groups/app/offsets')).json()) as { offsets: unknown[] }
    expect(offsets.offsets).toEqual([
      expect.objectContaining({ origin: old, partition: 0, offset: 1, lag: 2 }),
    ])
    const fromGroup = (await (
      await get(`/v1/streams/events/partitions/0/records?origin=${old}&group=app`)
    ).json()) as RecordsAnswer
    expect(fromGroup.records.map((r) => r.payload)).toEqual(['b', 'c'])
    // The group's offset is a retention floor on the replica: nothing it has not read goes.
    const held = await second.node.store.applyRetention(() => ({ maxAgeMs: null, maxBytes: 1 }), Date.now())
    expect(held.heldBack).toContainEqual({ stream: 'events', origin: old, partition: 0 })
    const reset = await fetch(`${second.httpUrl}/v1/groups/app/offsets?stream=events&origin=${old}`, {
      method: 'DELETE',
    })
    expect(await reset.json()).toMatchObject({ removed: 1 })
    await second.stop()

    const tail = await runTributary([
      'tail',
      'events',
      '--origin',
      old,
      '--from-beginning',
      '--json',
      '--data-dir',
      dataDir,
    ])
    expect(tail.code, tail.stderr).toBe(0)
    const tailed = tail.stdout
      .trim()
      .split('\n')
      .map((line) => (JSON.parse(line) as { payload: string }).payload)
    // Retention above took offset 0 (below the group's floor), and kept the rest.
    expect(tailed).toEqual(['b', 'c'])
    const streams = await runTributary(['streams', '--data-dir', dataDir])
    expect(streams.code, streams.stderr).toBe(0)
    expect(streams.stdout).toMatch(/^STREAM\s+PARTITION\s+ORIGIN\s+FIRST/)
    expect(streams.stdout).toContain(old)
  })
})
