// The LogStore seam: what ingest, the CLI, the admin API, the upstream
// forwarders and (later) replication need from the partitioned log. One
// implementation (segment files + LMDB index) today;
// test/conformance/log-store.test.ts is the suite every implementation runs,
// for each durability mode.
//
// A partition is named by (stream, origin, partition): the origin is the node
// that accepted its records. This node appends only to its own partitions
// (`localPartitions()`, `AppendEntry` names no origin); every reader names the
// origin, so a replica of another node's partition is read, listed, held back
// by retention floors and measured for lag like a local one.

import type { RecordInput, StoredRecord } from './record.ts'

/**
 * `durable`: resolved only after the commit is fsync'd (survives power loss).
 * `relaxed`: resolved once committed (survives a process crash); the fsync
 * follows, and an ack never runs ahead of it by more than `relaxedFlushMs`.
 */
export type Durability = 'durable' | 'relaxed'

/** One of this node's own partitions: the append path, where the origin is always this node. */
export interface LocalPartitionRef {
  readonly stream: string
  readonly partition: number
}

/** Any partition the store holds, this node's or a replica of another origin's. */
export interface PartitionRef extends LocalPartitionRef {
  /** The node that accepted the partition's records (its node id). */
  readonly origin: string
}

/** The ref of `origin`'s partition `ref` (a local one: `partitionRef(store.origin, ref)`). */
export function partitionRef(origin: string, ref: LocalPartitionRef): PartitionRef {
  return { stream: ref.stream, origin, partition: ref.partition }
}

/** Two refs name the same partition. */
export function samePartition(a: PartitionRef, b: PartitionRef): boolean {
  return a.stream === b.stream && a.partition === b.partition && a.origin === b.origin
}

export interface AppendEntry extends LocalPartitionRef {
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

export interface Appended extends LocalPartitionRef {
  readonly offset: number
  readonly timestampMs: number
}

export interface PartitionStatus extends PartitionRef {
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
  /** Delete the batches whose records are all below this offset (a copy following its origin's log start). */
  readonly deleteBelow?: number
}

export interface RetentionReport {
  readonly batchesDeleted: number
  readonly recordsDeleted: number
  readonly bytesDeleted: number
  /** Partitions where a retention floor (a consumer not yet past the data) held back deletion. */
  readonly heldBack: PartitionRef[]
}

/** A stored record batch as its origin wrote it (batch-codec.ts bytes): what replication sends and copies keep. */
export interface StoredBatch {
  readonly baseOffset: number
  readonly recordCount: number
  readonly bytes: Buffer
}

/**
 * The replication side of the log: serve this node's stored batches to the
 * followers that copy them, and keep copies of other origins' partitions.
 * A copy holds the origin's batches byte for byte at the origin's offsets,
 * without gaps or overlaps; it is read like any partition (LogStore.read).
 * test/conformance/replica-log.test.ts is its suite.
 */
export interface ReplicaLog {
  readonly origin: string
  /** The incarnation this node writes its batches in now (batch-codec.ts). */
  readonly incarnation: number
  partitions(): PartitionStatus[]
  localPartitions(): PartitionStatus[]
  partition(ref: PartitionRef): PartitionStatus | undefined
  /**
   * Stored batches of a partition from `fromOffset` (a batch boundary, or the
   * partition's first offset), fdatasync'd ones only, about `maxBytes` (at
   * least one batch when there is one).
   */
  readBatches(ref: PartitionRef, fromOffset: number, maxBytes: number): StoredBatch[]
  /** The incarnation and CRC32C of the partition's batch that ends right before `nextOffset`; null when none ends there. */
  lastBatchBefore(ref: PartitionRef, nextOffset: number): { incarnation: number; crc: number } | null
  /** The offset below which the partition's records are fdatasync'd on this node. */
  durableNext(ref: PartitionRef): number
  /** Starts a copy of another origin's partition at `firstOffset`; nothing when the copy exists. */
  ensureReplica(ref: PartitionRef, firstOffset: number): Promise<void>
  /**
   * Appends the origin's batches as they are, at their own offsets, and
   * resolves once they are fdatasync'd here. TRIB_REPLICA_GAP when the first
   * does not start where the copy ends or they are not consecutive,
   * TRIB_BATCH_CORRUPT when one fails its CRC32C; nothing is stored then.
   */
  appendReplica(ref: PartitionRef, batches: readonly Buffer[]): Promise<void>
  /**
   * This node's own batches fetched back from a peer's copy (its tail lost in
   * an unclean start), appended as `appendReplica` appends a copy's. Only
   * before `beginIncarnation`: once new records are written, no old ones come back.
   */
  appendRecovered(ref: LocalPartitionRef, batches: readonly Buffer[]): Promise<void>
  /**
   * Puts back one of this node's batches, fetched from a peer's copy, into
   * the hole its damaged original left when it was quarantined at start;
   * durable and indexed when this resolves. TRIB_REPAIR_REFUSED when it does
   * not fit a hole exactly, TRIB_BATCH_CORRUPT when it fails its CRC32C.
   */
  repairBatch(ref: LocalPartitionRef, batch: Buffer): Promise<void>
  /** From now on this node writes its batches in `incarnation` (never lower than the current one). */
  beginIncarnation(incarnation: number): void
  /**
   * The copy goes on from `fromOffset`: its batches holding records from
   * there on (a copy that diverged from its origin) move to the quarantine,
   * kept for inspection with `reason`, so it ends at the batch boundary at or
   * before `fromOffset`; when `fromOffset` is past the copy's end (the origin
   * deleted what it missed), the copy jumps there. Returns the batches moved.
   */
  restartReplica(ref: PartitionRef, fromOffset: number, reason: string): Promise<number>
  /** Resolves after the next fdatasync that made records durable here, or after `timeoutMs`. */
  nextDurable(timeoutMs: number): Promise<void>
  /** As LogStore's: followers hold this node's records back from retention; copies follow their origin's start. */
  setRetentionFloor(holder: string, ref: PartitionRef, offset: number): void
  removeRetentionFloor(holder: string, ref: PartitionRef): void
  applyRetention(
    policyFor: (ref: PartitionRef) => RetentionPolicy | undefined,
    nowMs: number,
  ): Promise<RetentionReport>
}

export interface LogStore {
  /** This node's id: the origin of the partitions it appends to. */
  readonly origin: string
  /** Opens the store, checks every partition's tail and quarantines damage. Idempotent. */
  open(): Promise<RecoveryReport>
  /** Makes sure a stream has at least `partitions` partitions of this node. */
  ensureStream(stream: string, partitions: number): Promise<void>
  /** Appends entries atomically (one transaction, with the marker) and resolves per `durability`. */
  append(request: AppendRequest): Promise<Appended[]>
  read(ref: PartitionRef, fromOffset: number, limits?: ReadLimits): ReadResult
  /** First offset whose ingest time is at or after `timestampMs`; the next offset when there is none. */
  offsetForTimestamp(ref: PartitionRef, timestampMs: number): number
  /** Every partition the store holds, of every origin, by stream, origin and partition. */
  partitions(): PartitionStatus[]
  /** This node's own partitions (origin = `origin`), by stream and partition. */
  localPartitions(): PartitionStatus[]
  /** One partition's status; undefined when the store does not hold it. */
  partition(ref: PartitionRef): PartitionStatus | undefined
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
    policyFor: (ref: PartitionRef) => RetentionPolicy | undefined,
    nowMs: number,
    options?: { force?: boolean },
  ): Promise<RetentionReport>
  verify(): VerifyReport
  /** Resolves once every append made so far is resolved (committed and, for durable, flushed). */
  idle(): Promise<void>
  /** Finishes in-flight appends, then closes. Idempotent. */
  close(): Promise<void>
}
