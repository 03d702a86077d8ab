// The node's LMDB environment (<dataDir>/log.mdb) and its layout: every named
// database, who owns it, its key encoding and what it holds, and the budget
// of named databases LMDB fixes when the environment opens. Every module that
// keeps state beside the log opens its databases here, by name; nothing else
// calls lmdb's openDB.
//
// Open and close order: the log store opens the environment first (and
// replays the segments into it), then the MQTT session store, the upstream
// cursors and the consumer groups open their databases in it; at shutdown
// they finish their writes first (broker, upstream, admin), and the store
// closes the environment last (src/index.ts follows this order).

import { join } from 'node:path'
import { type Database, type DatabaseOptions, type Key, open, type RootDatabase } from 'lmdb'

export const LMDB_FILE = 'log.mdb'

/** LMDB's limit of named databases, fixed when the environment is opened (lmdb-js `maxDbs`). */
export const MAX_DATABASES = 32

/**
 * Session values round-trip exactly: undefined stays undefined, numbers stay
 * float64, decoded objects are mutable (aedes edits queued packets) and
 * buffers are copies, not views into LMDB's reusable read buffer. These
 * msgpackr options are not in lmdb's DatabaseOptions type, hence the spread.
 */
const SESSION_VALUES = {
  encoding: 'msgpack',
  keyEncoding: 'ordered-binary',
  useRecords: false,
  structuredClone: false,
  encodeUndefinedAsNil: false,
  useFloat32: 0,
  copyBuffers: true,
  freezeData: false,
} as const

interface DatabaseSpec {
  /** The module that writes it (src/<owner>/). */
  readonly owner: 'log' | 'broker' | 'upstream' | 'admin'
  readonly options: DatabaseOptions
  /** Key -> value, for people reading the layout. */
  readonly holds: string
}

/** Every named database of the environment. Adding one: here, with its owner and encoding. */
export const DATABASES = {
  'log-meta': {
    owner: 'log',
    options: {},
    holds: '"partition:<stream>:<origin>:<n>" -> PartitionMeta; "next-partition-id"; "segment-position"',
  },
  'log-index': {
    owner: 'log',
    options: { keyEncoding: 'binary', encoding: 'binary' },
    holds: '[partition id u32][base offset u64] -> segment, position, length, count, max time',
  },
  'log-segments': {
    owner: 'log',
    options: { keyEncoding: 'uint32' },
    holds: 'segment sequence -> { batches, bytes } still indexed',
  },
  'log-markers': { owner: 'log', options: {}, holds: "marker key -> ingest's dedupe state" },
  'log-quarantine': {
    owner: 'log',
    options: { keyEncoding: 'binary' },
    holds: '[partition id u32][base offset u64] -> { batch, error, atMs }',
  },
  'mqtt-retained': { owner: 'broker', options: SESSION_VALUES, holds: '[topic] -> retained PUBLISH' },
  'mqtt-subscriptions': {
    owner: 'broker',
    options: SESSION_VALUES,
    holds: '[clientId, topic] -> { clientId, sub }',
  },
  'mqtt-outgoing': {
    owner: 'broker',
    options: SESSION_VALUES,
    holds: 'sequence -> { clientId, packet } queued towards a client',
  },
  'mqtt-incoming': {
    owner: 'broker',
    options: SESSION_VALUES,
    holds: '[clientId, msgId] -> QoS 2 PUBLISH awaiting PUBREL',
  },
  'mqtt-wills': { owner: 'broker', options: SESSION_VALUES, holds: '[clientId] -> will PUBLISH' },
  'upstream-cursors': {
    owner: 'upstream',
    options: {},
    holds: '[sink, stream, origin, partition] -> next offset to forward',
  },
  'consumer-groups': {
    owner: 'admin',
    options: {},
    holds: '[group, stream, partition(, origin of a replica)] -> { offset, committedAtMs }',
  },
} as const satisfies Record<string, DatabaseSpec>

export type DatabaseName = keyof typeof DATABASES

/** The small databases, read in full by the start-up probe (not log-index: it grows with the log). */
export const SMALL_DATABASES: readonly DatabaseName[] = (Object.keys(DATABASES) as DatabaseName[]).filter(
  (name) => name !== 'log-index',
)

export interface EnvironmentOptions {
  readonly readOnly?: boolean
}

/** One open environment: its databases by name, and the environment-wide operations their owners share. */
export class NodeEnvironment {
  readonly #root: RootDatabase

  private constructor(root: RootDatabase) {
    this.#root = root
  }

  /** Opens (creating when writable) `<dataDir>/log.mdb`. */
  static open(dataDir: string, options: EnvironmentOptions = {}): NodeEnvironment {
    return new NodeEnvironment(
      open({
        path: join(dataDir, LMDB_FILE),
        maxDbs: MAX_DATABASES,
        readOnly: options.readOnly === true,
        // Commits overlap the previous one's sync; `flushed` says when a commit is on disk.
        overlappingSync: true,
        separateFlushed: true,
      }),
    )
  }

  /** Opens a named database with the layout's encodings; `V` and `K` are its owner's value and key types. */
  database<V, K extends Key = Key>(name: DatabaseName): Database<V, K> {
    return this.#root.openDB<V, K>({ name, ...DATABASES[name].options })
  }

  /**
   * Reads every entry of the small databases as raw bytes (the start-up probe:
   * a damaged page shows up here, in a throwaway process, not in the broker).
   */
  readSmallDatabases(): void {
    for (const name of SMALL_DATABASES)
      for (const entry of this.#root.openDB({ name, encoding: 'binary', keyEncoding: 'binary' }).getRange())
        void entry
  }

  /** Resolves once every commit made so far is on disk. */
  get flushed(): Promise<boolean> {
    return this.#root.flushed
  }

  /** Runs `work` in one write transaction of the environment (spanning several databases). */
  transaction<T>(work: () => T): Promise<T> {
    return this.#root.transaction(work)
  }

  /** Read-only openers: see what the writing process committed since. */
  resetReadTxn(): void {
    this.#root.resetReadTxn()
  }

  /** Closes the environment; its databases' owners have finished their writes (see the order above). */
  async close(): Promise<void> {
    await this.#root.close()
  }
}
