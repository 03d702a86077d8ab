// The cluster parts of a node, when `cluster:` is configured (part of the
// composition root, beside assemble.ts): the secret or the certificates read
// at start, the TLS transport they key (TLS-PSK or mutual TLS), the
// replicator over the store, and discovery (static peers, and mDNS unless
// turned off) feeding it addresses. A node id conflict on this node's own id
// stops replication (TRIB_NODE_ID_CONFLICT). start() listens and starts
// discovery; recoverTail() waits for the followers this node had (tail
// recovery, before it writes a record); close() stops both;
// reloadCertificates() reads cluster.tls again (SIGHUP). Wiring only.

import { type Discovery, nodeIdConflictError } from './cluster/discovery.ts'
import { MdnsDiscovery } from './cluster/mdns-discovery.ts'
import { readClusterSecret } from './cluster/secret.ts'
import { StaticPeers } from './cluster/static-peers.ts'
import { type ClusterTlsFiles, readClusterTls } from './cluster/tls-files.ts'
import { type Config, DEFAULT_CLUSTER_REPLICAS } from './config/schema.ts'
import { TributaryError } from './errors.ts'
import type { DegradeReport } from './ingest/ingest.ts'
import type { IncarnationFile } from './log/incarnation.ts'
import type { CorruptBatch } from './log/log-store.ts'
import type { SegmentLogStore } from './log/segment-log-store.ts'
import type { Logger } from './observability/logger.ts'
import type { Metrics } from './observability/metrics.ts'
import { REPLICATION_PROTOCOL_VERSION } from './replication/frame-codec.ts'
import { type ClusterCredentials, MutualTlsTransport } from './replication/mtls-transport.ts'
import { Replicator } from './replication/replicator.ts'
import type { TailRecoveryReport } from './replication/tail-recovery.ts'
import {
  type PeerDrop,
  type PeerRefusal,
  TlsPskTransport,
  type TlsTransport,
} from './replication/transport.ts'

export interface ClusterParts {
  readonly name: string
  readonly replicator: Replicator
  /** Replicated acks given as durable (onTooFewReplicas: degrade): counted, logged once per episode. */
  readonly degradeReport: DegradeReport
  /** Listens for peers and starts discovery; the replication address bound. */
  start(): Promise<{ host: string; port: number }>
  /**
   * This node's own records back from its followers' copies, up to
   * `cluster.tailRecoveryMs` (after start): its lost tail, and its batches
   * quarantined at start (`holes` of assembleCluster).
   */
  recoverTail(known: readonly string[]): Promise<TailRecoveryReport>
  close(): Promise<void>
  /**
   * Reads cluster.tls again for the connections made from now on (links up keep going); false
   * when the cluster uses a secret. Throws TRIB_CLUSTER_TLS_INVALID and keeps the old ones.
   */
  reloadCertificates(): boolean
}

/** How this node's replication links authenticate: the cluster secret, or certificates (cluster.tls). */
export type ClusterAuth =
  | { readonly kind: 'secret'; readonly secret: Buffer }
  | { readonly kind: 'tls'; readonly files: ClusterTlsFiles; readonly credentials: ClusterCredentials }

/** Reads the secret or the certificates now (a bad file stops the start before anything opens); null without `cluster:`. */
export function clusterAuth(config: Readonly<Config>): ClusterAuth | null {
  const cluster = config.cluster
  if (cluster === null) return null
  const { tls, secretFile } = cluster
  if (tls !== undefined) return { kind: 'tls', files: tls, credentials: readClusterTls(tls) }
  if (secretFile !== undefined) return { kind: 'secret', secret: readClusterSecret(secretFile) }
  throw new TributaryError('TRIB_CONFIG_INVALID', 'cluster.secretFile or cluster.tls is required')
}

export function assembleCluster(
  config: Readonly<Config>,
  auth: ClusterAuth | null,
  nodeId: string,
  store: SegmentLogStore,
  metrics: Metrics,
  log: Logger,
  incarnations: Pick<IncarnationFile, 'addFollower' | 'state'>,
  /** This node's batches quarantined at open: fetched back from a follower's copy at start. */
  holes: readonly CorruptBatch[],
): ClusterParts | null {
  const cluster = config.cluster
  if (cluster === null || auth === null) return null
  const logger = log.child({ component: 'replication' })
  const onRefused = ({ address, port, kind, reason }: PeerRefusal): void => {
    metrics.replicationRefused('TRIB_PEER_REFUSED')
    logger.warn({ code: 'TRIB_PEER_REFUSED', address, port, kind, reason }, 'replication connection refused')
  }
  // A reset or timeout in the handshake is the network, not a wrong secret: counted, logged quietly.
  const onDropped = ({ address, port, reason }: PeerDrop): void => {
    metrics.replicationRefused('TRIB_PEER_UNREACHABLE')
    logger.debug({ code: 'TRIB_PEER_UNREACHABLE', address, port, reason }, 'replication handshake dropped')
  }
  let transport: TlsTransport
  let reloadCertificates = (): boolean => false
  if (auth.kind === 'secret') {
    transport = new TlsPskTransport({ cluster: cluster.name, secret: auth.secret, onRefused, onDropped })
  } else {
    const mutual = new MutualTlsTransport({
      cluster: cluster.name,
      credentials: auth.credentials,
      onRefused,
      onDropped,
    })
    const { files } = auth
    reloadCertificates = () => {
      mutual.setCredentials(readClusterTls(files))
      logger.info({ ...files }, 'cluster certificates reloaded: new replication connections use them')
      return true
    }
    transport = mutual
  }
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
    knownFollowers: incarnations.state.followers,
    holes,
    listen: { host: cluster.replicationHost, port: cluster.replicationPort },
    log: store,
    logger,
    onRefused: (code) => metrics.replicationRefused(code),
    onDiverged: () => metrics.replicaDiverged(),
    onFollower: (follower) => incarnations.addFollower(follower),
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
    recoverTail: (known) => replicator.recoverTail(known, cluster.tailRecoveryMs),
    async close() {
      for (const discovery of discoveries) await discovery.close()
      await replicator.close()
    },
    reloadCertificates: () => reloadCertificates(),
  }
}
