// Gap records: how a partition says, in band, that records are missing and
// why. Appended to the partition itself, so they reach every consumer and
// sink in order, like data: the central side sees exactly which offsets it
// will never get. Written when the disk guard deletes records a sink still
// needed (dropOldest) and when a damaged batch is quarantined at start.

import type { AppendEntry, LocalPartitionRef } from './log-store.ts'

export const GAP_HEADER = 'tributary-gap'
export const GAP_TOPIC_PREFIX = '$tributary/gap/'

export type GapCause = 'dropOldest' | 'damaged'

/** Always in one of this node's partitions: a replica's gaps are its origin's to write. */
export interface GapRecord extends LocalPartitionRef {
  /** First and last offset of the missing records. */
  readonly from: number
  readonly to: number
  readonly count: number
  readonly reason: string
  readonly atMs: number
}

export function gapEntry(gap: GapRecord, cause: GapCause): AppendEntry {
  return {
    stream: gap.stream,
    partition: gap.partition,
    record: {
      key: null,
      topic: `${GAP_TOPIC_PREFIX}${gap.stream}/${gap.partition}`,
      payload: Buffer.from(JSON.stringify(gap)),
      headers: [[GAP_HEADER, cause]],
      clientId: '$tributary',
      qos: 1,
      deviceTimeMs: null,
    },
  }
}
