// Composition root: createNode(config) wires store, ingest and broker and
// owns their lifecycle. Wiring only; behaviour lives in the modules.
//
// Shutdown order (STYLE.md): stop accepting, finish in-flight appends and
// acks, disconnect clients, close the store.

import { existsSync, mkdirSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { Broker } from './broker/broker.ts'
import { createNodeId, loadOrCreateNodeId } from './cluster/node-identity.ts'
import type { Config, StreamConfig } from './config/schema.ts'
import { TributaryError } from './errors.ts'
import { Ingest } from './ingest/ingest.ts'
import { Router } from './ingest/router.ts'
import { acquirePidLock } from './lib/pid-lock.ts'
import { DiskGuard } from './log/disk-guard.ts'
import { probeEnvironment } from './log/env-probe.ts'
import type { RecoveryReport } from './log/log-store.ts'
import { LMDB_FILE, SegmentLogStore, type SegmentLogStoreOptions } from './log/segment-log-store.ts'
import type { Logger } from './observability/logger.ts'
import { Upstream } from './upstream/upstream.ts'

export interface NodeAddresses {
  readonly mqtt: { readonly host: string; readonly port: number }
}

export interface TributaryNode {
  readonly nodeId: string
  readonly store: SegmentLogStore
  readonly ingest: Ingest
  /** Null until started. */
  readonly upstream: Upstream | null
  /** The data disk as the guard last saw it (usedPercent null until started). */
  readonly disk: { readonly full: boolean; readonly usedPercent: number | null }
  start(): Promise<NodeAddresses>
  /** Stops accepting and lets in-flight appends and acks finish. */
  drain(): Promise<void>
  close(): Promise<void>
  /** New retention policies per stream (SIGHUP): the next retention run applies them. */
  setRetention(streams: readonly StreamConfig[]): void
}

export function createNode(config: Readonly<Config>, log: Logger): TributaryNode {
  try {
    mkdirSync(config.dataDir, { recursive: true })
  } catch (err) {
    throw new TributaryError('TRIB_DATA_DIR_UNUSABLE', config.dataDir, { cause: err })
  }
  const lock = acquirePidLock(join(config.dataDir, 'tributary.pid'))
  if ('heldBy' in lock)
    throw new TributaryError('TRIB_DATA_DIR_LOCKED', `${config.dataDir} (pid ${lock.heldBy})`)
  let nodeId = loadOrCreateNodeId(config.dataDir)
  const storeOptions = (): SegmentLogStoreOptions => ({
    dataDir: config.dataDir,
    origin: nodeId,
    maxPendingAppends: config.limits.maxPendingAppends,
    segmentBytes: config.limits.segmentBytes,
    onCorrupt: (damage, action) =>
      log.error({ code: 'TRIB_BATCH_CORRUPT', damage, action }, `damaged batch ${action}`),
  })
  let store = new SegmentLogStore(storeOptions())
  let diskGuard: DiskGuard | null = null
  const ingest = (): Ingest =>
    new Ingest(
      store,
      new Router(config.streams, config.unmatched),
      config.limits,
      () => diskGuard?.full === true,
    )
  let currentIngest = ingest()
  let broker: Broker | null = null
  let upstream: Upstream | null = null
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

  async function runRetention(): Promise<void> {
    const policies = retentionPolicies
    const report = await store.applyRetention((name) => policies.get(name), Date.now())
    if (report.batchesDeleted > 0) log.info({ retention: report }, 'retention deleted old records')
    if (report.heldBack.length > 0)
      log.info({ heldBack: report.heldBack }, 'retention held back by consumers')
  }

  async function start(): Promise<NodeAddresses> {
    const recovery = await openStore()
    log.info({ nodeId, dataDir: config.dataDir, recovery }, 'log store open')
    await currentIngest.prepare(config.streams)
    upstream = new Upstream({ config, store, env: store.environment, origin: nodeId, log })
    upstream.start()
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
      guard.check().catch((err: unknown) => log.error({ err }, 'disk check failed'))
    }
    await guard.check()
    broker = new Broker(
      {
        host: config.mqtt.host,
        port: config.mqtt.port,
        nodeId,
        maxPayloadBytes: config.limits.maxPayloadBytes,
        maxQueuedPerSession: config.limits.maxQueuedPerSession,
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
    return { mqtt: { host: address.address, port: address.port } }
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
    drained ??= drain()
    await drained
    await broker?.close()
    // Batches on the wire are abandoned: sent again after a restart (at-least-once),
    // or skipped by the sink's own position (exactly-once).
    await upstream?.close()
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
