// The JSON shapes of the admin API's status answers, shared with
// `tributary status` (which builds the same shapes from the store when no
// node answers).

import type { IncarnationReport } from '../log/incarnation.ts'
import type { PartitionStatus } from '../log/log-store.ts'
import type { SinkFigures } from '../observability/metrics.ts'
import type { LogEvent } from '../observability/recent-log.ts'
import type { PeerStatus } from '../replication/replicator.ts'
import type { ForwarderStatus } from '../upstream/forwarder.ts'
import type { ClusterView, DiskView, HealthChecks, NodeView } from './node-view.ts'

export interface PartitionSummary {
  readonly partition: number
  readonly origin: string
  readonly firstOffset: number
  readonly nextOffset: number
  readonly records: number
  readonly bytes: number
  readonly lastWrite: string | null
}

export interface StreamSummary {
  readonly name: string
  readonly records: number
  readonly bytes: number
  readonly partitions: PartitionSummary[]
}

export interface NodeStatus {
  readonly nodeId: string
  /** The incarnation this start began (a record is named by origin, incarnation and offset); null before. */
  readonly incarnation: IncarnationReport | null
  readonly uptimeSeconds: number
  readonly health: { readonly ready: boolean; readonly checks: HealthChecks }
  readonly mqtt: { readonly connections: number }
  readonly streams: StreamSummary[]
  readonly sinks: SinkFigures[]
  /** Null when the node runs alone; `refused` says why it does not replicate (a node id conflict). */
  readonly cluster: ClusterView | null
  readonly peers: readonly PeerStatus[]
  readonly disk: DiskView & {
    readonly storedBytes: number
    readonly writtenBytes: number | null
    readonly enduranceDays: number | null
  }
  /** The last warn/error log events, newest first (src/observability/recent-log.ts). */
  readonly recentErrors: readonly LogEvent[]
}

export function isReady(checks: HealthChecks): boolean {
  return checks.mqtt && checks.store && checks.disk
}

export function streamsOf(partitions: readonly PartitionStatus[]): StreamSummary[] {
  const streams = new Map<string, PartitionSummary[]>()
  for (const p of partitions) {
    const list = streams.get(p.stream) ?? []
    list.push({
      partition: p.partition,
      origin: p.origin,
      firstOffset: p.firstOffset,
      nextOffset: p.nextOffset,
      records: p.nextOffset - p.firstOffset,
      bytes: p.bytes,
      lastWrite: p.lastTimestampMs === null ? null : new Date(p.lastTimestampMs).toISOString(),
    })
    streams.set(p.stream, list)
  }
  return [...streams].map(([name, list]) => ({
    name,
    records: list.reduce((sum, p) => sum + p.records, 0),
    bytes: list.reduce((sum, p) => sum + p.bytes, 0),
    partitions: list.sort((a, b) => a.origin.localeCompare(b.origin) || a.partition - b.partition),
  }))
}

/** A forwarder's status as the API shows it: lag in seconds to the millisecond. */
export function sinkFigures(s: ForwarderStatus): SinkFigures {
  return {
    sink: s.sink,
    stream: s.stream,
    partition: s.partition,
    state: s.state,
    cursor: s.cursor,
    nextOffset: s.nextOffset,
    lagRecords: s.lagRecords,
    lagBytes: s.lagBytes,
    lagSeconds: Math.round(s.lagSeconds * 1000) / 1000,
    forwarded: s.forwarded,
    deadLettered: s.deadLettered,
    retries: s.retries,
    stuckRestarts: s.stuckRestarts,
    lastError: s.lastError,
  }
}

export function nodeStatus(
  view: NodeView,
  wear: { readonly writtenBytes: number | null; readonly enduranceDays: number | null },
  nowMs = Date.now(),
): NodeStatus {
  const checks = view.health()
  const streams = streamsOf(view.log.partitions())
  return {
    nodeId: view.nodeId,
    incarnation: view.incarnation(),
    uptimeSeconds: Math.round((nowMs - view.startedAtMs) / 1000),
    health: { ready: isReady(checks), checks },
    mqtt: { connections: view.connections() },
    streams,
    sinks: view.sinks().map(sinkFigures),
    cluster: view.cluster(),
    peers: view.peers(),
    disk: {
      ...view.disk(),
      storedBytes: streams.reduce((sum, s) => sum + s.bytes, 0),
      ...wear,
    },
    recentErrors: view.recentErrors(),
  }
}
