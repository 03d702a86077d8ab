// The parts of a node, built in dependency order by the composition root
// (src/index.ts): the data dir's lock and node id, the admin token, the log
// store with its damage policy, ingest, consumer groups, upstream, the disk
// guard, the broker and the housekeeping timers. Nothing listens yet: start()
// in index.ts opens the listeners. `begin` is the step between: tail
// recovery (in a cluster), the new incarnation (log/incarnation.ts), then
// the writes that waited for it. Wiring only.

import { ConsumerGroups } from './admin/consumer-groups.ts'
import { assembleCluster, type ClusterParts, clusterAuth } from './assemble-cluster.ts'
import { Broker } from './broker/broker.ts'
import { createNodeId, loadOrCreateNodeId } from './cluster/node-identity.ts'
import { readToken } from './config/http-token.ts'
import type { Config } from './config/schema.ts'
import { Ingest } from './ingest/ingest.ts'
import { Router } from './ingest/router.ts'
import { claimDataDir } from './lib/pid-lock.ts'
import { DiskGuard } from './log/disk-guard.ts'
import { Housekeeping } from './log/housekeeping.ts'
import { IncarnationFile, type IncarnationReport } from './log/incarnation.ts'
import type { PartitionRef } from './log/log-store.ts'
import { appendQuarantineGaps, openLogStore } from './log/open-store.ts'
import type { SegmentLogStore } from './log/segment-log-store.ts'
import type { Logger } from './observability/logger.ts'
import type { Metrics } from './observability/metrics.ts'
import { Upstream } from './upstream/upstream.ts'

/** The parts that exist once start() has opened the store. */
export interface NodeParts {
  readonly nodeId: string
  readonly store: SegmentLogStore
  readonly ingest: Ingest
  readonly groups: ConsumerGroups
  readonly guard: DiskGuard
  readonly housekeeping: Housekeeping
  readonly upstream: Upstream
  readonly broker: Broker
  /** Replication and discovery; null when the node runs alone. */
  readonly cluster: ClusterParts | null
  /** The admin API's token, read before anything was opened (null: none configured). */
  readonly httpToken: string | null
  readonly releaseLock: () => void
  /**
   * Before the node writes a record and once replication listens: fetches
   * its lost tail back from peers, begins the new incarnation, then writes
   * what waited for it (gap records of quarantined batches, the disk check).
   */
  readonly begin: () => Promise<IncarnationReport>
}

/** Takes the data dir (pid lock, node id), opens the store and builds every part; nothing listens yet. */
export async function assembleNode(
  config: Readonly<Config>,
  metrics: Metrics,
  log: Logger,
  storeOpen: (open: boolean) => void,
): Promise<NodeParts> {
  const { dataDir, limits } = config
  // Undone in reverse when a later step fails, so a failed start leaves nothing open or locked.
  const releaseLock = claimDataDir(dataDir)
  const undo: Array<() => unknown> = [releaseLock]
  try {
    // Read first: a missing or short token file stops the start before anything is opened.
    const httpToken = config.http.port === null ? null : readToken(config.http)
    const auth = clusterAuth(config)
    const origin = loadOrCreateNodeId(dataDir)
    const renewOrigin = () => createNodeId(dataDir)
    const opened = await openLogStore({ dataDir, limits, origin, renewOrigin, metrics, log })
    const { store, recovery, origin: nodeId } = opened
    storeOpen(true)
    undo.unshift(() => {
      storeOpen(false)
      return store.close()
    })
    log.info({ nodeId, dataDir, recovery }, 'log store open')
    const incarnations = new IncarnationFile(dataDir)
    if (incarnations.damaged !== null)
      log.error(
        { code: 'TRIB_INCARNATION_DAMAGED', reason: incarnations.damaged },
        'incarnation state damaged; moved aside',
      )
    const holes = recovery.quarantined.filter((damage) => damage.origin === nodeId)
    const cluster = assembleCluster(config, auth, nodeId, store, metrics, log, incarnations, holes)
    const router = new Router(config.streams, config.unmatched)
    const replication = cluster === null ? null : { acks: cluster.replicator, report: cluster.degradeReport }
    const ingest = new Ingest(store, router, limits, () => guard.full, metrics, replication)
    await ingest.prepare(config.streams)
    const groups = new ConsumerGroups(store.environment, store, config.http.groupExpireAfterMs)
    groups.load()
    const upstream = new Upstream({ config, store, env: store.environment, log })
    undo.unshift(() => upstream.close())
    await upstream.start()
    const { diskHighWaterPercent: highWaterPercent, maxPayloadBytes, maxQueuedPerSession } = limits
    const neededFrom = (ref: PartitionRef) => upstream.neededFrom(ref)
    const guard = new DiskGuard({
      dataDir,
      highWaterPercent,
      streams: config.streams,
      store,
      log,
      neededFrom,
    })
    const { host, port } = config.mqtt
    const brokerOptions = { host, port, nodeId, maxPayloadBytes, maxQueuedPerSession, metrics }
    const broker = new Broker(brokerOptions, ingest, store.environment, log)
    const expireGroups = () => groups.expire()
    const housekeeping = new Housekeeping({ store, guard, config, expireGroups, metrics, log })
    return {
      nodeId,
      store,
      ingest,
      groups,
      guard,
      housekeeping,
      upstream,
      broker,
      cluster,
      httpToken,
      releaseLock,
      begin: async () => {
        const known = incarnations.state.followers
        const none = { outcomes: [], unconfirmed: [], mended: [] }
        const tails = (await cluster?.recoverTail(known)) ?? none
        const report = incarnations.begin(store, tails)
        if (report.uncertain)
          log.warn({ code: 'TRIB_TAIL_UNCONFIRMED', ...report }, `incarnation ${report.incarnation} begins`)
        else log.info({ ...report }, `incarnation ${report.incarnation} begins`)
        await appendQuarantineGaps(
          store,
          holes.filter((hole) => !tails.mended.includes(hole)),
        )
        await guard.check()
        return report
      },
    }
  } catch (err) {
    for (const step of undo) await step()
    throw err
  }
}
