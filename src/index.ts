// Composition root: createNode(config) wires store, ingest and broker and
// owns their lifecycle. Wiring only; behaviour lives in the modules.
//
// Shutdown order (STYLE.md): stop accepting, finish in-flight appends and
// acks, disconnect clients, close the store.

import { existsSync, mkdirSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { ConsumerGroups } from './admin/consumer-groups.ts'
import type { NodeView } from './admin/node-view.ts'
import { AdminServer, readToken } from './admin/server.ts'
import { Broker } from './broker/broker.ts'
import { createNodeId, loadOrCreateNodeId } from './cluster/node-identity.ts'
import type { Config, StreamConfig } from './config/schema.ts'
import { TributaryError } from './errors.ts'
import { Ingest } from './ingest/ingest.ts'
import { Router } from './ingest/router.ts'
import { acquirePidLock } from './lib/pid-lock.ts'
import { DiskGuard } from './log/disk-guard.ts'
import { probeEnvironment } from './log/env-probe.ts'
import { gapEntry } from './log/gap-record.ts'
import type { PartitionRef, RecoveryReport } from './log/log-store.ts'
import { LMDB_FILE, SegmentLogStore, type SegmentLogStoreOptions } from './log/segment-log-store.ts'
import type { Logger } from './observability/logger.ts'
import { Metrics } from './observability/metrics.ts'
import type { RecentLogEvents } from './observability/recent-log.ts'
import { Upstream } from './upstream/upstream.ts'

export interface NodeAddresses {
  readonly mqtt: { readonly host: string; readonly port: number }
  /** The admin and consumer HTTP API; null when http.port is null. */
  readonly http: { readonly host: string; readonly port: number } | null
}

export interface TributaryNode {
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
  /** New retention policies per stream (SIGHUP): the next retention run applies them. */
  setRetention(streams: readonly StreamConfig[]): void
}

/**
 * `recent`: the ring the logger also writes warn/error lines to (createLogger),
 * shown by /v1/status and the status page; without it they show none.
 */
export function createNode(config: Readonly<Config>, log: Logger, recent?: RecentLogEvents): TributaryNode {
  try {
    mkdirSync(config.dataDir, { recursive: true })
  } catch (err) {
    throw new TributaryError('TRIB_DATA_DIR_UNUSABLE', config.dataDir, { cause: err })
  }
  const lock = acquirePidLock(join(config.dataDir, 'tributary.pid'))
  if ('heldBy' in lock)
    throw new TributaryError('TRIB_DATA_DIR_LOCKED', `${config.dataDir} (pid ${lock.heldBy})`)
  let nodeId = loadOrCreateNodeId(config.dataDir)
  // Read now: a missing or short token file stops the start before anything is opened.
  let httpToken: string | null
  try {
    httpToken = config.http.port === null ? null : readToken(config.http)
  } catch (err) {
    if ('release' in lock) lock.release()
    throw err
  }
  const metrics = new Metrics({ storageEnduranceTBW: config.metrics.storageEnduranceTBW })
  const storeOptions = (): SegmentLogStoreOptions => ({
    dataDir: config.dataDir,
    origin: nodeId,
    maxPendingAppends: config.limits.maxPendingAppends,
    segmentBytes: config.limits.segmentBytes,
    metrics,
    onCorrupt: (damage, action) => {
      metrics.corrupt(action)
      log.error({ code: 'TRIB_BATCH_CORRUPT', damage, action }, `damaged batch ${action}`)
    },
  })
  let store = new SegmentLogStore(storeOptions())
  let diskGuard: DiskGuard | null = null
  const ingest = (): Ingest =>
    new Ingest(
      store,
      new Router(config.streams, config.unmatched),
      config.limits,
      () => diskGuard?.full === true,
      metrics,
    )
  let currentIngest = ingest()
  let broker: Broker | null = null
  let upstream: Upstream | null = null
  let groups: ConsumerGroups | null = null
  let admin: AdminServer | null = null
  let storeOpen = false
  const startedAtMs = Date.now()
  let retentionTimer: NodeJS.Timeout | null = null
  let diskTimer: NodeJS.Timeout | null = null
  let started: Promise<NodeAddresses> | null = null
  let drained: Promise<void> | null = null
  let closed: Promise<void> | null = null
  let retentionPolicies = new Map(config.streams.map((s) => [s.name, s.retention]))

  async function openStore(): Promise<RecoveryReport> {
    const envPath = join(config.dataDir, LMDB_FILE)
    const probe = await probeEnvironment(config.dataDir, envPath)
    if (!probe.ok) {
      // A damaged environment must not keep the node down: keep it for inspection and
      // start a new log under a new node id, so no offset of the old origin is reused.
      const aside = `${envPath}.damaged-${Date.now()}`
      renameSync(envPath, aside)
      if (existsSync(`${envPath}-lock`)) renameSync(`${envPath}-lock`, `${aside}-lock`)
      const previous = nodeId
      nodeId = createNodeId(config.dataDir)
      log.fatal(
        {
          code: 'TRIB_STORE_DAMAGED',
          reason: probe.reason,
          movedTo: aside,
          previousNodeId: previous,
          nodeId,
        },
        'log store damaged; moved aside and started anew',
      )
      store = new SegmentLogStore(storeOptions())
      currentIngest = ingest()
    }
    return store.open()
  }

  /** A gap record for each batch quarantined at start, so upstream learns which offsets are lost. */
  async function recordQuarantined(recovery: RecoveryReport): Promise<void> {
    const atMs = Date.now()
    const entries = recovery.quarantined.map((damage) => {
      // An unreadable header hides the count: the gap runs to the next record still there.
      const count = damage.recordCount ?? missingFrom(damage, damage.baseOffset)
      const gap = {
        stream: damage.stream,
        partition: damage.partition,
        from: damage.baseOffset,
        to: damage.baseOffset + count - 1,
        count,
        reason: `damaged batch quarantined at start: ${damage.error}`,
        atMs,
      }
      return gapEntry(gap, 'damaged')
    })
    if (entries.length > 0) await store.append({ entries, durability: 'durable' })
  }

  /** How many offsets from `offset` on have no readable record before the next one (or the end). */
  function missingFrom(ref: PartitionRef, offset: number): number {
    const next = store.read(ref, offset, { maxRecords: 1 })
    const found = next.records[0]?.offset ?? next.nextOffset
    return Math.max(1, found - offset)
  }

  async function runRetention(): Promise<void> {
    const expired = (await groups?.expire()) ?? []
    if (expired.length > 0)
      log.info({ groups: expired, afterMs: config.http.groupExpireAfterMs }, 'idle consumer groups deleted')
    const policies = retentionPolicies
    const report = await store.applyRetention((name) => policies.get(name), Date.now())
    metrics.retention(report)
    if (report.batchesDeleted > 0) log.info({ retention: report }, 'retention deleted old records')
    if (report.heldBack.length > 0)
      log.info({ heldBack: report.heldBack }, 'retention held back by consumers')
  }

  async function start(): Promise<NodeAddresses> {
    const recovery = await openStore()
    storeOpen = true
    log.info({ nodeId, dataDir: config.dataDir, recovery }, 'log store open')
    await recordQuarantined(recovery)
    await currentIngest.prepare(config.streams)
    groups = new ConsumerGroups(store.environment, store, nodeId, config.http.groupExpireAfterMs)
    groups.load()
    upstream = new Upstream({ config, store, env: store.environment, origin: nodeId, log })
    await upstream.start()
    const guard = new DiskGuard({
      dataDir: config.dataDir,
      highWaterPercent: config.limits.diskHighWaterPercent,
      streams: config.streams,
      store,
      log,
      neededFrom: (ref) => upstream?.neededFrom(ref) ?? null,
    })
    diskGuard = guard
    const checkDisk = (): void => {
      // A failed check is logged and retried on the next tick; the last verdict stands meanwhile.
      guard.check().then(
        (result) => {
          for (const gap of result.gaps) metrics.gap(gap.stream, gap.count)
        },
        (err: unknown) => log.error({ err }, 'disk check failed'),
      )
    }
    await guard.check()
    broker = new Broker(
      {
        host: config.mqtt.host,
        port: config.mqtt.port,
        nodeId,
        maxPayloadBytes: config.limits.maxPayloadBytes,
        maxQueuedPerSession: config.limits.maxQueuedPerSession,
        metrics,
      },
      currentIngest,
      store.environment,
      log,
    )
    const address = await broker.listen()
    retentionTimer = setInterval(() => {
      // Retention failures are logged and retried on the next tick; ingest is unaffected.
      runRetention().catch((err: unknown) => log.error({ err }, 'retention run failed'))
    }, config.retentionCheckMs)
    retentionTimer.unref()
    diskTimer = setInterval(checkDisk, config.limits.diskCheckMs)
    diskTimer.unref()
    log.info({ mqtt: `${address.address}:${address.port}` }, 'tributary accepting MQTT connections')
    const view = nodeView(guard)
    metrics.setSources({
      partitions: () => store.partitions(),
      sinks: () => upstream?.status() ?? [],
      connections: () => broker?.connections ?? 0,
      disk: () => view.disk(),
    })
    let http: NodeAddresses['http'] = null
    if (config.http.port !== null) {
      admin = new AdminServer({
        http: config.http,
        storageEnduranceTBW: config.metrics.storageEnduranceTBW,
        token: httpToken,
        view,
        groups,
        metrics,
        log,
      })
      http = await admin.listen()
      log.info({ http: `${http.host}:${http.port}`, auth: httpToken !== null }, 'admin API listening')
    }
    return { mqtt: { host: address.address, port: address.port }, http }
  }

  /** What the admin API may see: read-only views of the running parts. */
  function nodeView(guard: DiskGuard): NodeView {
    return {
      nodeId,
      startedAtMs,
      log: {
        partitions: () => store.partitions(),
        read: (ref, from, limits) => store.read(ref, from, limits),
        offsetForTimestamp: (ref, ms) => store.offsetForTimestamp(ref, ms),
      },
      health: () => ({
        mqtt: broker?.listening === true,
        store: storeOpen,
        disk: !guard.full,
      }),
      sinks: () => upstream?.status() ?? [],
      connections: () => broker?.connections ?? 0,
      disk: () => ({
        usedPercent: guard.usedPercent,
        full: guard.full,
        highWaterPercent: config.limits.diskHighWaterPercent,
      }),
      recentErrors: () => recent?.events() ?? [],
    }
  }

  async function drain(): Promise<void> {
    if (retentionTimer !== null) clearInterval(retentionTimer)
    if (diskTimer !== null) clearInterval(diskTimer)
    // Stop new connections; publishes already read keep flowing into the store, and
    // their acks are written when their commits are durable.
    // stopAccepting() resolves only once every connection has ended; close() awaits
    // it after disconnecting the clients, so it is not awaited here.
    broker?.stopAccepting()
    await store.idle()
  }

  async function close(): Promise<void> {
    if (started !== null) await started.catch(() => undefined)
    // The admin API first: its live tails end, and nothing reads the store while it closes.
    await admin?.close()
    drained ??= drain()
    await drained
    await broker?.close()
    // Batches on the wire are abandoned: sent again after a restart (at-least-once),
    // or skipped by the sink's own position (exactly-once).
    await upstream?.close()
    storeOpen = false
    await store.close()
    if ('release' in lock) lock.release()
    log.info('tributary stopped')
  }

  return {
    get nodeId() {
      return nodeId
    },
    get store() {
      return store
    },
    get ingest() {
      return currentIngest
    },
    get upstream() {
      return upstream
    },
    get metrics() {
      return metrics
    },
    get admin() {
      return admin
    },
    get disk() {
      return { full: diskGuard?.full === true, usedPercent: diskGuard?.usedPercent ?? null }
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
      closed ??= close()
      return closed
    },
    setRetention: (streams) => {
      retentionPolicies = new Map(streams.map((s) => [s.name, s.retention]))
    },
  }
}
