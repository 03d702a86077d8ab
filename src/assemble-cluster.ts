// The cluster parts of a node, when `cluster:` is configured (part of the
// composition root, beside assemble.ts): the secret read at start, the TLS
// transport keyed from it, the replicator over the store, and discovery
// (static peers, and mDNS unless turned off) feeding it addresses. A node id
// conflict on this node's own id stops replication (TRIB_NODE_ID_CONFLICT).
// start() listens and starts discovery; close() stops both. Wiring only.

import { type Discovery, nodeIdConflictError } from './cluster/discovery.ts'
import { MdnsDiscovery } from './cluster/mdns-discovery.ts'
import { readClusterSecret } from './cluster/secret.ts'
import { StaticPeers } from './cluster/static-peers.ts'
import { type Config, DEFAULT_CLUSTER_REPLICAS } from './config/schema.ts'
import type { DegradeReport } from './ingest/ingest.ts'
import type { SegmentLogStore } from './log/segment-log-store.ts'
import type { Logger } from './observability/logger.ts'
import type { Metrics } from './observability/metrics.ts'
import { REPLICATION_PROTOCOL_VERSION } from './replication/frame-codec.ts'
import { Replicator } from './replication/replicator.ts'
import { TlsPskTransport } from './replication/transport.ts'

/**
 * A node's incarnation: the first. A node that may have lost a tail its
 * followers hold starts the next one (the cluster issue's recovery step).
 */
const FIRST_INCARNATION = 1

export interface ClusterParts {
  readonly name: string
  readonly replicator: Replicator
  /** Replicated acks given as durable (onTooFewReplicas: degrade): counted, logged once per episode. */
  readonly degradeReport: DegradeReport
  /** Listens for peers and starts discovery; the replication address bound. */
  start(): Promise<{ host: string; port: number }>
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
      incarnation: FIRST_INCARNATION,
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
    replicasOf: (stream) =>
      config.streams.find((s) => s.name === stream)?.replicas ?? DEFAULT_CLUSTER_REPLICAS,
    onAckWait: (seconds, copied) => metrics.replicatedAckWait(seconds, copied),
    onCopyLatency: (seconds) => metrics.replicationFetchLatency(seconds),
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
    async close() {
      for (const discovery of discoveries) await discovery.close()
      await replicator.close()
    },
  }
}
