// The HTTP sink against a real local receiver: what arrives (records, keys,
// headers, order per partition, idempotency keys), an uplink outage, a poison
// record, a receiver that accepts connections but never answers, a restart.

import { afterEach, describe, expect, it } from 'vitest'
import { DEAD_LETTER_HEADER } from '../../src/upstream/dead-letter.ts'
import { runCli } from '../helpers/child.ts'
import { HttpReceiver } from '../helpers/http-receiver.ts'
import { Cleanup, readAll, waitFor } from '../helpers/integration.ts'
import { makeTestCerts } from '../helpers/test-certs.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

async function receiver(): Promise<HttpReceiver> {
  const r = new HttpReceiver()
  await r.start()
  cleanup.defer('stop receiver', () => r.stop())
  return r
}

function streamsWithSink(url: string, sink: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    streams: [
      { name: 'sensors', match: ['sensors/#'], partitions: 2, key: { from: 'topic-level', level: 1 } },
    ],
    sinks: [{ name: 'hq', type: 'http', url, lingerMs: 20, retry: { initialMs: 50, maxMs: 200 }, ...sink }],
  }
}

async function publish(url: string, count: number, payload: (i: number) => string = (i) => `m${i}`) {
  const client = await cleanup.mqtt(url, { protocolVersion: 5 })
  for (let i = 0; i < count; i++) {
    await client.publishAsync(`sensors/dev${i % 5}/temp`, payload(i), {
      qos: 1,
      properties: { userProperties: { unit: 'C' } },
    })
  }
  return client
}

describe('HTTP sink', () => {
  it('forwards every record with its key, headers and origin, in order per partition', async () => {
    const rx = await receiver()
    const { url, node } = await cleanup.node({ config: streamsWithSink(rx.url) })
    await publish(url, 50)
    await waitFor(() => rx.delivered.length >= 50, '50 records at the receiver')

    expect(rx.delivered).toHaveLength(50)
    for (const partition of [0, 1]) {
      const offsets = rx.delivered.filter((r) => r.partition === partition).map((r) => r.offset)
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b))
      expect(new Set(offsets).size).toBe(offsets.length)
    }
    const first = rx.delivered.find((r) => r.payload === 'm0')
    expect(first).toMatchObject({
      origin: node.nodeId,
      stream: 'sensors',
      key: 'dev0',
      topic: 'sensors/dev0/temp',
      headers: [['unit', 'C']],
      payloadEncoding: 'utf8',
    })
    const post = rx.posts[0]
    expect(post?.headers['content-type']).toBe('application/x-ndjson')
    const rows = post?.rows ?? []
    expect(post?.headers['idempotency-key']).toBe(
      `${node.nodeId}/sensors/${rows[0]?.partition}/${rows[0]?.offset}-${rows.at(-1)?.offset}`,
    )
    await waitFor(
      () => node.upstream?.status().every((s) => s.lagRecords === 0 && s.state === 'idle') === true,
      'no lag',
    )
  })

  it('POSTs over HTTPS, trusting the CA given in tls.ca', async () => {
    const certs = makeTestCerts(await cleanup.dir('tributary-certs-'))
    const rx = new HttpReceiver(certs)
    await rx.start()
    cleanup.defer('stop receiver', () => rx.stop())
    const { url } = await cleanup.node({ config: streamsWithSink(rx.url, { tls: { ca: certs.ca } }) })
    await publish(url, 5)
    await waitFor(() => rx.delivered.length >= 5, '5 records over HTTPS')
    expect(rx.url.startsWith('https://')).toBe(true)
  })

  it('keeps publishing through an uplink outage and delivers every record once it returns', async () => {
    const rx = await receiver()
    // The sink comes from a --sink URL here; `tributary sinks` finds it by its stored cursors.
    const { url, node, dataDir } = await cleanup.node({
      config: { ...streamsWithSink(rx.url), sinks: [] },
      sinks: [`${rx.url}?lingerMs=20`],
    })
    await publish(url, 10)
    await waitFor(() => rx.delivered.length >= 10, 'first 10 records')
    await rx.stop()

    await publish(url, 40, (i) => `outage${i}`)
    await waitFor(
      () => (node.upstream?.status() ?? []).some((s) => s.retries > 0 && s.state === 'retrying'),
      'a forwarder retrying',
    )
    const during = node.upstream?.status() ?? []
    expect(during.reduce((n, s) => n + s.lagRecords, 0)).toBe(40)
    expect(Math.max(...during.map((s) => s.lagSeconds))).toBeGreaterThan(0)

    // Cursors are saved once a second (src/upstream/cursors.ts): let the first 10 be saved.
    await new Promise((resolve) => setTimeout(resolve, 1100))
    const cli = await runCli(['sinks', '--json', '--data-dir', dataDir])
    expect(cli.stderr).toBe('')
    const rows = cli.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { sink: string; stream: string; lagRecords: number })
    expect(rows.every((r) => r.sink === `http-127.0.0.1-${new URL(rx.url).port}-ingest`)).toBe(true)
    expect(rows.reduce((n, r) => n + r.lagRecords, 0)).toBe(40)

    await rx.start()
    await waitFor(() => rx.delivered.length >= 50, 'all 50 records after the outage')
    const payloads = rx.delivered.map((r) => r.payload)
    expect(new Set(payloads).size).toBe(50)
    for (let i = 0; i < 40; i++) expect(payloads).toContain(`outage${i}`)
  })

  it('sends a record the receiver refuses (HTTP 422) to the dead-letter stream and goes on', async () => {
    const rx = await receiver()
    rx.answer = (post) => (post.rows.some((r) => r.payload === 'poison') ? 422 : 200)
    const { url, node } = await cleanup.node({ config: streamsWithSink(rx.url) })
    await publish(url, 30, (i) => (i === 12 ? 'poison' : `ok${i}`))
    await waitFor(() => rx.delivered.length >= 29, '29 good records')
    await waitFor(() => readAll(node.store, 'sensors.dead-letter').length === 1, 'one dead letter')

    expect(rx.delivered.map((r) => r.payload)).not.toContain('poison')
    const [letter] = readAll(node.store, 'sensors.dead-letter')
    expect(letter?.payload.toString()).toBe('poison')
    const headers = new Map(letter?.headers)
    expect(headers.get(DEAD_LETTER_HEADER.sink)).toBe('hq')
    expect(headers.get(DEAD_LETTER_HEADER.reason)).toMatch(/HTTP 422 refused with 422/)
    expect(headers.get(DEAD_LETTER_HEADER.stream)).toBe('sensors')
    expect(headers.get('unit')).toBe('C')
    const deadLettered = node.upstream?.status().reduce((n, s) => n + s.deadLettered, 0)
    expect(deadLettered).toBe(1)
  })

  it('retries 503 and 429 answers without dead-lettering anything', async () => {
    const rx = await receiver()
    let refusals = 0
    rx.answer = () => (refusals++ < 4 ? (refusals % 2 === 0 ? 503 : 429) : 200)
    const { url, node } = await cleanup.node({ config: streamsWithSink(rx.url) })
    await publish(url, 10)
    await waitFor(() => rx.delivered.length >= 10, '10 records')
    expect(readAll(node.store, 'sensors.dead-letter')).toHaveLength(0)
  })

  it('tears down a connection that is open but never answers (watchdog) and delivers after', async () => {
    const rx = await receiver()
    let hung = 0
    rx.answer = () => (hung++ < 1 ? 'hang' : 200)
    const { url, node } = await cleanup.node({
      config: streamsWithSink(rx.url, { stuckAfterMs: 300, timeoutMs: 60_000, maxInFlight: 1 }),
    })
    await publish(url, 5)
    await waitFor(() => rx.delivered.length >= 5, '5 records after the stuck send')
    const stuck = node.upstream?.status().reduce((n, s) => n + s.stuckRestarts, 0)
    expect(stuck).toBe(1)
    expect(node.upstream?.status().some((s) => s.lastError?.code === 'TRIB_SINK_STUCK')).toBe(true)
  })

  it('drains newest-first when asked: the newest records arrive first, then the backlog, each once', async () => {
    const rx = await receiver()
    await rx.stop()
    const { url } = await cleanup.node({
      config: streamsWithSink(rx.url, { drainOrder: 'newest-first', maxBatchRecords: 10 }),
    })
    const client = await publish(url, 60)
    await rx.start()
    await waitFor(() => rx.delivered.length >= 60, 'the 60 stored records')
    const fresh = ['fresh0', 'fresh1']
    for (const payload of fresh) await client.publishAsync('sensors/dev0/temp', payload, { qos: 1 })
    await waitFor(() => rx.delivered.length >= 62, 'the live records')

    const payloads = rx.delivered.map((r) => r.payload)
    expect(new Set(payloads).size).toBe(62)
    // Per partition, the first batch sent is the partition's newest records, not its oldest.
    for (const partition of [0, 1]) {
      const offsets = rx.delivered.filter((r) => r.partition === partition).map((r) => r.offset)
      expect(offsets[0]).toBeGreaterThan(Math.min(...offsets))
    }
  })

  it('goes on from its durable cursor after a restart, without sending old records again', async () => {
    const rx = await receiver()
    const first = await cleanup.node({ config: streamsWithSink(rx.url) })
    await publish(first.url, 20)
    await waitFor(() => rx.delivered.length >= 20, '20 records')
    await first.stop()

    const second = await cleanup.node({ dataDir: first.dataDir, config: streamsWithSink(rx.url) })
    await publish(second.url, 5, (i) => `after${i}`)
    await waitFor(() => rx.delivered.length >= 25, '25 records')
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(rx.delivered).toHaveLength(25)
  })
})
