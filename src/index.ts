// Composition root: createNode(config) wires the parts and owns their
// lifecycle (start, drain, close, closed). Wiring only; behaviour lives in
// the modules.
//
// Start order: the parts (assemble.ts: pid lock and node id, admin token, log
// store with its damage policy, ingest, consumer groups, upstream, disk
// guard, broker), then the MQTT listener, the timers and the admin API.
// Shutdown order (STYLE.md): admin API (its live tails end), stop
// accepting, finish in-flight appends and acks, disconnect clients, stop the
// sinks, close the store (and with it the LMDB environment).

import { nodeView } from './admin/node-view.ts'
import { AdminServer } from './admin/server.ts'
import { assembleNode, type NodeParts } from './assemble.ts'
import type { Config, StreamConfig } from './config/schema.ts'
import { TributaryError } from './errors.ts'
import type { Ingest } from './ingest/ingest.ts'
import type { IncarnationReport } from './log/incarnation.ts'
import type { SegmentLogStore } from './log/segment-log-store.ts'
import type { Logger } from './observability/logger.ts'
import { Metrics } from './observability/metrics.ts'
import type { RecentLogEvents } from './observability/recent-log.ts'
import type { Upstream } from './upstream/upstream.ts'

export interface NodeAddresses {
  readonly mqtt: { readonly host: string; readonly port: number }
  /** The admin and consumer HTTP API; null when http.port is null. */
  readonly http: { readonly host: string; readonly port: number } | null
  /** Where peers dial to replicate; null when the node runs alone. */
  readonly replication: { readonly host: string; readonly port: number } | null
}

export interface TributaryNode {
  /** The node id (TRIB_NOT_READY before start() has opened the store, like `store` and `ingest`). */
  readonly nodeId: string
  readonly store: SegmentLogStore
  readonly ingest: Ingest
  /** Null until started. */
  readonly upstream: Upstream | null
  /** The data disk as the guard last saw it (usedPercent null until started). */
  readonly disk: { readonly full: boolean; readonly usedPercent: number | null }
  /** This node's metrics registry (scraped at GET /metrics). */
  readonly metrics: Metrics
  /** The admin API once started (its fastify app answers inject() in tests); null when disabled. */
  readonly admin: AdminServer | null
  start(): Promise<NodeAddresses>
  /** Stops accepting and lets in-flight appends and acks finish. */
  drain(): Promise<void>
  close(): Promise<void>
  /** Resolves once close() has finished (whoever called it). */
  closed(): Promise<void>
  /** New retention policies per stream (SIGHUP): the next retention run applies them. */
  setRetention(streams: readonly StreamConfig[]): void
  /**
   * Reads cluster.tls again (SIGHUP) for the replication connections made from now on; false when
   * the node is not started or its cluster uses a secret. Throws TRIB_CLUSTER_TLS_INVALID and keeps the old ones.
   */
  reloadClusterCertificates(): boolean
}

/**
 * `recent`: the ring the logger also writes warn/error lines to (createLogger),
 * shown by /v1/status and the status page; without it they show none.
 */
export function createNode(config: Readonly<Config>, log: Logger, recent?: RecentLogEvents): TributaryNode {
  const metrics = new Metrics({ storageEnduranceTBW: config.metrics.storageEnduranceTBW })
  const startedAtMs = Date.now()
  let running: NodeParts | null = null
  let admin: AdminServer | null = null
  let storeOpen = false
  let incarnation: IncarnationReport | null = null
  let started: Promise<NodeAddresses> | null = null
  let drained: Promise<void> | null = null
  let closing: Promise<void> | null = null
  let resolveClosed: () => void = () => undefined
  const closedPromise = new Promise<void>((resolve) => {
    resolveClosed = resolve
  })

  const parts = (): NodeParts => {
    if (running === null) throw new TributaryError('TRIB_NOT_READY', 'start() the node first')
    return running
  }

  async function start(): Promise<NodeAddresses> {
    const assembled = await assembleNode(config, metrics, log, (open) => {
      storeOpen = open
    })
    running = assembled
    const { nodeId, store, broker, upstream, guard, groups, httpToken, cluster } = assembled
    // Replication first: the node's lost tail comes back from its followers before it writes a record.
    const replication = (await cluster?.start()) ?? null
    incarnation = await assembled.begin()
    const address = await broker.listen()
    assembled.housekeeping.start()
    log.info({ mqtt: `${address.address}:${address.port}` }, 'tributary accepting MQTT connections')
    const mqtt = { host: address.address, port: address.port }
    const view = nodeView({
      nodeId,
      startedAtMs,
      store,
      storeOpen: () => storeOpen,
      broker: () => broker,
      upstream: () => upstream,
      cluster,
      minInsync: (stream) => config.streams.find((s) => s.name === stream)?.minInsync ?? 1,
      guard,
      incarnation: () => incarnation,
      highWaterPercent: config.limits.diskHighWaterPercent,
      recent,
    })
    metrics.setSources({
      partitions: () => store.partitions(),
      sinks: () => upstream.status(),
      peers: () => cluster?.replicator.status() ?? [],
      replicated: () => view.cluster()?.partitions ?? [],
      followers: () => cluster?.replicator.followers() ?? [],
      connections: () => broker.connections,
      disk: () => view.disk(),
    })
    if (config.http.port === null) return { mqtt, http: null, replication }
    const { storageEnduranceTBW } = config.metrics
    admin = new AdminServer({
      http: config.http,
      storageEnduranceTBW,
      token: httpToken,
      view,
      groups,
      metrics,
      log,
    })
    const http = await admin.listen()
    log.info({ http: `${http.host}:${http.port}`, auth: httpToken !== null }, 'admin API listening')
    return { mqtt, http, replication }
  }

  async function drain(): Promise<void> {
    running?.housekeeping.close()
    // Stop new connections; publishes already read keep flowing into the store, and
    // their acks are written when their commits are durable.
    // stopAccepting() resolves only once every connection has ended; close() awaits
    // it after disconnecting the clients, so it is not awaited here.
    running?.broker.stopAccepting()
    await running?.store.idle()
  }

  async function close(): Promise<void> {
    if (started !== null) await started.catch(() => undefined)
    await admin?.close()
    drained ??= drain()
    await drained
    const parts = running
    if (parts !== null) {
      await parts.broker.close()
      await parts.cluster?.close()
      // Batches on the wire are abandoned: sent again after a restart (at-least-once),
      // or skipped by the sink's own position (exactly-once).
      await parts.upstream.close()
      storeOpen = false
      await parts.store.close()
      parts.releaseLock()
    }
    log.info('tributary stopped')
  }

  return {
    get nodeId() {
      return parts().nodeId
    },
    get store() {
      return parts().store
    },
    get ingest() {
      return parts().ingest
    },
    get upstream() {
      return running?.upstream ?? null
    },
    get metrics() {
      return metrics
    },
    get admin() {
      return admin
    },
    get disk() {
      return { full: running?.guard.full === true, usedPercent: running?.guard.usedPercent ?? null }
    },
    start: () => {
      started ??= start()
      return started
    },
    drain: () => {
      drained ??= drain()
      return drained
    },
    close: () => {
      closing ??= close().finally(resolveClosed)
      return closing
    },
    closed: () => closedPromise,
    setRetention: (streams) => running?.housekeeping.setRetention(streams),
    reloadClusterCertificates: () => running?.cluster?.reloadCertificates() ?? false,
  }
}
