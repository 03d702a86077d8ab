// The admin and consumer HTTP API of a real node (MQTT on 127.0.0.1:0, the
// API on 127.0.0.1:0): through fastify's inject() and over a real socket.
// Records come in over MQTT with mqtt.js, as a sensor would send them.

import type { MqttClient } from 'mqtt'
import { afterEach, describe, expect, test } from 'vitest'
import { Cleanup, WAIT_MS, withTimeout } from '../helpers/integration.ts'
import type { RunningNode } from '../helpers/node.ts'
import { prometheusSamples } from '../helpers/prometheus.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

const STREAMS = {
  streams: [
    {
      name: 'temps',
      match: ['sensors/+/temperature'],
      partitions: 2,
      key: { from: 'topic-level', level: 1 },
    },
  ],
}

async function publishAll(
  client: MqttClient,
  topic: string,
  payloads: Array<string | Buffer>,
): Promise<void> {
  // One at a time: each publish is its own group commit, so its own batch.
  for (const payload of payloads) await client.publishAsync(topic, payload, { qos: 1 })
}

function inject(running: RunningNode) {
  const admin = running.node.admin
  if (admin === null) throw new Error('admin API not started')
  return admin.app.inject.bind(admin.app)
}

describe('admin API', () => {
  test('health, readiness, streams and records over inject()', async () => {
    const running = await cleanup.node({ config: STREAMS })
    const client = await cleanup.mqtt(running.url, { clientId: 'sensor-a' })
    await publishAll(client, 'sensors/dev-1/temperature', [
      '{"c":1}',
      '{"c":2}',
      Buffer.from([0xff, 0x00, 0xfe]),
    ])
    const api = inject(running)

    expect((await api({ url: '/healthz' })).json()).toEqual({ status: 'alive', nodeId: running.node.nodeId })
    const ready = await api({ url: '/readyz' })
    expect(ready.statusCode).toBe(200)
    expect(ready.json()).toEqual({ ready: true, checks: { mqtt: true, store: true, disk: true } })

    const streams = (await api({ url: '/v1/streams' })).json() as {
      streams: Array<{
        name: string
        records: number
        partitions: Array<{ partition: number; records: number }>
      }>
    }
    const temps = streams.streams.find((s) => s.name === 'temps')
    expect(temps?.records).toBe(3)
    expect(temps?.partitions.map((p) => p.partition)).toEqual([0, 1])
    const partition = temps?.partitions.find((p) => p.records === 3)?.partition ?? -1

    const read = await api({ url: `/v1/streams/temps/partitions/${partition}/records?offset=0&maxRecords=2` })
    expect(read.statusCode).toBe(200)
    const body = read.json() as {
      records: Array<{ offset: number; payload: string; payloadEncoding: string; key: string; topic: string }>
      nextFetchOffset: number
      nextOffset: number
    }
    expect(body.records.map((r) => [r.offset, r.payload, r.key])).toEqual([
      [0, '{"c":1}', 'dev-1'],
      [1, '{"c":2}', 'dev-1'],
    ])
    expect(body.nextFetchOffset).toBe(2)
    expect(body.nextOffset).toBe(3)

    const rest = (
      await api({ url: `/v1/streams/temps/partitions/${partition}/records?offset=2` })
    ).json() as typeof body
    expect(rest.records[0]).toMatchObject({ offset: 2, payloadEncoding: 'base64', payload: '/wD+' })

    const b64 = (
      await api({ url: `/v1/streams/temps/partitions/${partition}/records?offset=earliest&encoding=base64` })
    ).json() as typeof body
    expect(Buffer.from(b64.records[0]?.payload ?? '', 'base64').toString()).toBe('{"c":1}')
    expect(b64.records[0]?.payloadEncoding).toBe('base64')

    const future = await api({
      url: `/v1/streams/temps/partitions/${partition}/records?timestamp=${new Date(Date.now() + 60_000).toISOString()}`,
    })
    expect((future.json() as typeof body).records).toEqual([])

    const beyond = await api({ url: `/v1/streams/temps/partitions/${partition}/records?offset=99` })
    expect(beyond.statusCode).toBe(416)
    expect(beyond.json()).toMatchObject({
      error: { code: 'TRIB_OFFSET_OUT_OF_RANGE', firstOffset: 0, nextOffset: 3 },
    })

    const unknown = await api({ url: '/v1/streams/nope/partitions/0/records' })
    expect(unknown.statusCode).toBe(404)
    expect(unknown.json()).toMatchObject({ error: { code: 'TRIB_STREAM_UNKNOWN', retriable: false } })
    expect((await api({ url: '/v1/streams/temps/partitions/7/records' })).json()).toMatchObject({
      error: { code: 'TRIB_PARTITION_UNKNOWN' },
    })
    const bad = await api({ url: '/v1/streams/temps/partitions/0/records?maxRecords=0' })
    expect(bad.statusCode).toBe(400)
    expect(bad.json()).toMatchObject({ error: { code: 'TRIB_HTTP_BAD_REQUEST' } })
    expect((await api({ url: '/v2/nothing' })).json()).toMatchObject({
      error: { code: 'TRIB_HTTP_NOT_FOUND' },
    })
  })

  test('status and sinks over a real socket', async () => {
    const running = await cleanup.node({ config: STREAMS })
    const client = await cleanup.mqtt(running.url, { clientId: 'sensor-b' })
    await publishAll(client, 'sensors/dev-2/temperature', ['1', '2'])
    const res = await fetch(`${running.httpUrl}/v1/status`)
    expect(res.status).toBe(200)
    const status = (await res.json()) as {
      nodeId: string
      health: { ready: boolean }
      mqtt: { connections: number }
      streams: Array<{ name: string; records: number }>
      sinks: unknown[]
      disk: { usedPercent: number; full: boolean; highWaterPercent: number; storedBytes: number }
    }
    expect(status.nodeId).toBe(running.node.nodeId)
    expect(status.health.ready).toBe(true)
    expect(status.mqtt.connections).toBe(1)
    expect(status.streams.find((s) => s.name === 'temps')?.records).toBe(2)
    expect(status.sinks).toEqual([])
    expect(status.disk.full).toBe(false)
    expect(status.disk.highWaterPercent).toBe(95)
    expect(status.disk.storedBytes).toBeGreaterThan(0)
    expect(await (await fetch(`${running.httpUrl}/v1/sinks`)).json()).toEqual({ sinks: [] })
  })

  test('consumer groups: commit, fetch from the committed offset, and a retention floor', async () => {
    const running = await cleanup.node({ config: { streams: [{ name: 'events', match: ['ev/#'] }] } })
    const client = await cleanup.mqtt(running.url, { clientId: 'sensor-c' })
    await publishAll(client, 'ev/x', ['a', 'b', 'c', 'd', 'e'])
    const api = inject(running)

    expect((await api({ url: '/v1/groups/app/offsets' })).json()).toMatchObject({
      error: { code: 'TRIB_GROUP_UNKNOWN' },
    })
    const commit = await api({
      method: 'POST',
      url: '/v1/groups/app/offsets',
      payload: { stream: 'events', partition: 0, offset: 3 },
    })
    expect(commit.statusCode).toBe(200)
    expect(commit.json()).toMatchObject({
      group: 'app',
      offsets: [{ stream: 'events', partition: 0, offset: 3 }],
    })
    const got = (await api({ url: '/v1/groups/app/offsets' })).json() as {
      offsets: Array<{ offset: number; lag: number }>
    }
    expect(got.offsets).toEqual([
      expect.objectContaining({ stream: 'events', partition: 0, offset: 3, lag: 2 }),
    ])
    expect((await api({ url: '/v1/groups' })).json()).toMatchObject({
      groups: [{ group: 'app', partitions: 1 }],
    })

    const fromGroup = (await api({ url: '/v1/streams/events/partitions/0/records?group=app' })).json() as {
      records: Array<{ payload: string }>
    }
    expect(fromGroup.records.map((r) => r.payload)).toEqual(['d', 'e'])

    // Retention that would delete everything keeps what the group has not read.
    const everything = () => ({ maxAgeMs: null, maxBytes: 1 })
    const held = await running.node.store.applyRetention(everything, Date.now())
    expect(held.heldBack).toEqual([{ stream: 'events', origin: running.node.nodeId, partition: 0 }])
    const partition = () => running.node.store.partitions().find((p) => p.stream === 'events')
    expect(partition()?.firstOffset).toBe(3)

    expect(
      (
        await api({
          method: 'POST',
          url: '/v1/groups/app/offsets',
          payload: { stream: 'events', partition: 0, offset: 9 },
        })
      ).json(),
    ).toMatchObject({ error: { code: 'TRIB_OFFSET_OUT_OF_RANGE' } })
    expect(
      (
        await api({
          method: 'POST',
          url: '/v1/groups/app/offsets',
          payload: { stream: 'events', partition: 0 },
        })
      ).json(),
    ).toMatchObject({ error: { code: 'TRIB_HTTP_BAD_REQUEST' } })

    const reset = await api({ method: 'DELETE', url: '/v1/groups/app/offsets' })
    expect(reset.json()).toEqual({ group: 'app', removed: 1 })
    await running.node.store.applyRetention(everything, Date.now())
    expect(partition()?.firstOffset).toBe(5)
  })

  test('live tail over Server-Sent Events gets a record published after it connected', async () => {
    const running = await cleanup.node({ config: STREAMS })
    const client = await cleanup.mqtt(running.url, { clientId: 'sensor-d' })
    await publishAll(client, 'sensors/dev-3/temperature', ['before'])
    const abort = new AbortController()
    cleanup.defer('abort the tail', () => abort.abort())
    const res = await fetch(`${running.httpUrl}/v1/streams/temps/tail`, { signal: abort.signal })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const reader = res.body?.getReader()
    if (reader === undefined) throw new Error('no body')
    const decoder = new TextDecoder()
    let text = ''
    // The first comment line says the tail is set up; only then publish.
    while (!text.includes('\n\n')) text += decoder.decode((await reader.read()).value, { stream: true })
    await publishAll(client, 'sensors/dev-3/temperature', ['after'])
    const event = await withTimeout(
      (async () => {
        while (!text.includes('event: record'))
          text += decoder.decode((await reader.read()).value, { stream: true })
        while (!/event: record\ndata: .*\n\n/.test(text))
          text += decoder.decode((await reader.read()).value, { stream: true })
        return /event: record\ndata: (.*)\n\n/.exec(text)?.[1] ?? ''
      })(),
      WAIT_MS,
      'a record on the tail',
    )
    const record = JSON.parse(event) as { payload: string; stream: string; key: string }
    expect(record).toMatchObject({ payload: 'after', stream: 'temps', key: 'dev-3' })
    expect(text).not.toContain('before')
    abort.abort()
  })

  test('metrics are there and move under load', async () => {
    const running = await cleanup.node({ config: STREAMS })
    const client = await cleanup.mqtt(running.url, { clientId: 'sensor-e' })
    const scrape = async (): Promise<Map<string, number>> => {
      const res = await fetch(`${running.httpUrl}/metrics`)
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/)
      return prometheusSamples(await res.text())
    }
    await publishAll(client, 'sensors/dev-4/temperature', ['warm-up'])
    const before = await scrape()
    const payloads = Array.from({ length: 200 }, (_, i) => `{"i":${i}}`)
    await Promise.all(payloads.map((p) => client.publishAsync('sensors/dev-4/temperature', p, { qos: 1 })))
    const after = await scrape()
    const delta = (name: string): number => (after.get(name) ?? 0) - (before.get(name) ?? 0)

    expect(delta('tributary_ingest_records_total{stream="temps"}')).toBe(200)
    expect(delta('tributary_ack_latency_seconds_count{qos="1"}')).toBe(200)
    expect(delta('tributary_commit_records_sum')).toBe(200)
    expect(delta('tributary_commit_records_count')).toBeGreaterThan(0)
    expect(delta('tributary_fsync_seconds_count')).toBeGreaterThan(0)
    expect(delta('tributary_stored_bytes')).toBeGreaterThan(0)
    expect(after.get('tributary_mqtt_connections')).toBe(1)
    expect(after.get('tributary_disk_full')).toBe(0)
    expect(after.get('tributary_disk_used_ratio')).toBeGreaterThan(0)
    expect(after.has('tributary_disk_written_bytes_total')).toBe(true)
    expect(after.has('process_resident_memory_bytes')).toBe(true)
    const nexts = [...after].filter(([k]) => k.startsWith('tributary_partition_next_offset{stream="temps"'))
    expect(nexts.reduce((sum, [, v]) => sum + v, 0)).toBe(201)
  })

  test('a refused publish is counted by its code', async () => {
    const running = await cleanup.node({ config: { ...STREAMS, limits: { maxPayloadBytes: 16 } } })
    const client = await cleanup.mqtt(running.url, { clientId: 'sensor-f', protocolVersion: 5 })
    await client.publishAsync('sensors/dev-5/temperature', 'x'.repeat(64), { qos: 1 }).catch(() => undefined)
    const text = await (await fetch(`${running.httpUrl}/metrics`)).text()
    expect(
      prometheusSamples(text).get('tributary_publishes_refused_total{code="TRIB_PAYLOAD_TOO_LARGE"}'),
    ).toBe(1)
  })
})

describe('admin API while draining', () => {
  test('readyz turns 503 TRIB_NOT_READY once the node stops accepting', async () => {
    const running = await cleanup.node()
    await running.node.drain()
    const res = await inject(running)({ url: '/readyz' })
    expect(res.statusCode).toBe(503)
    expect(res.json()).toMatchObject({
      ready: false,
      checks: { mqtt: false, store: true, disk: true },
      error: { code: 'TRIB_NOT_READY', retriable: true },
    })
    expect((await inject(running)({ url: '/healthz' })).statusCode).toBe(200)
  })
})

describe('admin API auth', () => {
  const TOKEN = 'a-long-enough-test-token'

  test('with a token, everything but /healthz needs it', async () => {
    const running = await cleanup.node({ config: { http: { token: TOKEN } } })
    const base = running.httpUrl ?? ''
    expect((await fetch(`${base}/healthz`)).status).toBe(200)
    for (const path of ['/readyz', '/metrics', '/v1/streams', '/v1/status']) {
      const denied = await fetch(`${base}${path}`)
      expect(denied.status).toBe(401)
      expect(denied.headers.get('www-authenticate')).toBe('Bearer')
      expect(await denied.json()).toMatchObject({ error: { code: 'TRIB_HTTP_UNAUTHORIZED' } })
      const wrong = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${TOKEN}x` } })
      expect(wrong.status).toBe(401)
      const ok = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })
      expect(ok.status).toBe(200)
    }
  })

  test('http.port null runs the node without the API', async () => {
    const running = await cleanup.node({ config: { http: { port: null } } })
    expect(running.httpUrl).toBeNull()
    expect(running.node.admin).toBeNull()
  })
})
