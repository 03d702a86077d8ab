// The node's metrics in the Prometheus format: one prom-client Registry per
// node (two nodes in one test process never share a counter), with the
// default process metrics (CPU, memory, event-loop lag, GC).
//
// Two kinds of figures flow in:
// - events, pushed by the module where they happen (ingest, broker, log
//   writer, the composition root) through the methods below; the hot ones
//   use label children cached per stream, so a publish costs a few adds;
// - state, read at scrape time from `MetricSources` that the composition root
//   sets (partitions, sinks, connections, disk): nothing is sampled while no
//   one scrapes.
// This module imports nothing from the domain: sources are plain shapes.
// Over 400 lines because it is the catalog: every metric is declared here,
// once, with its help text (the README table and the Grafana dashboard are
// checked against this registry); the logic per metric is a line or two.

import { readFileSync } from 'node:fs'
import {
  Counter,
  type CounterConfiguration,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type HistogramConfiguration,
  Registry,
} from 'prom-client'

export const METRIC_PREFIX = 'tributary_'
/** Where Linux keeps this process's I/O counters; write_bytes is what reached the block layer. */
export const PROC_SELF_IO = '/proc/self/io'
const TB = 1e12
const SECONDS_PER_DAY = 86_400

export interface PartitionFigures {
  readonly stream: string
  readonly partition: number
  readonly firstOffset: number
  readonly nextOffset: number
  readonly bytes: number
}

/**
 * One forwarder's figures, per (sink, stream, partition): what /metrics exports
 * and, the same shape, what /v1/sinks, /v1/status and `tributary status` show
 * (src/admin/status.ts). Defined here, in the base layer, so both may use it.
 */
export interface SinkFigures {
  readonly sink: string
  readonly stream: string
  readonly partition: number
  /** The forwarder's state: starting, idle, sending, retrying, failed or stopped. */
  readonly state: string
  /** Next offset to forward. */
  readonly cursor: number
  readonly nextOffset: number
  readonly lagRecords: number
  readonly lagBytes: number
  readonly lagSeconds: number
  readonly forwarded: number
  readonly deadLettered: number
  readonly retries: number
  readonly stuckRestarts: number
  readonly lastError: { readonly code: string; readonly message: string; readonly atMs: number } | null
}

/** One replication peer as /metrics sees it (the replicator's status has this shape and more). */
export interface PeerFigures {
  readonly nodeId: string | null
  readonly state: string
  readonly rttMs: number | null
  /** This node's copies of the peer's partitions. */
  readonly copies: ReadonlyArray<{
    readonly stream: string
    readonly partition: number
    readonly lagRecords: number
  }>
}

/** One of this node's partitions and the followers the origin picked to copy it (the replicator's figures). */
export interface PartitionFollowerFigures {
  readonly stream: string
  readonly partition: number
  readonly followers: ReadonlyArray<{
    readonly follower: string
    readonly inSync: boolean
    readonly lagRecords: number
    readonly lagBytes: number
    readonly lagSeconds: number
  }>
}

export interface MetricSources {
  partitions(): readonly PartitionFigures[]
  sinks(): readonly SinkFigures[]
  /** Replication peers; empty when the node runs alone. */
  peers(): readonly PeerFigures[]
  /** Per partition of this node in a cluster: its replicatedNext; empty when alone. */
  replicated(): ReadonlyArray<{
    readonly stream: string
    readonly partition: number
    readonly replicatedNext: number
  }>
  /** Per partition of this node in a cluster: its followers, in sync or not, and their lag; empty when alone. */
  followers(): readonly PartitionFollowerFigures[]
  connections(): number
  disk(): { readonly usedPercent: number | null; readonly full: boolean }
}

export interface MetricsOptions {
  /** Rated write endurance of the data disk in TB (10^12 bytes) written; null: not known. */
  readonly storageEnduranceTBW: number | null
  /** Replaceable for tests; returns null where there is no such file (not Linux, hardened /proc). */
  readonly readWrittenBytes?: () => number | null
  readonly nowMs?: () => number
}

/** write_bytes of /proc/self/io, or null when it cannot be read. */
export function procWrittenBytes(path = PROC_SELF_IO): number | null {
  try {
    const match = /^write_bytes:\s*(\d+)$/m.exec(readFileSync(path, 'utf8'))
    return match?.[1] === undefined ? null : Number(match[1])
  } catch {
    return null
  }
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
const COMMIT_RECORD_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000]
const COMMIT_BYTE_BUCKETS = [256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216]

type Child = { inc(value?: number): void }
type HistogramChild = { observe(value: number): void }

export class Metrics {
  readonly registry = new Registry()
  #sources: MetricSources | null = null
  /** The sources' figures for the scrape under way: each is read once per scrape, not once per metric. */
  #scrape: {
    partitions: readonly PartitionFigures[]
    sinks: readonly SinkFigures[]
    followers: readonly PartitionFollowerFigures[]
  } | null = null
  readonly #startedAtMs: number
  readonly #startWrittenBytes: number | null
  readonly #readWritten: () => number | null
  readonly #nowMs: () => number
  readonly #ingested: Counter<'stream'>
  readonly #ingestedByStream = new Map<string, Child>()
  readonly #refused: Counter<'code'>
  readonly #qos0NotStored: Counter<'code'>
  readonly #sessionQueueDropped: Counter
  readonly #replicationRefused: Counter<'code'>
  readonly #divergences: Counter
  readonly #degradedAcks: Counter<'stream'>
  readonly #ackWait: Histogram<'outcome'>
  readonly #copyLatency: Histogram
  readonly #ackLatencyQos1: HistogramChild
  readonly #ackLatencyQos2: HistogramChild
  readonly #commitRecords: Histogram
  readonly #commitBytes: Histogram
  readonly #fsync: Histogram
  readonly #retentionRecords: Counter
  readonly #retentionBytes: Counter
  readonly #gaps: Counter<'stream'>
  readonly #dropped: Counter<'stream'>
  readonly #corrupt: Counter<'action'>
  readonly #httpRequests: Counter<'route' | 'status'>

  constructor(options: MetricsOptions) {
    const r = this.registry
    this.#readWritten = options.readWrittenBytes ?? procWrittenBytes
    this.#nowMs = options.nowMs ?? Date.now
    this.#startedAtMs = this.#nowMs()
    this.#startWrittenBytes = this.#readWritten()
    collectDefaultMetrics({ register: r })
    const counter = <L extends string>(c: Omit<CounterConfiguration<L>, 'registers'>): Counter<L> =>
      new Counter<L>({ ...c, name: `${METRIC_PREFIX}${c.name}`, registers: [r] })
    const histogram = <L extends string>(h: Omit<HistogramConfiguration<L>, 'registers'>): Histogram<L> =>
      new Histogram<L>({ ...h, name: `${METRIC_PREFIX}${h.name}`, registers: [r] })

    this.#ingested = counter({
      name: 'ingest_records_total',
      help: 'Records appended to the log, per stream (one publish may land in several streams)',
      labelNames: ['stream'],
    })
    this.#refused = counter({
      name: 'publishes_refused_total',
      help: 'Publishes refused and not acknowledged, by error code',
      labelNames: ['code'],
    })
    this.#qos0NotStored = counter({
      name: 'qos0_not_stored_total',
      help: 'QoS 0 publishes delivered live but not stored (commit queue full, disk refused), by code',
      labelNames: ['code'],
    })
    this.#sessionQueueDropped = counter({
      name: 'session_queue_dropped_total',
      help: 'Live deliveries dropped, oldest first, from persistent sessions over limits.maxQueuedPerSession (the records stay in the log)',
    })
    this.#replicationRefused = counter({
      name: 'replication_refused_total',
      help: 'Replication links refused or failed, by code (TRIB_PEER_REFUSED: wrong secret or cluster; TRIB_NODE_ID_CONFLICT; TRIB_REPLICATION_PROTOCOL; TRIB_PEER_UNREACHABLE)',
      labelNames: ['code'],
    })
    this.#degradedAcks = counter({
      name: 'replicated_acks_degraded_total',
      help: 'Acks of ack: replicated streams given as durable because too few copies came in time (onTooFewReplicas: degrade)',
      labelNames: ['stream'],
    })
    this.#divergences = counter({
      name: 'replica_divergences_total',
      help: "Copies found not to be a prefix of their origin's log: the tail moved to the quarantine and copied again",
    })
    this.#ackWait = histogram({
      name: 'replicated_ack_wait_seconds',
      help: 'ack: replicated: how long an ack waited, after the local fdatasync, for minInsync - 1 followers to report their copies fdatasync-ed (outcome copied, or timeout)',
      labelNames: ['outcome'],
      buckets: LATENCY_BUCKETS,
    })
    this.#copyLatency = histogram({
      name: 'replication_fetch_latency_seconds',
      help: "From a record's ingest on this node to a follower's report that its copy is fdatasync-ed (the oldest record each report newly covers): what fetching costs a record",
      buckets: LATENCY_BUCKETS,
    })
    const ackLatency = histogram({
      name: 'ack_latency_seconds',
      help: 'From a QoS 1/2 publish reaching the broker to its PUBACK/PUBREC being released (records durable per the ack mode)',
      labelNames: ['qos'],
      buckets: LATENCY_BUCKETS,
    })
    // Bound once: a label lookup per acknowledged publish showed in the profile.
    this.#ackLatencyQos1 = ackLatency.labels('1')
    this.#ackLatencyQos2 = ackLatency.labels('2')
    this.#commitRecords = histogram({
      name: 'commit_records',
      help: 'Records per group commit (one frame, one fdatasync)',
      buckets: COMMIT_RECORD_BUCKETS,
    })
    this.#commitBytes = histogram({
      name: 'commit_bytes',
      help: 'Bytes per group commit frame written to the segment file',
      buckets: COMMIT_BYTE_BUCKETS,
    })
    this.#fsync = histogram({
      name: 'fsync_seconds',
      help: 'Duration of each fdatasync of the active segment file',
      buckets: LATENCY_BUCKETS,
    })
    this.#retentionRecords = counter({
      name: 'retention_deleted_records_total',
      help: 'Records deleted by retention (maxAgeMs, maxBytes)',
    })
    this.#retentionBytes = counter({
      name: 'retention_deleted_bytes_total',
      help: 'Batch bytes deleted by retention (maxAgeMs, maxBytes)',
    })
    this.#gaps = counter({
      name: 'gap_records_total',
      help: 'Gap records appended after onFull: dropOldest deleted records not yet forwarded',
      labelNames: ['stream'],
    })
    this.#dropped = counter({
      name: 'dropped_records_total',
      help: 'Records deleted by onFull: dropOldest before every sink had them (the sum of the gaps)',
      labelNames: ['stream'],
    })
    this.#corrupt = counter({
      name: 'corrupt_batches_total',
      help: 'Damaged batches found: quarantined at start, or skipped by a read',
      labelNames: ['action'],
    })
    this.#httpRequests = counter({
      name: 'http_requests_total',
      help: 'Admin API requests by route and status code',
      labelNames: ['route', 'status'],
    })
    this.#stateMetrics(options.storageEnduranceTBW)
  }

  /** What is read at scrape time; set once the node's parts exist. */
  setSources(sources: MetricSources): void {
    this.#sources = sources
  }

  ingested(stream: string): void {
    let child = this.#ingestedByStream.get(stream)
    if (child === undefined) {
      child = this.#ingested.labels(stream)
      this.#ingestedByStream.set(stream, child)
    }
    child.inc()
  }

  refused(code: string): void {
    this.#refused.inc({ code })
  }

  qos0NotStored(code: string): void {
    this.#qos0NotStored.inc({ code })
  }

  sessionQueueDropped(deliveries: number): void {
    this.#sessionQueueDropped.inc(deliveries)
  }

  ackLatency(qos: 1 | 2, seconds: number): void {
    const child = qos === 1 ? this.#ackLatencyQos1 : this.#ackLatencyQos2
    child.observe(seconds)
  }

  commitWritten(records: number, bytes: number): void {
    this.#commitRecords.observe(records)
    this.#commitBytes.observe(bytes)
  }

  synced(seconds: number): void {
    this.#fsync.observe(seconds)
  }

  retention(report: { readonly recordsDeleted: number; readonly bytesDeleted: number }): void {
    this.#retentionRecords.inc(report.recordsDeleted)
    this.#retentionBytes.inc(report.bytesDeleted)
  }

  gap(stream: string, records: number): void {
    this.#gaps.inc({ stream })
    this.#dropped.inc({ stream }, records)
  }

  replicationRefused(code: string): void {
    this.#replicationRefused.inc({ code })
  }

  replicatedAckDegraded(stream: string): void {
    this.#degradedAcks.inc({ stream })
  }

  replicatedAckWait(seconds: number, copied: boolean): void {
    this.#ackWait.observe({ outcome: copied ? 'copied' : 'timeout' }, seconds)
  }

  replicationFetchLatency(seconds: number): void {
    this.#copyLatency.observe(seconds)
  }

  replicaDiverged(): void {
    this.#divergences.inc()
  }

  corrupt(action: string): void {
    this.#corrupt.inc({ action })
  }

  httpRequest(route: string, status: number): void {
    this.#httpRequests.inc({ route, status: String(status) })
  }

  /** Bytes this process has written to storage since it started (null where /proc/self/io is unreadable). */
  writtenBytes(): number | null {
    const now = this.#readWritten()
    return now === null ? null : now - (this.#startWrittenBytes ?? 0)
  }

  /**
   * Days until the disk's rated endurance is used up at this process's average
   * write rate since it started; null when unknown (no rating, no writes yet).
   */
  enduranceDays(enduranceTBW: number | null): number | null {
    const written = this.writtenBytes()
    const elapsedS = (this.#nowMs() - this.#startedAtMs) / 1000
    if (enduranceTBW === null || written === null || written <= 0 || elapsedS <= 0) return null
    const perDay = (written / elapsedS) * SECONDS_PER_DAY
    return (enduranceTBW * TB) / perDay
  }

  get contentType(): string {
    return this.registry.contentType
  }

  async text(): Promise<string> {
    const sources = this.#sources
    this.#scrape =
      sources === null
        ? null
        : { partitions: sources.partitions(), sinks: sources.sinks(), followers: sources.followers() }
    try {
      return await this.registry.metrics()
    } finally {
      this.#scrape = null
    }
  }

  #partitions(): readonly PartitionFigures[] {
    return this.#scrape?.partitions ?? this.#sources?.partitions() ?? []
  }

  #followers(): readonly PartitionFollowerFigures[] {
    return this.#scrape?.followers ?? this.#sources?.followers() ?? []
  }

  #sinks(): readonly SinkFigures[] {
    return this.#scrape?.sinks ?? this.#sources?.sinks() ?? []
  }

  /** Gauges and counters whose values are read from the sources at scrape time. */
  #stateMetrics(enduranceTBW: number | null): void {
    const r = this.registry
    const sources = (): MetricSources | null => this.#sources
    const partitions = (): readonly PartitionFigures[] => this.#partitions()
    const sinks = (): readonly SinkFigures[] => this.#sinks()
    const partitionGauge = (name: string, help: string, value: (p: PartitionFigures) => number): void => {
      new Gauge({
        name: `${METRIC_PREFIX}${name}`,
        help,
        labelNames: ['stream', 'partition'],
        registers: [r],
        collect() {
          this.reset()
          for (const p of partitions())
            this.set({ stream: p.stream, partition: String(p.partition) }, value(p))
        },
      })
    }
    partitionGauge('partition_bytes', 'Bytes of record batches stored for the partition', (p) => p.bytes)
    partitionGauge('partition_first_offset', 'First offset still stored', (p) => p.firstOffset)
    partitionGauge('partition_next_offset', 'Offset the next record will get', (p) => p.nextOffset)

    new Gauge({
      name: `${METRIC_PREFIX}stored_bytes`,
      help: 'Bytes of record batches stored, all partitions',
      registers: [r],
      collect() {
        this.set(partitions().reduce((sum, p) => sum + p.bytes, 0))
      },
    })
    const peers = (): readonly PeerFigures[] => sources()?.peers() ?? []
    new Gauge({
      name: `${METRIC_PREFIX}peers_connected`,
      help: 'Replication peers this node copies from over a live link',
      registers: [r],
      collect() {
        this.set(peers().filter((p) => p.state === 'connected').length)
      },
    })
    new Gauge({
      name: `${METRIC_PREFIX}peer_rtt_seconds`,
      help: "Round-trip time of the replication link's last heartbeat, per peer",
      labelNames: ['peer'],
      registers: [r],
      collect() {
        this.reset()
        for (const p of peers())
          if (p.nodeId !== null && p.rttMs !== null) this.set({ peer: p.nodeId }, p.rttMs / 1000)
      },
    })
    new Gauge({
      name: `${METRIC_PREFIX}partition_replicated_next`,
      help: "The next offset after the highest record held fdatasync'd by minInsync nodes (this one included)",
      labelNames: ['stream', 'partition'],
      registers: [r],
      collect() {
        this.reset()
        for (const p of sources()?.replicated() ?? [])
          this.set({ stream: p.stream, partition: String(p.partition) }, p.replicatedNext)
      },
    })
    new Gauge({
      name: `${METRIC_PREFIX}replica_lag_records`,
      help: "Records a peer holds durably that this node's copy of its partition does not have yet",
      labelNames: ['origin', 'stream', 'partition'],
      registers: [r],
      collect() {
        this.reset()
        for (const p of peers())
          for (const c of p.copies)
            if (p.nodeId !== null)
              this.set({ origin: p.nodeId, stream: c.stream, partition: String(c.partition) }, c.lagRecords)
      },
    })
    const followers = (): readonly PartitionFollowerFigures[] => this.#followers()
    new Gauge({
      name: `${METRIC_PREFIX}partition_insync_followers`,
      help: 'Followers picked to copy the partition whose link is up and whose copy lacks no record older than cluster.followerTimeoutMs',
      labelNames: ['stream', 'partition'],
      registers: [r],
      collect() {
        this.reset()
        for (const p of followers())
          this.set(
            { stream: p.stream, partition: String(p.partition) },
            p.followers.filter((f) => f.inSync).length,
          )
      },
    })
    const followerGauge = (
      name: string,
      help: string,
      value: (f: PartitionFollowerFigures['followers'][number]) => number,
    ): void => {
      new Gauge({
        name: `${METRIC_PREFIX}${name}`,
        help,
        labelNames: ['follower', 'stream', 'partition'],
        registers: [r],
        collect() {
          this.reset()
          for (const p of followers())
            for (const f of p.followers)
              this.set({ follower: f.follower, stream: p.stream, partition: String(p.partition) }, value(f))
        },
      })
    }
    followerGauge(
      'follower_lag_records',
      "Records durable here that a follower's copy of this node's partition does not hold fdatasync-ed yet",
      (f) => f.lagRecords,
    )
    followerGauge(
      'follower_lag_bytes',
      'The same in bytes (estimated from the partition bytes per record)',
      (f) => f.lagBytes,
    )
    followerGauge(
      'follower_lag_seconds',
      "Age of the oldest record durable here that a follower's copy lacks",
      (f) => f.lagSeconds,
    )
    new Gauge({
      name: `${METRIC_PREFIX}mqtt_connections`,
      help: 'MQTT clients connected now',
      registers: [r],
      collect() {
        this.set(sources()?.connections() ?? 0)
      },
    })
    new Gauge({
      name: `${METRIC_PREFIX}disk_used_ratio`,
      help: "How full the data directory's filesystem is (0 to 1), as the disk guard last saw it",
      registers: [r],
      collect() {
        const used = sources()?.disk().usedPercent
        if (used !== null && used !== undefined) this.set(used / 100)
      },
    })
    new Gauge({
      name: `${METRIC_PREFIX}disk_full`,
      help: '1 while the data disk is above limits.diskHighWaterPercent (onFull policies apply)',
      registers: [r],
      collect() {
        this.set(sources()?.disk().full === true ? 1 : 0)
      },
    })
    const self = this
    // Without /proc/self/io (not Linux, a hardened /proc) the wear metrics are left out, not shown as 0.
    if (this.#startWrittenBytes !== null) {
      new Counter({
        name: `${METRIC_PREFIX}disk_written_bytes_total`,
        help: 'Bytes this process wrote to storage since it started (write_bytes of /proc/self/io): flash wear',
        registers: [r],
        collect() {
          this.reset()
          this.inc(self.writtenBytes() ?? 0)
        },
      })
    }
    if (enduranceTBW !== null && this.#startWrittenBytes !== null) {
      new Gauge({
        name: `${METRIC_PREFIX}storage_endurance_days`,
        help: 'Days until metrics.storageEnduranceTBW is written at this process average write rate since start (+Inf before any write)',
        registers: [r],
        collect() {
          this.set(self.enduranceDays(enduranceTBW) ?? Number.POSITIVE_INFINITY)
        },
      })
    }

    const sinkLabels = ['sink', 'stream', 'partition'] as const
    const labelsOf = (s: SinkFigures) => ({ sink: s.sink, stream: s.stream, partition: String(s.partition) })
    const sinkGauge = (name: string, help: string, value: (s: SinkFigures) => number): void => {
      new Gauge({
        name: `${METRIC_PREFIX}${name}`,
        help,
        labelNames: sinkLabels,
        registers: [r],
        collect() {
          this.reset()
          for (const s of sinks()) this.set(labelsOf(s), value(s))
        },
      })
    }
    const sinkCounter = (name: string, help: string, value: (s: SinkFigures) => number): void => {
      new Counter({
        name: `${METRIC_PREFIX}${name}`,
        help,
        labelNames: sinkLabels,
        registers: [r],
        collect() {
          this.reset()
          for (const s of sinks()) this.inc(labelsOf(s), value(s))
        },
      })
    }
    sinkGauge('sink_lag_records', 'Records not yet forwarded by the sink', (s) => s.lagRecords)
    sinkGauge('sink_lag_bytes', 'Bytes not yet forwarded by the sink (estimated)', (s) => s.lagBytes)
    sinkGauge(
      'sink_lag_seconds',
      'Age of the oldest record the sink has not forwarded: the recovery point objective',
      (s) => s.lagSeconds,
    )
    sinkCounter('sink_forwarded_records_total', 'Records the sink acknowledged', (s) => s.forwarded)
    sinkCounter(
      'sink_dead_lettered_records_total',
      'Records the sink refused for good, written to the dead-letter stream',
      (s) => s.deadLettered,
    )
    sinkCounter('sink_retries_total', 'Sends retried after a retriable failure', (s) => s.retries)
    sinkCounter(
      'sink_stuck_restarts_total',
      'Times the sink looked connected but did not answer and was restarted',
      (s) => s.stuckRestarts,
    )
  }
}
