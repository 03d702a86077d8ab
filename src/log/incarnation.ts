// A node's incarnations: the middle part of a record's identity (origin,
// incarnation, offset; batch-codec.ts). Every start of the node begins a new
// incarnation before it writes a record, so an offset given out again after a
// lost tail (a card that lied about a flush, a data dir restored from a
// backup or cloned from another device) never names two records: the old
// ones keep the incarnation they were written in.
//
// Kept in the data dir (`incarnation.json`, written durably): the last
// incarnation begun, and the followers that have copied this node's
// partitions (tail recovery at the next start waits for them). The next
// incarnation is past the highest seen (in this file, in the log's last
// batches, in the peers' copies) by a random step of 1 to 65536: two copies
// of one data dir started apart (a clone beside its original, a backup
// restored while no peer answers) almost never begin the same incarnation,
// even when neither can see the numbers the other used. At that pace the
// u32 lasts 130,000 starts. A damaged file never stops the start: it is
// moved aside and the start counts as uncertain (logged as a warning, as
// are a follower that did not answer and a copy that diverged).

import { randomInt } from 'node:crypto'
import { readFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileDurably } from '../lib/durable-file.ts'
import { FIRST_INCARNATION } from './batch-codec.ts'
import { partitionRef, type ReplicaLog } from './log-store.ts'

export const INCARNATION_FILE = 'incarnation.json'
const MAX_INCARNATION = 0xffff_ffff
const MAX_STEP = 1 << 16

export interface IncarnationState {
  /** The last incarnation begun (FIRST_INCARNATION for a data dir from before incarnations). */
  readonly incarnation: number
  /** Node ids that have followed this node. */
  readonly followers: readonly string[]
}

interface ReadIncarnation {
  readonly state: IncarnationState
  /** Why the file could not be read (it was moved aside); null when it was fine or absent. */
  readonly damaged: string | null
}

/** What the node began this start with (the log, /v1/status). */
export interface IncarnationReport {
  readonly incarnation: number
  readonly previous: number
  /** Records of this node fetched back from peers' copies (tail recovery). */
  readonly recoveredRecords: number
  /** Damaged batches of this node put back from peers' copies (no gap record needed). */
  readonly mendedBatches: number
  /** Known followers that did not answer tail recovery in time. */
  readonly unconfirmedFollowers: readonly string[]
  /** Peers whose copy of this node's log is another history (kept in their quarantine). */
  readonly divergedPeers: readonly string[]
  /** A follower did not answer, a copy diverged or the state file was damaged (logged as a warning). */
  readonly uncertain: boolean
}

function readIncarnation(dataDir: string): ReadIncarnation {
  const path = join(dataDir, INCARNATION_FILE)
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      return { state: { incarnation: FIRST_INCARNATION, followers: [] }, damaged: null }
    throw err
  }
  const state = parseState(text)
  if (state !== null) return { state, damaged: null }
  renameSync(path, `${path}.damaged-${Date.now()}`)
  return {
    state: { incarnation: FIRST_INCARNATION, followers: [] },
    damaged: `${INCARNATION_FILE} is not a valid incarnation state`,
  }
}

function parseState(text: string): IncarnationState | null {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return null
  }
  if (typeof value !== 'object' || value === null) return null
  const { incarnation, followers } = value as Record<string, unknown>
  if (typeof incarnation !== 'number' || !Number.isInteger(incarnation)) return null
  if (incarnation < FIRST_INCARNATION || incarnation > MAX_INCARNATION) return null
  if (!Array.isArray(followers) || !followers.every((f) => typeof f === 'string')) return null
  return { incarnation, followers }
}

/** What tail recovery found (replication/tail-recovery.ts): each peer's answer, and the followers that gave none. */
export interface TailFindings {
  readonly outcomes: ReadonlyArray<{
    readonly peer: string
    readonly status: 'nothing-more' | 'held-more' | 'diverged'
    readonly records: number
    readonly maxIncarnation: number
  }>
  readonly unconfirmed: readonly string[]
  /** Batches of this node quarantined at start and put back from a peer's copy. */
  readonly mended: readonly unknown[]
}

/** The state file of one data dir, read once at start; each change is written at once. */
export class IncarnationFile {
  readonly #dataDir: string
  #state: IncarnationState
  /** Why the file was moved aside at start; null when it was fine or absent. */
  readonly damaged: string | null

  constructor(dataDir: string) {
    this.#dataDir = dataDir
    const read = readIncarnation(dataDir)
    this.#state = read.state
    this.damaged = read.damaged
  }

  get state(): IncarnationState {
    return this.#state
  }

  /**
   * Begins the next incarnation in `log` (past the file's, the log's last
   * batches' and the peers' copies'), written here first.
   */
  begin(
    log: Pick<ReplicaLog, 'origin' | 'localPartitions' | 'lastBatchBefore' | 'beginIncarnation'>,
    tails: TailFindings,
  ): IncarnationReport {
    const previous = this.#state.incarnation
    const inLog = log
      .localPartitions()
      .map((p) => log.lastBatchBefore(partitionRef(log.origin, p), p.nextOffset)?.incarnation ?? 0)
    const divergedPeers = tails.outcomes.filter((o) => o.status === 'diverged').map((o) => o.peer)
    const uncertain = this.damaged !== null || tails.unconfirmed.length > 0 || divergedPeers.length > 0
    const incarnation = nextIncarnation([previous, ...inLog, ...tails.outcomes.map((o) => o.maxIncarnation)])
    this.#write({ ...this.#state, incarnation })
    log.beginIncarnation(incarnation)
    return {
      incarnation,
      previous,
      recoveredRecords: tails.outcomes.reduce((sum, o) => sum + o.records, 0),
      mendedBatches: tails.mended.length,
      unconfirmedFollowers: tails.unconfirmed,
      divergedPeers,
      uncertain,
    }
  }

  /** A node that follows this one; written when new. */
  addFollower(nodeId: string): void {
    if (this.#state.followers.includes(nodeId)) return
    this.#write({ ...this.#state, followers: [...this.#state.followers, nodeId] })
  }

  #write(state: IncarnationState): void {
    writeFileDurably(this.#dataDir, INCARNATION_FILE, `${JSON.stringify(state)}\n`)
    this.#state = state
  }
}

/** The incarnation to begin: past every one seen, by a random step of 1 to 65536. */
export function nextIncarnation(seen: readonly number[]): number {
  const next = Math.max(FIRST_INCARNATION, ...seen) + 1 + randomInt(MAX_STEP)
  // Four billion starts are not expected; wrapping would reuse an identity, so it is refused.
  if (next > MAX_INCARNATION) throw new RangeError(`incarnation ${next} is past the u32 range`)
  return next
}
