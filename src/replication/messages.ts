// The replication protocol's messages: what two nodes say to each other over a
// replication link. frame-codec.ts gives each its bytes; the fetch sessions
// and follower positions (next) act on them. Offsets and times are JS numbers
// (safe integers); counts, ids and CRCs are unsigned 32-bit unless noted.

/** Each side sends it first. */
export interface HelloMessage {
  readonly type: 'hello'
  /** The highest protocol version the sender speaks (u16). */
  readonly protocol: number
  readonly cluster: string
  readonly nodeId: string
  readonly incarnation: number
  /** u16 */
  readonly replicationPort: number
}

/** Sent before closing: wrong cluster, wrong protocol version, node id conflict... */
export interface RefuseMessage {
  readonly type: 'refuse'
  readonly code: string
  readonly message: string
}

/** Liveness and round-trip time. */
export interface HeartbeatMessage {
  readonly type: 'heartbeat'
  /** The sender's monotonic clock, whole ms. */
  readonly sentAtMs: number
  /** The last sentAtMs received from the other side; 0 if none yet. */
  readonly echoMs: number
}

export interface CatalogEntry {
  readonly stream: string
  readonly partition: number
  /** Where the origin's log of this partition starts (retention moves it). */
  readonly firstOffset: number
  /** The next offset after the origin's fdatasync'd records. */
  readonly durableNext: number
  readonly incarnation: number
}

/** An origin tells its followers which of its own partitions exist. */
export interface CatalogMessage {
  readonly type: 'catalog'
  readonly partitions: readonly CatalogEntry[]
}

export interface FetchEntry {
  readonly stream: string
  readonly origin: string
  readonly partition: number
  readonly nextOffset: number
  /** Incarnation and CRC32C of the last batch the follower holds; 0 and 0 when it holds none. */
  readonly lastIncarnation: number
  readonly lastCrc: number
}

/** A follower asks for the records after the ones it holds. */
export interface FetchMessage {
  readonly type: 'fetch'
  readonly requestId: number
  readonly maxWaitMs: number
  readonly maxBytes: number
  readonly partitions: readonly FetchEntry[]
}

export type FetchStatus = 'ok' | 'diverged' | 'unknown-partition' | 'out-of-range'

export interface FetchResponseEntry {
  readonly stream: string
  readonly origin: string
  readonly partition: number
  readonly status: FetchStatus
  readonly firstOffset: number
  readonly durableNext: number
  /** Where the follower's copy stops being a prefix of the log; 0 unless `diverged`. */
  readonly divergedAt: number
  /**
   * The incarnation every batch of this entry was written in (an entry never
   * spans two), so the follower can name its last batch in the next fetch;
   * the partition's current incarnation when there are no batches.
   */
  readonly incarnation: number
  /** Stored record batches (batch-codec.ts bytes) as they are on disk, never re-encoded. */
  readonly batches: readonly Buffer[]
}

export interface FetchResponseMessage {
  readonly type: 'fetch-response'
  readonly requestId: number
  readonly partitions: readonly FetchResponseEntry[]
}

export interface SyncedEntry {
  readonly stream: string
  readonly origin: string
  readonly partition: number
  /** The next offset below which the follower's copy is fdatasync'd. */
  readonly syncedNext: number
}

/** A follower reports how far its copies are durable. */
export interface SyncedMessage {
  readonly type: 'synced'
  readonly partitions: readonly SyncedEntry[]
}

export type ReplicationMessage =
  | HelloMessage
  | RefuseMessage
  | HeartbeatMessage
  | CatalogMessage
  | FetchMessage
  | FetchResponseMessage
  | SyncedMessage

export type ReplicationMessageType = ReplicationMessage['type']
