// The Sink seam's conformance suite (STYLE.md: one suite per seam, like
// aedes-persistence's abstract.js): every sink kind runs the same cases
// against a real peer of its kind, through a real tributary node that takes
// publishes over MQTT.
//
// - Records arrive with their key, the forward headers of sink.ts and their
//   own headers, where the sink's template names them, in offset order per
//   partition, each once.
// - An outage keeps the records on disk (lag, retries in the status); they
//   drain in order when the peer returns.
// - A record the peer refuses goes to `<stream>.dead-letter` with the sink
//   and the reason, and forwarding goes on past it.
// - A peer that keeps the connection but answers nothing is torn down by the
//   watchdog (TRIB_SINK_STUCK, stuck restarts counted); forwarding resumes.
// - A node restarted on the same data goes on from its durable cursor:
//   nothing sent again, nothing lost.
//
// Each kind's file (sink-conformance-<kind>.test.ts) passes an adapter that
// starts the peer, reads back what arrived, and makes the peer refuse, fall
// silent, go away and come back.

import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import type { TributaryNode } from '../../src/index.ts'
import { partitionForKey } from '../../src/ingest/partitioner.ts'
import { DEAD_LETTER_HEADER } from '../../src/upstream/dead-letter.ts'
import type { ForwarderStatus } from '../../src/upstream/forwarder.ts'
import { Cleanup, readAll, waitFor } from '../helpers/integration.ts'

/** A record as the peer got it, with the forward headers read back into fields. */
export interface Arrival {
  /** Where the peer filed it (Kafka topic, MQTT topic); null for a sink without per-record names (HTTP). */
  readonly destination: string | null
  /** The peer's own partition (Kafka); null when it has none. */
  readonly upstreamPartition: number | null
  readonly origin: string | undefined
  readonly stream: string | undefined
  /** tributary's partition and offset (NaN when the peer did not get them). */
  readonly partition: number
  readonly offset: number
  /** The MQTT topic it was published on at the edge. */
  readonly topic: string | undefined
  /** The record key; undefined when the peer does not carry keys (MQTT). */
  readonly key: string | null | undefined
  readonly payload: string
  /** The record's own headers (user properties at ingest), forward headers left out. */
  readonly headers: ReadonlyArray<readonly [string, string]>
}

export interface PeerOptions {
  /** The stream forwarded in this test: unique per test, as Kafka names topics after it. */
  readonly stream: string
  readonly partitions: number
  /** The peer refuses, as never deliverable, any record larger than this (the poison case). */
  readonly maxRecordBytes?: number
}

export interface SinkPeer {
  /** The sink's config entry pointing at this peer, less what the suite sets (name, batching, retry). */
  readonly sink: Readonly<Record<string, unknown>>
  /** Everything that arrived so far, in arrival order. */
  arrivals(): Promise<Arrival[]>
  /** Takes the peer down: connections end and new ones are refused. */
  stop(): Promise<void>
  /** Brings it back where it was, with what it had stored. */
  start(): Promise<void>
  /** The peer keeps its connections (and accepts new ones) but answers nothing, until resume(). */
  pause(): void
  resume(): void
  /** How many sends the peer left unanswered while paused, where it can count them (HTTP). */
  unanswered?(): number
}

export interface SinkAdapter {
  readonly kind: string
  /** Starts a peer for one test and registers its removal on `cleanup`. */
  peer(cleanup: Cleanup, options: PeerOptions): Promise<SinkPeer>
  /** Where a record published on `topic` should arrive (the sink's name template); null as in Arrival. */
  destination(record: {
    readonly stream: string
    readonly origin: string
    readonly topic: string
  }): string | null
  /** Whether the peer gets the record key (Kafka, HTTP; MQTT carries none). */
  readonly keys: boolean
  /** The dead letter's reason for a record over the peer's maxRecordBytes. */
  readonly poisonReason: RegExp
  /** Sink settings that leave a silent peer to the watchdog (client timeouts far beyond stuckAfterMs). */
  readonly silentPeer: Readonly<Record<string, unknown>>
}

const PARTITIONS = 3
const DEVICES = 7
const SINK = 'central'
const USER_HEADERS = [['unit', 'C']]
/** Long enough for a normal send on a busy two-core machine, short for a test. */
const STUCK_AFTER_MS = 1500
const MAX_RECORD_BYTES = 4000
/** Random, so that no compression brings it under the peer's limit. */
const POISON = randomBytes(15_000).toString('base64')
/** Drains after an outage and after a silent peer can take a broker restart and a few backoffs. */
const ARRIVAL_MS = 60_000

export function sinkConformance(adapter: SinkAdapter): void {
  describe(`Sink conformance: ${adapter.kind}`, () => {
    const cleanup = new Cleanup()
    afterEach(() => cleanup.run())
    let seq = 0

    async function setup(options: Omit<PeerOptions, 'stream' | 'partitions'> = {}) {
      const stream = `sensors-${++seq}`
      const peer = await adapter.peer(cleanup, { stream, partitions: PARTITIONS, ...options })
      const config = (sink: Record<string, unknown> = {}) => ({
        streams: [
          {
            name: stream,
            match: [`${stream}/#`],
            partitions: PARTITIONS,
            key: { from: 'topic-level', level: 1 },
          },
        ],
        sinks: [{ name: SINK, lingerMs: 20, retry: { initialMs: 50, maxMs: 300 }, ...peer.sink, ...sink }],
      })
      return { stream, peer, config }
    }

    /** Publishes `count` records over MQTT 5, device dev(i % 7), payload v<i> unless given. */
    async function publish(
      url: string,
      stream: string,
      count: number,
      from = 0,
      payload = (i: number) => `v${i}`,
    ): Promise<void> {
      const client = await cleanup.mqtt(url, { protocolVersion: 5 })
      for (let i = from; i < from + count; i++) {
        await client.publishAsync(`${stream}/dev${i % DEVICES}/t`, payload(i), {
          qos: 1,
          properties: { userProperties: { unit: 'C' } },
        })
      }
    }

    /**
     * Waits until `count` distinct payloads arrived (every test publishes
     * unique ones): an at-least-once sink may deliver some twice, and a
     * count of arrivals alone could be reached before the last ones came.
     */
    async function arrived(peer: SinkPeer, count: number): Promise<Arrival[]> {
      const deadline = Date.now() + ARRIVAL_MS
      for (;;) {
        const arrivals = await peer.arrivals()
        const distinct = new Set(arrivals.map((a) => a.payload)).size
        if (distinct >= count) return arrivals
        if (Date.now() > deadline)
          throw new Error(`timed out: ${distinct} of ${count} distinct payloads arrived`)
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    }

    function status(node: TributaryNode): ForwarderStatus[] {
      return node.upstream?.status() ?? []
    }

    function total(node: TributaryNode, field: 'lagRecords' | 'stuckRestarts' | 'cursor'): number {
      return status(node).reduce((n, s) => n + s[field], 0)
    }

    /** Every forwarder has sent everything and heard back: the cursors are at the end. */
    async function caughtUp(node: TributaryNode): Promise<void> {
      await waitFor(
        () => status(node).every((s) => s.lagRecords === 0 && s.state === 'idle'),
        'every forwarder idle with no lag',
        { timeoutMs: ARRIVAL_MS },
      )
    }

    /** The offsets of each partition in the order they first arrived. */
    function firstArrivals(arrivals: readonly Arrival[]): Map<number, number[]> {
      const seen = new Set<string>()
      const byPartition = new Map<number, number[]>()
      for (const a of arrivals) {
        const id = `${a.partition}/${a.offset}`
        if (seen.has(id)) continue
        seen.add(id)
        byPartition.set(a.partition, [...(byPartition.get(a.partition) ?? []), a.offset])
      }
      return byPartition
    }

    function expectInOrder(arrivals: readonly Arrival[]): void {
      for (const offsets of firstArrivals(arrivals).values()) {
        expect(offsets).toEqual([...offsets].sort((a, b) => a - b))
      }
    }

    it('delivers records with key, forward headers and their own headers, once each, in order per partition', async () => {
      const { stream, peer, config } = await setup()
      const { url, node } = await cleanup.node({ config: config() })
      await publish(url, stream, 70)
      await arrived(peer, 70)
      await caughtUp(node)
      const arrivals = await peer.arrivals()

      expect(arrivals).toHaveLength(70)
      for (const a of arrivals) {
        const device = a.topic?.split('/')[1] ?? ''
        expect(a.origin).toBe(node.nodeId)
        expect(a.stream).toBe(stream)
        expect(a.topic).toBe(`${stream}/${device}/t`)
        expect(a.destination).toBe(adapter.destination({ stream, origin: node.nodeId, topic: a.topic ?? '' }))
        expect(a.partition).toBe(partitionForKey(Buffer.from(device), PARTITIONS))
        if (a.upstreamPartition !== null) expect(a.upstreamPartition).toBe(a.partition)
        expect(a.key).toBe(adapter.keys ? device : undefined)
        expect(a.headers).toEqual(USER_HEADERS)
      }
      for (const partition of new Set(arrivals.map((a) => a.partition))) {
        const offsets = arrivals.filter((a) => a.partition === partition).map((a) => a.offset)
        expect(offsets).toEqual([...offsets].sort((a, b) => a - b))
        expect(new Set(offsets).size).toBe(offsets.length)
      }
      for (let d = 0; d < DEVICES; d++) {
        const values = arrivals
          .filter((a) => a.topic === `${stream}/dev${d}/t`)
          .map((a) => Number(a.payload.slice(1)))
        expect(values).toEqual([...values].sort((a, b) => a - b))
        expect(values).toHaveLength(10)
      }
    })

    it('keeps what is published during an outage on disk and drains it in order when the peer returns', async () => {
      const { stream, peer, config } = await setup()
      const { url, node } = await cleanup.node({ config: config() })
      await publish(url, stream, 10)
      await arrived(peer, 10)
      await caughtUp(node)
      await peer.stop()
      try {
        await publish(url, stream, 40, 10, (i) => `outage${i}`)
        await waitFor(
          () => status(node).some((s) => s.state === 'retrying' && s.retries > 0),
          'a forwarder retrying',
          { timeoutMs: ARRIVAL_MS },
        )
        expect(total(node, 'lagRecords')).toBe(40)
        expect(Math.max(...status(node).map((s) => s.lagSeconds))).toBeGreaterThan(0)
      } finally {
        await peer.start()
      }
      const arrivals = await arrived(peer, 50)
      const payloads = new Set(arrivals.map((a) => a.payload))
      for (let i = 10; i < 50; i++) expect(payloads.has(`outage${i}`)).toBe(true)
      expectInOrder(arrivals)
    })

    it('sends a record the peer refuses to the dead-letter stream and goes on past it', async () => {
      const { stream, peer, config } = await setup({ maxRecordBytes: MAX_RECORD_BYTES })
      // A linger long enough that the poison record shares a batch with others: they must be split off it.
      const { url, node } = await cleanup.node({ config: config({ lingerMs: 1000 }) })
      await publish(url, stream, 20, 0, (i) => (i === 7 ? POISON : `v${i}`))
      const deadLetters = `${stream}.dead-letter`
      await arrived(peer, 19)
      await waitFor(() => readAll(node.store, deadLetters).length === 1, 'a dead letter')

      const [letter] = readAll(node.store, deadLetters)
      expect(letter?.payload.toString()).toBe(POISON)
      const headers = new Map(letter?.headers)
      expect(headers.get(DEAD_LETTER_HEADER.sink)).toBe(SINK)
      expect(headers.get(DEAD_LETTER_HEADER.reason)).toMatch(adapter.poisonReason)
      expect(headers.get(DEAD_LETTER_HEADER.stream)).toBe(stream)
      expect(headers.get('unit')).toBe('C')
      expect(status(node).reduce((n, s) => n + s.deadLettered, 0)).toBe(1)
      // Halving a batch down to the poison record takes a few refused batches, not one per record.
      const splits = status(node).reduce((n, s) => n + s.splitBatches, 0)
      expect(splits).toBeGreaterThan(0)
      expect(splits).toBeLessThan(10)
      await caughtUp(node)
      const payloads = (await peer.arrivals()).map((a) => a.payload)
      expect(payloads).not.toContain(POISON)
      expect(new Set(payloads).size).toBe(19)
    })

    it('tears down a sink whose peer stays connected but silent (watchdog) and forwards after', async () => {
      const { stream, peer, config } = await setup()
      const { url, node } = await cleanup.node({
        config: config({ stuckAfterMs: STUCK_AFTER_MS, ...adapter.silentPeer }),
      })
      await publish(url, stream, 5)
      await arrived(peer, 5)
      await caughtUp(node)
      peer.pause()
      try {
        await publish(url, stream, 10, 5)
        await waitFor(
          () => status(node).some((s) => s.stuckRestarts > 0 && s.lastError?.code === 'TRIB_SINK_STUCK'),
          'the watchdog firing',
          { timeoutMs: ARRIVAL_MS },
        )
      } finally {
        peer.resume()
      }
      const arrivals = await arrived(peer, 15)
      expectInOrder(arrivals)
      await caughtUp(node)
      // Each send the peer left unanswered cost one restart, and none other did.
      if (peer.unanswered !== undefined) expect(total(node, 'stuckRestarts')).toBe(peer.unanswered())
    })

    it('goes on from its durable cursor after a restart: nothing sent again, nothing lost', async () => {
      const { stream, peer, config } = await setup()
      const first = await cleanup.node({ config: config() })
      await publish(first.url, stream, 20)
      await arrived(peer, 20)
      await caughtUp(first.node)
      await first.stop()

      const second = await cleanup.node({ dataDir: first.dataDir, config: config() })
      // The cursors the first node saved: every partition's end.
      expect(total(second.node, 'cursor')).toBe(20)
      await publish(second.url, stream, 5, 20, (i) => `after${i}`)
      await arrived(peer, 25)
      await caughtUp(second.node)
      // A record sent again would come before the new ones of its partition; give stragglers a moment.
      await new Promise((resolve) => setTimeout(resolve, 200))
      const arrivals = await peer.arrivals()
      expect(arrivals).toHaveLength(25)
      expectInOrder(arrivals)
    })
  })
}
