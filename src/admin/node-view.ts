// What the admin API may see of a node: read-only status interfaces, plus
// the consumer groups (which write only their own offsets). `nodeView`
// builds one from the running parts (the composition root hands them over);
// tests can fake it.

import type { Broker } from '../broker/broker.ts'
import type { DiskGuard } from '../log/disk-guard.ts'
import type { IncarnationReport } from '../log/incarnation.ts'
import type { LogStore, PartitionRef } from '../log/log-store.ts'
import type { LogEvent, RecentLogEvents } from '../observability/recent-log.ts'
import type { FollowerPosition, InboundConflict, PeerStatus, Replicator } from '../replication/replicator.ts'
import type { ForwarderStatus } from '../upstream/forwarder.ts'
import type { Upstream } from '../upstream/upstream.ts'

export interface HealthChecks {
  /** The MQTT listener accepts connections (false while draining). */
  readonly mqtt: boolean
  readonly store: boolean
  /** The data disk is below limits.diskHighWaterPercent. */
  readonly disk: boolean
}

/** Per partition of this node: how far it is durable here, and how far on `minInsync` nodes. */
export interface ReplicatedPartition {
  readonly stream: string
  readonly partition: number
  readonly minInsync: number
  /** Nodes that hold the partition, this one included (the stream's `replicas`). */
  readonly replicas: number
  readonly durableNext: number
  readonly replicatedNext: number
  /** The followers this node picked to copy the partition, in sync or not, and how far behind. */
  readonly followers: readonly FollowerPosition[]
}

export interface ClusterView {
  readonly name: string
  readonly refused: string | null
  /** One node id following this node from two addresses at once: the newer refused (TRIB_NODE_ID_CONFLICT). */
  readonly conflicts: readonly InboundConflict[]
  readonly partitions: readonly ReplicatedPartition[]
}

export interface DiskView {
  readonly usedPercent: number | null
  readonly full: boolean
  readonly highWaterPercent: number
}

export interface NodeView {
  readonly nodeId: string
  readonly startedAtMs: number
  /** The log, read side only. */
  readonly log: Pick<LogStore, 'partitions' | 'partition' | 'read' | 'offsetForTimestamp'>
  health(): HealthChecks
  sinks(): readonly ForwarderStatus[]
  /** The cluster this node replicates in (null: alone), why replication is refused, if it is, and its partitions' replicatedNext. */
  cluster(): ClusterView | null
  /** The peers it replicates with; empty when alone. */
  peers(): readonly PeerStatus[]
  connections(): number
  /** The incarnation this start began, and what tail recovery found; null until it began. */
  incarnation(): IncarnationReport | null
  disk(): DiskView
  /** The last warn/error log events, newest first (empty when the node keeps none). */
  recentErrors(): readonly LogEvent[]
}

/** The running parts a view reads; the broker and upstream are null until they started. */
export interface ViewedParts {
  readonly nodeId: string
  readonly startedAtMs: number
  readonly store: Pick<
    LogStore,
    'partitions' | 'partition' | 'localPartitions' | 'read' | 'offsetForTimestamp'
  > & { durableNext(ref: PartitionRef): number }
  readonly storeOpen: () => boolean
  readonly broker: () => Pick<Broker, 'listening' | 'connections'> | null
  readonly upstream: () => Pick<Upstream, 'status'> | null
  readonly cluster: {
    readonly name: string
    readonly replicator: Pick<Replicator, 'status' | 'refused' | 'conflicts' | 'replicatedNext' | 'followers'>
  } | null
  /** A stream's minInsync (its config). */
  readonly minInsync: (stream: string) => number
  readonly guard: Pick<DiskGuard, 'full' | 'usedPercent'>
  readonly incarnation: () => IncarnationReport | null
  readonly highWaterPercent: number
  /** The logger's ring of warn/error lines; without it the view shows none. */
  readonly recent: RecentLogEvents | undefined
}

export function nodeView(parts: ViewedParts): NodeView {
  const { store, guard } = parts
  return {
    nodeId: parts.nodeId,
    startedAtMs: parts.startedAtMs,
    log: {
      partitions: () => store.partitions(),
      partition: (ref) => store.partition(ref),
      read: (ref, from, limits) => store.read(ref, from, limits),
      offsetForTimestamp: (ref, ms) => store.offsetForTimestamp(ref, ms),
    },
    health: () => ({ mqtt: parts.broker()?.listening === true, store: parts.storeOpen(), disk: !guard.full }),
    sinks: () => parts.upstream()?.status() ?? [],
    cluster: () => {
      const cluster = parts.cluster
      if (cluster === null) return null
      const partitions = cluster.replicator.followers().map((p) => {
        const ref = { stream: p.stream, origin: parts.nodeId, partition: p.partition }
        const minInsync = parts.minInsync(p.stream)
        return {
          stream: p.stream,
          partition: p.partition,
          minInsync,
          replicas: p.replicas,
          durableNext: store.durableNext(ref),
          replicatedNext: cluster.replicator.replicatedNext(ref, minInsync),
          followers: p.followers,
        }
      })
      return {
        name: cluster.name,
        refused: cluster.replicator.refused?.message ?? null,
        conflicts: cluster.replicator.conflicts(),
        partitions,
      }
    },
    peers: () => parts.cluster?.replicator.status() ?? [],
    connections: () => parts.broker()?.connections ?? 0,
    incarnation: () => parts.incarnation(),
    disk: () => ({
      usedPercent: guard.usedPercent,
      full: guard.full,
      highWaterPercent: parts.highWaterPercent,
    }),
    recentErrors: () => parts.recent?.events() ?? [],
  }
}
