// Ingest: the only writer into the log. Turns one MQTT publish into records
// (route, key, partition, limits), drops retries of what is already stored
// (dedupe markers written in the same transaction as the records) and
// resolves when the records are as durable as the streams' ack mode asks.
//
// Dedupe rules:
// - QoS 2: one record per (client, packet id) until PUBREL releases the id
//   [MQTT-4.3.3]; a retransmitted PUBLISH (DUP or not) is answered from the
//   durable marker written with the record, also after a restart.
// - QoS 1: a DUP retry whose topic and payload digest equals the remembered
//   one for (client, packet id) is not appended again (recent-publishes.ts:
//   in memory, so within one broker run).
// - A clean-session connect forgets the client's state: its packet ids start over.
//
// `ack: replicated` streams: once durable here, the ack also waits until
// minInsync - 1 other nodes hold the records fdatasync'd (ReplicationAcks,
// the replicator); when they do not in replicatedTimeoutMs, the stream's
// onTooFewReplicas decides: `wait` refuses (TRIB_NOT_ENOUGH_REPLICAS: the
// client keeps its message and sends it again), `degrade` acknowledges as
// durable, logged once per episode and counted.

import { crc32c } from '@node-rs/crc32'
import type { Config, StreamConfig } from '../config/schema.ts'
import { TributaryError } from '../errors.ts'
import type { Appended, Durability, LogStore } from '../log/log-store.ts'
import type { Header, Qos } from '../log/record.ts'
import type { Metrics } from '../observability/metrics.ts'
import { RecentPublishes } from './recent-publishes.ts'
import type { Route, Router } from './router.ts'

/** The MQTT 5 user property a publisher may set to give the device's own time (ms since epoch or ISO 8601). */
export const DEVICE_TIME_PROPERTY = 'device-time'

export interface IncomingPublish {
  readonly clientId: string
  readonly topic: string
  readonly payload: Buffer
  readonly qos: Qos
  readonly dup: boolean
  readonly messageId: number | undefined
  readonly userProperties: Readonly<Record<string, string | string[]>> | undefined
}

declare const checked: unique symbol
/** A publish that passed `check`: the only kind `accept` takes, so each publish is checked once. */
export type CheckedPublish = IncomingPublish & { readonly [checked]: true }

export interface IngestResult {
  /** Where this call stored the publish; empty when no stream took it (live delivery only) or it was a retry. */
  readonly appended: readonly Appended[]
  /** True when this was a retry of something already stored. */
  readonly duplicate: boolean
}

/** Where copies on other nodes are counted (the replicator); absent when the node runs alone. */
export interface ReplicationAcks {
  /** True once `minInsync - 1` other nodes hold every one of `records` fdatasync'd; false after `timeoutMs`. */
  whenReplicated(
    records: ReadonlyArray<{ readonly stream: string; readonly partition: number; readonly offset: number }>,
    minInsync: number,
    timeoutMs: number,
  ): Promise<boolean>
}

/** What happens when replicated acks degrade (logged once per episode, counted). */
export interface DegradeReport {
  degraded(stream: string, episodeStarted: boolean): void
}

export interface IngestStats {
  records: number
  duplicates: number
  rejected: number
}

const NONE: IngestResult = { appended: [], duplicate: false }
const DUPLICATE: IngestResult = { appended: [], duplicate: true }

function markerKey(qos: Qos, clientId: string, messageId: number): string {
  // NUL cannot occur in an MQTT client id [MQTT-1.5.3-2], so these keys cannot collide.
  return `q${qos}\u0000${clientId}\u0000${messageId}\u0000`
}

/** Shared by every publish without user properties (records never change their headers). */
const NO_HEADERS: readonly Header[] = Object.freeze([])

function headersOf(props: IncomingPublish['userProperties']): readonly Header[] {
  if (props === undefined) return NO_HEADERS
  const headers: Header[] = []
  for (const [name, value] of Object.entries(props)) {
    for (const v of Array.isArray(value) ? value : [value]) headers.push([name, v])
  }
  return headers
}

function deviceTime(props: IncomingPublish['userProperties']): number | null {
  const raw = props?.[DEVICE_TIME_PROPERTY]
  const text = Array.isArray(raw) ? raw[0] : raw
  if (text === undefined) return null
  const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text)
  return Number.isFinite(ms) ? ms : null
}

/** The strictest ack mode of the streams a publish lands in; one loop, as this runs per publish. */
function durabilityOf(
  routes: readonly Route[],
  qos: Qos,
): { durability: Durability; relaxedFlushMs: number } {
  let relaxedFlushMs = Number.POSITIVE_INFINITY
  let durable = false
  for (const { stream } of routes) {
    relaxedFlushMs = Math.min(relaxedFlushMs, stream.relaxedFlushMs)
    if (stream.ack !== 'relaxed') durable = true
  }
  // QoS 0 has no ack to protect, so it is never made to wait for an fsync; never worse than relaxed either.
  return { durability: durable && qos !== 0 ? 'durable' : 'relaxed', relaxedFlushMs }
}

export class Ingest {
  readonly #store: LogStore
  readonly #router: Router
  readonly #maxPayloadBytes: number
  /** Appends not yet resolved, by marker key: a retry that overtakes its original waits for it. */
  readonly #inFlight = new Map<string, Promise<IngestResult>>()
  readonly #recent: RecentPublishes
  readonly stats: IngestStats = { records: 0, duplicates: 0, rejected: 0 }

  /** True while the data disk is above its high-water mark (src/log/disk-guard.ts). */
  readonly #diskFull: () => boolean
  readonly #metrics: Pick<Metrics, 'ingested'> | undefined
  readonly #replication: { readonly acks: ReplicationAcks; readonly report: DegradeReport } | null
  /** Streams whose replicated acks are degraded now (one log line per episode). */
  readonly #degraded = new Set<string>()

  constructor(
    store: LogStore,
    router: Router,
    limits: Config['limits'],
    diskFull: () => boolean = () => false,
    metrics?: Pick<Metrics, 'ingested'>,
    replication: { readonly acks: ReplicationAcks; readonly report: DegradeReport } | null = null,
  ) {
    this.#replication = replication
    this.#store = store
    this.#metrics = metrics
    this.#diskFull = diskFull
    this.#router = router
    this.#maxPayloadBytes = limits.maxPayloadBytes
    this.#recent = new RecentPublishes(limits.dedupeIdsPerClient, limits.dedupeClients)
  }

  /** Creates every configured stream's partitions in the store. */
  async prepare(streams: readonly StreamConfig[]): Promise<void> {
    for (const stream of streams) await this.#store.ensureStream(stream.name, stream.partitions)
  }

  /**
   * The limits a publish must meet before anything else happens: the publish,
   * now a CheckedPublish for `accept`, when it does; the refusal when not.
   */
  check(publish: IncomingPublish): CheckedPublish | TributaryError {
    if (publish.payload.length <= this.#maxPayloadBytes) return publish as CheckedPublish
    this.stats.rejected++
    return new TributaryError(
      'TRIB_PAYLOAD_TOO_LARGE',
      `${publish.payload.length} > ${this.#maxPayloadBytes} bytes`,
    )
  }

  accept(publish: CheckedPublish): Promise<IngestResult> {
    const routes = this.#router.route(publish.topic, publish.clientId)
    if (routes.length === 0) return Promise.resolve(NONE)
    if (this.#diskFull()) {
      const refusing = routes.find((r) => r.stream.onFull === 'reject')
      if (refusing !== undefined) {
        this.stats.rejected++
        return Promise.reject(new TributaryError('TRIB_DISK_FULL', `stream ${refusing.stream.name}`))
      }
    }
    if (publish.qos === 0 || publish.messageId === undefined) return this.#append(publish, routes, undefined)

    const { clientId, messageId } = publish
    const key = markerKey(publish.qos, clientId, messageId)
    const running = this.#inFlight.get(key)
    if (running !== undefined) return running.then(() => this.#duplicate())
    const digest = crc32c(publish.payload, crc32c(publish.topic))
    if (publish.qos === 2) {
      if (this.#store.marker(key) !== undefined) return Promise.resolve(this.#duplicate())
    } else if (publish.dup && this.#recent.digest(clientId, messageId) === digest) {
      return Promise.resolve(this.#duplicate())
    }
    const qos1 = publish.qos === 1
    const result = this.#append(publish, routes, qos1 ? undefined : { key, digest })
    this.#inFlight.set(key, result)
    // Registered before the caller's callbacks, so the window knows the id before the ack leaves.
    // The caller handles a failure; this only clears the entry.
    result.then(
      () => {
        if (qos1) this.#recent.remember(clientId, messageId, digest)
        this.#inFlight.delete(key)
      },
      () => this.#inFlight.delete(key),
    )
    return result
  }

  /** PUBREL: the QoS 2 packet id is free again [MQTT-4.3.3-2]. */
  release(clientId: string, messageId: number): Promise<void> {
    return this.#store.removeMarkers(markerKey(2, clientId, messageId))
  }

  /** A clean session starts: the client's packet ids start over. */
  forgetClient(clientId: string): Promise<void> {
    this.#recent.forget(clientId)
    return this.#store.removeMarkers(`q2\u0000${clientId}\u0000`)
  }

  #duplicate(): IngestResult {
    this.stats.duplicates++
    return DUPLICATE
  }

  /** One promise step on top of the store's (not an async function's two): this runs per publish. */
  #append(
    publish: IncomingPublish,
    routes: readonly Route[],
    dedupe: { key: string; digest: number } | undefined,
  ): Promise<IngestResult> {
    const headers = headersOf(publish.userProperties)
    const deviceTimeMs = deviceTime(publish.userProperties)
    const entries = routes.map((route) => ({
      stream: route.stream.name,
      partition: route.partition,
      record: {
        key: route.key,
        topic: publish.topic,
        payload: publish.payload,
        headers,
        clientId: publish.clientId,
        qos: publish.qos,
        deviceTimeMs,
      },
    }))
    const { durability, relaxedFlushMs } = durabilityOf(routes, publish.qos)
    const request =
      dedupe === undefined
        ? { entries, durability, relaxedFlushMs }
        : { entries, durability, relaxedFlushMs, marker: dedupe }
    const stored = this.#store.append(request).then(
      (appended) => {
        this.stats.records += appended.length
        if (this.#metrics !== undefined) for (const a of appended) this.#metrics.ingested(a.stream)
        return { appended, duplicate: false }
      },
      (err: unknown) => {
        this.stats.rejected++
        throw err
      },
    )
    const replicated = publish.qos === 0 ? undefined : routes.find((r) => r.stream.ack === 'replicated')
    return replicated === undefined ? stored : stored.then((result) => this.#replicated(result, routes))
  }

  /** The ack of `ack: replicated` streams waits for their copies (see the header). */
  async #replicated(result: IngestResult, routes: readonly Route[]): Promise<IngestResult> {
    const replication = this.#replication
    for (const { stream } of routes) {
      if (stream.ack !== 'replicated') continue
      const records = result.appended.filter((a) => a.stream === stream.name)
      const copied =
        replication !== null &&
        (await replication.acks.whenReplicated(records, stream.minInsync, stream.replicatedTimeoutMs))
      if (copied) {
        this.#degraded.delete(stream.name)
        continue
      }
      if (stream.onTooFewReplicas === 'wait') {
        this.stats.rejected++
        throw new TributaryError(
          'TRIB_NOT_ENOUGH_REPLICAS',
          `stream ${stream.name}: fewer than ${stream.minInsync - 1} other nodes copied it in ${stream.replicatedTimeoutMs} ms`,
        )
      }
      const started = !this.#degraded.has(stream.name)
      this.#degraded.add(stream.name)
      replication?.report.degraded(stream.name, started)
    }
    return result
  }
}
