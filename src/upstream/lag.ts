// How far a sink is behind on one partition: records, bytes (estimated from
// the partition's stored bytes per record, without reading the backlog) and
// seconds (age of the oldest record not yet forwarded: the recovery point
// objective if this node died now). Shared by the forwarders' live status and
// `tributary sinks`, which computes it from the stored cursors.

import type { LogStore, PartitionStatus } from '../log/log-store.ts'

export interface Lag {
  readonly lagRecords: number
  readonly lagBytes: number
  readonly lagSeconds: number
}

export function lagOf(store: LogStore, partition: PartitionStatus, cursor: number, nowMs = Date.now()): Lag {
  const from = Math.max(cursor, partition.firstOffset)
  const lagRecords = Math.max(0, partition.nextOffset - from)
  const stored = partition.nextOffset - partition.firstOffset
  const lagBytes = stored > 0 ? Math.round((partition.bytes * lagRecords) / stored) : 0
  let lagSeconds = 0
  if (lagRecords > 0) {
    const oldest = store.read(partition, from, { maxRecords: 1 }).records[0]
    if (oldest !== undefined) lagSeconds = Math.max(0, (nowMs - oldest.timestampMs) / 1000)
  }
  return { lagRecords, lagBytes, lagSeconds }
}
