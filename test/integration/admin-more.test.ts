// More of the admin API against real nodes: sink lag and forwarding metrics
// with a real HTTP sink on 127.0.0.1, the bound on live tails, consumer
// groups across a restart and their expiry, the token file, and the
// projected storage endurance.

import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { ConsumerGroups } from '../../src/admin/consumer-groups.ts'
import { HttpReceiver } from '../helpers/http-receiver.ts'
import { Cleanup, waitFor } from '../helpers/integration.ts'
import type { RunningNode } from '../helpers/node.ts'
import { prometheusSamples } from '../helpers/prometheus.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

async function metricsOf(
  running: RunningNode,
  headers: Record<string, string> = {},
): Promise<Map<string, number>> {
  return prometheusSamples(await (await fetch(`${running.httpUrl}/metrics`, { headers })).text())
}

describe('admin API, more', () => {
  test('sink lag and forwarded records as metrics, and in /v1/sinks', async () => {
    const rx = new HttpReceiver()
    await rx.start()
    cleanup.defer('stop the HTTP receiver', () => rx.stop())
    let answer = 503
    rx.answer = () => answer
    const running = await cleanup.node({
      config: {
        streams: [{ name: 'events', match: ['ev/#'] }],
        sinks: [{ name: 'hq', type: 'http', url: rx.url, lingerMs: 10, retry: { initialMs: 20, maxMs: 50 } }],
      },
    })
    const client = await cleanup.mqtt(running.url, { clientId: 'sensor-s' })
    for (let i = 0; i < 5; i++) await client.publishAsync('ev/x', `r${i}`, { qos: 1 })
    const lag = 'tributary_sink_lag_records{sink="hq",stream="events",partition="0"}'
    const retries = 'tributary_sink_retries_total{sink="hq",stream="events",partition="0"}'
    await waitFor(() => rx.posts.length >= 2, 'the sink to retry')
    const down = await metricsOf(running)
    expect(down.get(lag)).toBe(5)
    expect(down.get(retries)).toBeGreaterThan(0)
    expect(
      down.get('tributary_sink_lag_seconds{sink="hq",stream="events",partition="0"}'),
    ).toBeGreaterThanOrEqual(0)

    answer = 200
    await waitFor(() => rx.delivered.length >= 5, 'the sink to deliver')
    let up = await metricsOf(running)
    for (let i = 0; i < 100 && up.get(lag) !== 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      up = await metricsOf(running)
    }
    expect(up.get(lag)).toBe(0)
    expect(up.get('tributary_sink_forwarded_records_total{sink="hq",stream="events",partition="0"}')).toBe(5)
    const sinks = (await (await fetch(`${running.httpUrl}/v1/sinks`)).json()) as {
      sinks: Array<{ sink: string; stream: string; forwarded: number; lagRecords: number }>
    }
    expect(sinks.sinks.find((s) => s.stream === 'events')).toMatchObject({
      sink: 'hq',
      forwarded: 5,
      lagRecords: 0,
    })
  })

  test('live tails are bounded by http.maxTailClients', async () => {
    const running = await cleanup.node({ config: { http: { maxTailClients: 1 } } })
    const abort = new AbortController()
    cleanup.defer('abort the tail', () => abort.abort())
    const first = await fetch(`${running.httpUrl}/v1/streams/default/tail`, { signal: abort.signal })
    expect(first.status).toBe(200)
    const second = await fetch(`${running.httpUrl}/v1/streams/default/tail`)
    expect(second.status).toBe(503)
    expect(await second.json()).toMatchObject({ error: { code: 'TRIB_HTTP_BUSY', retriable: true } })
    abort.abort()
    let third = await fetch(`${running.httpUrl}/v1/streams/nope/tail`)
    expect(third.status).toBe(404)
    // The first tail's slot frees once its connection is gone.
    for (let i = 0; i < 100; i++) {
      const ctl = new AbortController()
      third = await fetch(`${running.httpUrl}/v1/streams/default/tail`, { signal: ctl.signal })
      ctl.abort()
      if (third.status === 200) break
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(third.status).toBe(200)
  })

  test('a tail that reconnects with Last-Event-ID goes on where it was, missing nothing', async () => {
    const running = await cleanup.node({
      config: {
        streams: [{ name: 'multi', match: ['m/+'], partitions: 3, key: { from: 'topic-level', level: 1 } }],
      },
    })
    const client = await cleanup.mqtt(running.url, { clientId: 'sensor-r' })
    const events = async (headers: Record<string, string>, count: number) => {
      const abort = new AbortController()
      cleanup.defer('abort a tail', () => abort.abort())
      const res = await fetch(`${running.httpUrl}/v1/streams/multi/tail`, { headers, signal: abort.signal })
      const reader = res.body?.getReader()
      if (reader === undefined) throw new Error('no body')
      const decoder = new TextDecoder()
      let text = ''
      while (!text.includes('\n\n')) text += decoder.decode((await reader.read()).value, { stream: true })
      return {
        next: async (): Promise<Array<{ id: string; payload: string }>> => {
          const pattern = /id: (\S+)\nevent: record\ndata: (.*)\n\n/g
          while ([...text.matchAll(pattern)].length < count)
            text += decoder.decode((await reader.read()).value, { stream: true })
          abort.abort()
          return [...text.matchAll(pattern)].map((m) => ({
            id: m[1] ?? '',
            payload: (JSON.parse(m[2] ?? '{}') as { payload: string }).payload,
          }))
        },
      }
    }
    const first = await events({}, 3)
    for (const dev of ['a', 'b', 'c']) await client.publishAsync(`m/${dev}`, `one-${dev}`, { qos: 1 })
    const seen = await first.next()
    expect(seen.map((e) => e.payload).sort()).toEqual(['one-a', 'one-b', 'one-c'])
    const lastId = seen.at(-1)?.id ?? ''
    expect(lastId).toMatch(/^0:\d+,1:\d+,2:\d+$/)
    // Published while no tail is connected.
    for (const dev of ['a', 'b', 'c']) await client.publishAsync(`m/${dev}`, `two-${dev}`, { qos: 1 })
    const again = await events({ 'last-event-id': lastId }, 3)
    expect((await again.next()).map((e) => e.payload).sort()).toEqual(['two-a', 'two-b', 'two-c'])
  })

  test('consumer-group offsets and their retention floors survive a restart; idle groups expire', async () => {
    const dataDir = await cleanup.dir()
    const config = { streams: [{ name: 'events', match: ['ev/#'] }] }
    const first = await cleanup.node({ dataDir, config })
    const client = await cleanup.mqtt(first.url, { clientId: 'sensor-g' })
    for (const p of ['a', 'b', 'c', 'd']) await client.publishAsync('ev/x', p, { qos: 1 })
    const commit = await fetch(`${first.httpUrl}/v1/groups/app/offsets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ offsets: [{ stream: 'events', partition: 0, offset: 'latest' }] }),
    })
    expect(await commit.json()).toMatchObject({ offsets: [{ offset: 4 }] })
    const back = await fetch(`${first.httpUrl}/v1/groups/app/offsets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ stream: 'events', partition: 0, timestamp: new Date(0).toISOString() }),
    })
    expect(await back.json()).toMatchObject({ offsets: [{ offset: 0 }] })
    await client.endAsync()
    await first.stop()

    const second = await cleanup.node({
      dataDir,
      config: { ...config, http: { groupExpireAfterMs: 60_000 } },
    })
    expect(await (await fetch(`${second.httpUrl}/v1/groups/app/offsets`)).json()).toMatchObject({
      offsets: [{ stream: 'events', partition: 0, offset: 0, lag: 4 }],
    })
    const everything = () => ({ maxAgeMs: null, maxBytes: 1 })
    const held = await second.node.store.applyRetention(everything, Date.now())
    expect(held.heldBack).toEqual([{ stream: 'events', origin: second.node.nodeId, partition: 0 }])
    expect(held.recordsDeleted).toBe(0)

    // Two minutes on, the group has been silent longer than groupExpireAfterMs: it goes, and its floor.
    const store = second.node.store
    const groups = new ConsumerGroups(store.environment, store, 60_000)
    expect(await groups.expire(Date.now() + 120_000)).toEqual(['app'])
    expect((await fetch(`${second.httpUrl}/v1/groups/app/offsets`)).status).toBe(404)
    expect((await store.applyRetention(everything, Date.now())).recordsDeleted).toBe(4)
  })

  test('the token can come from a file; the endurance projection shows with a rating', async () => {
    const dir = await cleanup.dir()
    const tokenFile = join(dir, 'token')
    await writeFile(tokenFile, 'token-from-a-file-0123\n')
    const running = await cleanup.node({
      config: { http: { tokenFile }, metrics: { storageEnduranceTBW: 40 } },
    })
    expect((await fetch(`${running.httpUrl}/v1/status`)).status).toBe(401)
    const auth = { authorization: 'Bearer token-from-a-file-0123' }
    const client = await cleanup.mqtt(running.url, { clientId: 'sensor-t' })
    for (let i = 0; i < 20; i++) await client.publishAsync('any/topic', 'x'.repeat(1000), { qos: 1 })
    const m = await metricsOf(running, auth)
    expect(m.get('tributary_disk_written_bytes_total')).toBeGreaterThan(0)
    expect(m.get('tributary_storage_endurance_days')).toBeGreaterThan(0)
    const status = (await (await fetch(`${running.httpUrl}/v1/status`, { headers: auth })).json()) as {
      disk: { writtenBytes: number; enduranceDays: number }
    }
    expect(status.disk.writtenBytes).toBeGreaterThan(0)
    expect(status.disk.enduranceDays).toBeGreaterThan(0)
  })

  test('a short token file stops the start', async () => {
    const dir = await cleanup.dir()
    const tokenFile = join(dir, 'token')
    await writeFile(tokenFile, 'short\n')
    await expect(cleanup.node({ config: { http: { tokenFile } } })).rejects.toMatchObject({
      code: 'TRIB_CONFIG_INVALID',
    })
  })
})
