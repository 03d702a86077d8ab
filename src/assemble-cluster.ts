// The cluster parts of a node, when `cluster:` is configured (part of the
// composition root, beside assemble.ts): the secret read at start, the TLS
// transport keyed from it, the replicator over the store, and discovery
// (static peers, and mDNS unless turned off) feeding it addresses. A node id
// conflict on this node's own id stops replication (TRIB_NODE_ID_CONFLICT).
// start() listens and starts discovery; recoverTail() waits for the
// followers this node had (tail recovery, before it writes a record);
// close() stops both. Wiring only.

import { type Discovery, nodeIdConflictError } from './cluster/discovery.ts'
import { MdnsDiscovery } from './cluster/mdns-discovery.ts'
import { readClusterSecret } from './cluster/secret.ts'
import { StaticPeers } from './cluster/static-peers.ts'
import type { Config } from './config/schema.ts'
import type { DegradeReport } from './ingest/ingest.ts'
import type { IncarnationFile } from './log/incarnation.ts'
import type { SegmentLogStore } from './log/segment-log-store.ts'
import type { Logger } from './observability/logger.ts'
import type { Metrics } from './observability/metrics.ts'
import { REPLICATION_PROTOCOL_VERSION } from './replication/frame-codec.ts'
import { Replicator, type TailRecoveryReport } from './replication/replicator.ts'
import { TlsPskTransport } from './replication/transport.ts'

export interface ClusterParts {
  readonly name: string
  readonly replicator: Replicator
  /** Replicated acks given as durable (onTooFewReplicas: degrade): counted, logged once per episode. */
  readonly degradeReport: DegradeReport
  /** Listens for peers and starts discovery; the replication address bound. */
  start(): Promise<{ host: string; port: number }>
  /** This node's own records back from its followers' copies, up to `cluster.tailRecoveryMs` (after start). */
  recoverTail(known: readonly string[]): Promise<TailRecoveryReport>
  close(): Promise<void>
}

/** Reads the secret now (a bad file stops the start before anything opens); null without `cluster:`. */
export function clusterSecret(config: Readonly<Config>): Buffer | null {
  return config.cluster === null ? null : readClusterSecret(config.cluster.secretFile)
}

export function assembleCluster(
  config: Readonly<Config>,
  secret: Buffer | null,
  nodeId: string,
  store: SegmentLogStore,
  metrics: Metrics,
  log: Logger,
  incarnations: Pick<IncarnationFile, 'addFollower'>,
): ClusterParts | null {
  const cluster = config.cluster
  if (cluster === null || secret === null) return null
  const logger = log.child({ component: 'replication' })
  const transport = new TlsPskTransport({
    cluster: cluster.name,
    secret,
    onRefused: ({ address, port, kind, reason }) => {
      metrics.replicationRefused('TRIB_PEER_REFUSED')
      logger.warn(
        { code: 'TRIB_PEER_REFUSED', address, port, kind, reason },
        'replication connection refused',
      )
    },
  })
  const replicator = new Replicator({
    link: {
      cluster: cluster.name,
      nodeId,
      replicationPort: cluster.replicationPort,
      heartbeatMs: cluster.heartbeatMs,
      timeoutMs: cluster.followerTimeoutMs,
    },
    transport,
    followerExpireMs: cluster.followerExpireMs,
    listen: { host: cluster.replicationHost, port: cluster.replicationPort },
    log: store,
    logger,
    onRefused: (code) => metrics.replicationRefused(code),
    onDiverged: () => metrics.replicaDiverged(),
    onFollower: (follower) => incarnations.addFollower(follower),
  })
  const discoveries: Discovery[] = []
  return {
    name: cluster.name,
    replicator,
    degradeReport: {
      degraded: (stream, episodeStarted) => {
        metrics.replicatedAckDegraded(stream)
        if (episodeStarted)
          logger.warn(
            { code: 'TRIB_NOT_ENOUGH_REPLICAS', stream },
            'too few copies in time: acknowledging as durable (onTooFewReplicas: degrade) until enough come back',
          )
      },
    },
    async start() {
      const address = await replicator.start()
      discoveries.push(new StaticPeers({ cluster: cluster.name, peers: cluster.peers }))
      if (cluster.mdns) {
        const protocol = REPLICATION_PROTOCOL_VERSION
        discoveries.push(
          new MdnsDiscovery({
            cluster: cluster.name,
            nodeId,
            replicationPort: address.port,
            protocol,
            log: logger,
          }),
        )
      }
      for (const discovery of discoveries) {
        discovery.on('found', (peer) => {
          if (peer.cluster === cluster.name) replicator.addPeer(peer)
        })
        discovery.on('conflict', (conflict) => {
          if (conflict.ownId) replicator.refuseAll(nodeIdConflictError(conflict))
          else logger.warn({ code: 'TRIB_NODE_ID_CONFLICT', ...conflict }, 'two peers announce one node id')
        })
        await discovery.start()
      }
      logger.info(
        { cluster: cluster.name, address, peers: cluster.peers, mdns: cluster.mdns },
        'replication listening',
      )
      return address
    },
    recoverTail: (known) => replicator.recoverTail(known, cluster.tailRecoveryMs),
    async close() {
      for (const discovery of discoveries) await discovery.close()
      await replicator.close()
    },
  }
}
