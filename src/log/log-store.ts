// The LogStore seam: what ingest, the CLI and (later) replication and the
// upstream forwarders need from the partitioned log. One implementation
// (LMDB) today; test/conformance/log-store.test.ts is the suite every
// implementation runs, for each durability mode.

import type { RecordInput, StoredRecord } from './record.ts'

/**
 * `durable`: resolved only after the commit is fsync'd (survives power loss).
 * `relaxed`: resolved once committed (survives a process crash); the fsync
 * follows, and an ack never runs ahead of it by more than `relaxedFlushMs`.
 */
export type Durability = 'durable' | 'relaxed'

export interface PartitionRef {
  readonly stream: string
  readonly partition: number
}

export interface AppendEntry extends PartitionRef {
  readonly record: RecordInput
}

/**
 * Small state written in the same transaction as the records (ingest's dedupe
 * entries): the caller's digest, and the offsets the store gave the entries.
 */
export interface Marker {
  readonly digest: number
  readonly offsets: ReadonlyArray<readonly [stream: string, partition: number, offset: number]>
}

export interface AppendRequest {
  readonly entries: readonly AppendEntry[]
  readonly durability: Durability
  /** Only for `relaxed`. */
  readonly relaxedFlushMs?: number
  readonly marker?: { readonly key: string; readonly digest: number }
}

export interface Appended extends PartitionRef {
  readonly offset: number
  readonly timestampMs: number
}

export interface PartitionStatus extends PartitionRef {
  readonly origin: string
  readonly firstOffset: number
  readonly nextOffset: number
  readonly bytes: number
  readonly lastTimestampMs: number | null
}

export interface CorruptBatch extends PartitionRef {
  readonly baseOffset: number
  /** Records the batch claimed to hold, when its header was still readable. */
  readonly recordCount: number | null
  readonly error: string
}

export interface ReadLimits {
  readonly maxRecords?: number
  readonly maxBytes?: number
  /**
   * Only records whose write is fdatasync'd: what may leave the node (sinks,
   * the API). Without it a read also sees records written and not yet synced.
   */
  readonly durableOnly?: boolean
}

export interface ReadResult {
  readonly records: StoredRecord[]
  /** The offset to read from next (past skipped damage too). */
  readonly nextOffset: number
  /** Damaged batches met and skipped by this read. */
  readonly corrupt: CorruptBatch[]
}

export interface RecoveryReport {
  readonly partitions: number
  readonly batchesChecked: number
  readonly quarantined: CorruptBatch[]
}

export interface VerifyReport {
  readonly batchesChecked: number
  readonly records: number
  readonly corrupt: CorruptBatch[]
  readonly gaps: ReadonlyArray<PartitionRef & { readonly from: number; readonly to: number }>
  readonly quarantined: number
}

export interface RetentionPolicy {
  readonly maxAgeMs: number | null
  readonly maxBytes: number | null
  /** Never delete a partition's newest batch (the disk guard: its gap record must survive). */
  readonly keepNewestBatch?: boolean
}

export interface RetentionReport {
  readonly batchesDeleted: number
  readonly recordsDeleted: number
  readonly bytesDeleted: number
  /** Partitions where a retention floor (a consumer not yet past the data) held back deletion. */
  readonly heldBack: PartitionRef[]
}

export interface LogStore {
  /** Opens the store, checks every partition's tail and quarantines damage. Idempotent. */
  open(): Promise<RecoveryReport>
  /** Makes sure a stream has at least `partitions` partitions. */
  ensureStream(stream: string, partitions: number): Promise<void>
  /** Appends entries atomically (one transaction, with the marker) and resolves per `durability`. */
  append(request: AppendRequest): Promise<Appended[]>
  read(ref: PartitionRef, fromOffset: number, limits?: ReadLimits): ReadResult
  /** First offset whose ingest time is at or after `timestampMs`; the next offset when there is none. */
  offsetForTimestamp(ref: PartitionRef, timestampMs: number): number
  partitions(): PartitionStatus[]
  marker(key: string): Marker | undefined
  /** Removes markers (e.g. a client's dedupe state when it starts a clean session). */
  removeMarkers(keyPrefix: string): Promise<void>
  /**
   * The minimum-needed-offset registry: `holder` (a sink, a follower) still needs
   * records from `offset` on; retention keeps them unless `force` is set (disk full).
   */
  setRetentionFloor(holder: string, ref: PartitionRef, offset: number): void
  removeRetentionFloor(holder: string, ref: PartitionRef): void
  applyRetention(
    policyFor: (stream: string, partition: number) => RetentionPolicy | undefined,
    nowMs: number,
    options?: { force?: boolean },
  ): Promise<RetentionReport>
  verify(): VerifyReport
  /** Resolves once every append made so far is resolved (committed and, for durable, flushed). */
  idle(): Promise<void>
  /** Finishes in-flight appends, then closes. Idempotent. */
  close(): Promise<void>
}
