// What the consumer API's routes share: the schemas of their common
// parameters, time parsing, and how a route finds the partitions it names
// (this node's by default; `origin=<node id>` names another node's replica).

import { TributaryError } from '../errors.ts'
import type { PartitionStatus } from '../log/log-store.ts'
import type { NodeView } from './node-view.ts'

export const streamParam = { type: 'string', minLength: 1, maxLength: 249 } as const
export const originParam = { type: 'string', minLength: 1, maxLength: 128 } as const

/** A time as ISO 8601 or ms since the epoch. */
export function parseTime(name: string, text: string): number {
  const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text)
  if (!Number.isFinite(ms))
    throw new TributaryError(
      'TRIB_HTTP_BAD_REQUEST',
      `${name} must be an ISO 8601 time or ms since the epoch`,
    )
  return ms
}

export interface PartitionLookup {
  /** The stream's partitions of `origin` (this node by default); TRIB_STREAM_UNKNOWN when none. */
  partitionsOf(stream: string, origin?: string): PartitionStatus[]
  /** One of them; TRIB_PARTITION_UNKNOWN when the stream has no such partition. */
  partitionOf(stream: string, partition: number, origin?: string): PartitionStatus
}

export function partitionLookup(view: NodeView): PartitionLookup {
  const partitionsOf = (stream: string, origin = view.nodeId): PartitionStatus[] => {
    const list = view.log.partitions().filter((p) => p.stream === stream && p.origin === origin)
    if (list.length === 0) throw new TributaryError('TRIB_STREAM_UNKNOWN', stream)
    return list
  }
  return {
    partitionsOf,
    partitionOf: (stream, partition, origin) => {
      const p = partitionsOf(stream, origin).find((q) => q.partition === partition)
      if (p === undefined)
        throw new TributaryError('TRIB_PARTITION_UNKNOWN', `${stream} has no partition ${partition}`)
      return p
    },
  }
}
