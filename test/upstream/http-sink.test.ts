// The HTTP sink against a real local receiver, in what only it has: the
// body's record shape and the Idempotency-Key, HTTPS, a sink given as a
// --sink URL seen by `tributary sinks`, answers it retries, and the
// newest-first drain. Records, keys, headers and order, an uplink outage, a
// poison record, a receiver that never answers and a restart are the Sink
// conformance suite's (sink-conformance-http.test.ts).

import { afterEach, describe, expect, it } from 'vitest'
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
  it('POSTs each batch as NDJSON rows named by an Idempotency-Key of its range, each row by its record id', async () => {
    const rx = await receiver()
    const { url, node } = await cleanup.node({ config: streamsWithSink(rx.url) })
    await publish(url, 50)
    await waitFor(() => rx.delivered.length >= 50, '50 records at the receiver')

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
    // Each record names itself for good: origin, the incarnation that wrote it, stream, partition, offset.
    const incarnation = node.store.incarnation
    for (const row of rx.delivered)
      expect(row.id).toBe(`${node.nodeId}/${incarnation}/sensors/${row.partition}/${row.offset}`)
    expect(new Set(rx.delivered.map((r) => r.id)).size).toBe(rx.delivered.length)
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

  it('shows the lag of a --sink URL sink in `tributary sinks`, from its stored cursors, during an outage', async () => {
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
})
