// Tail recovery: at start, before this node writes a new record, it fetches
// its own partitions back from each peer's copies, over the link it dialed
// (the peer's OriginServer serves a node its own records from its copies).
// A peer may hold a tail this node lost: a card that lied about a flush, a
// data dir restored from a backup or cloned from another device. What this
// node gets back is appended as it is (same offsets, bytes and
// incarnations), so no offset a peer has seen is given to another record.
// Per partition, the peer's answer says:
// - batches: the peer's copy goes on past this node's end and starts as a
//   prefix of it: they are appended, and the next fetch asks for more;
// - nothing: the copy ends here too (or the peer holds no copy);
// - `diverged` with the peer's copy ending before this node's end: the peer
//   holds less, nothing to take;
// - `diverged` otherwise, or `out-of-range` (the copy starts after this
//   node's end): the peer's copy is not a continuation of this log, so this
//   node cannot take its tail; the new incarnation keeps the records apart.
// Before the tail, the holes: a batch of this node quarantined at start
// (damaged on disk) is fetched back from the peer's copy and put back in
// its place (ReplicaLog.repairBatch), so no gap record is needed for it.
// Holes are asked for in offset order, so a run of damaged batches is
// mended one after the other (each fetch's prefix check needs the batch
// before it). The node starts its new incarnation after this
// (incarnation.ts decides the number from what was seen).

import { readBatchHeader } from '../log/batch-codec.ts'
import { type CorruptBatch, type PartitionRef, partitionRef, type ReplicaLog } from '../log/log-store.ts'
import type { Logger } from '../observability/logger.ts'
import { lastBatchOf } from './follower.ts'
import type { FetchEntry, FetchResponseMessage } from './messages.ts'

export interface TailOutcome {
  readonly peer: string
  /** `held-more`: records came back from this peer; `diverged`: its copy is another history. */
  readonly status: 'nothing-more' | 'held-more' | 'diverged'
  /** Records fetched back. */
  readonly records: number
  /** The highest incarnation of this node seen in the peer's copies (0: none). */
  readonly maxIncarnation: number
  /** Partitions whose copy on the peer diverged. */
  readonly diverged: readonly PartitionRef[]
}

export interface TailSource {
  readonly peer: string
  /** One fetch and its answer; null when the link closed. */
  request(partitions: readonly FetchEntry[], maxWaitMs: number): Promise<FetchResponseMessage | null>
}

/**
 * Puts back each of `holes` (this node's quarantined batches, in offset
 * order) that the peer's copy holds; returns those mended. Throws when the link closes.
 */
export async function repairHoles(
  source: TailSource,
  log: ReplicaLog,
  holes: readonly CorruptBatch[],
): Promise<CorruptBatch[]> {
  const mended: CorruptBatch[] = []
  for (const hole of [...holes].sort((x, y) => x.baseOffset - y.baseOffset)) {
    const ref = partitionRef(log.origin, hole)
    const before = log.lastBatchBefore(ref, hole.baseOffset) ?? { incarnation: 0, crc: 0 }
    const want = {
      ...ref,
      nextOffset: hole.baseOffset,
      lastIncarnation: before.incarnation,
      lastCrc: before.crc,
    }
    const response = await source.request([want], 0)
    if (response === null) throw new Error(`link to ${source.peer} closed while mending holes`)
    const batch = response.partitions[0]?.status === 'ok' ? response.partitions[0].batches[0] : undefined
    if (batch === undefined) continue
    const header = readBatchHeader(batch)
    if (header.baseOffset !== hole.baseOffset) continue
    if (hole.recordCount !== null && header.recordCount !== hole.recordCount) continue
    // A batch that does not fit the hole (TRIB_REPAIR_REFUSED) leaves it to its gap record.
    const fitted = await log.repairBatch(ref, batch).then(
      () => true,
      () => false,
    )
    if (fitted) mended.push(hole)
  }
  return mended
}

/** Fetches this node's own partitions back from one peer until its copies have no more; throws when the link closes. */
export async function recoverTail(source: TailSource, log: ReplicaLog): Promise<TailOutcome> {
  let records = 0
  let maxIncarnation = 0
  const diverged: PartitionRef[] = []
  for (const local of log.localPartitions()) {
    const ref = partitionRef(log.origin, local)
    for (;;) {
      const nextOffset = log.partition(ref)?.nextOffset ?? 0
      const last = lastBatchOf(log, ref)
      const want = { ...ref, nextOffset, lastIncarnation: last.incarnation, lastCrc: last.crc }
      const response = await source.request([want], 0)
      if (response === null) throw new Error(`link to ${source.peer} closed during tail recovery`)
      const entry = response.partitions[0]
      if (entry === undefined || entry.status === 'unknown-partition') break
      if (
        entry.status === 'out-of-range' ||
        (entry.status === 'diverged' && entry.durableNext >= nextOffset)
      ) {
        diverged.push(ref)
        break
      }
      if (entry.status === 'diverged' || entry.batches.length === 0) break
      await log.appendRecovered(ref, entry.batches)
      for (const batch of entry.batches) {
        const header = readBatchHeader(batch)
        records += header.recordCount
        maxIncarnation = Math.max(maxIncarnation, header.incarnation)
      }
    }
  }
  const status = diverged.length > 0 ? 'diverged' : records > 0 ? 'held-more' : 'nothing-more'
  return { peer: source.peer, status, records, maxIncarnation, diverged }
}

/** What tail recovery found: each peer's answer, and the known followers that gave none in time. */
export interface TailRecoveryReport {
  readonly outcomes: readonly TailOutcome[]
  readonly unconfirmed: readonly string[]
  /** Holes (quarantined batches of this node) put back from a peer's copy. */
  readonly mended: readonly CorruptBatch[]
}

/**
 * One node's tail recovery at start: every link it dials runs `from` (holes
 * first, then the tail) until `finish` ends the window; `open` says whether
 * the node still recovers (its origin server then tells a follower holding
 * more to wait).
 */
export class TailRecovery {
  readonly #log: ReplicaLog
  readonly #logger: Logger
  readonly #outcomes = new Map<string, TailOutcome>()
  #holes: CorruptBatch[]
  readonly #mended: CorruptBatch[] = []
  #changed: () => void = () => undefined
  #open = true

  /** `holes`: this node's batches quarantined at start, fetched back from the first peer holding them. */
  constructor(log: ReplicaLog, logger: Logger, holes: readonly CorruptBatch[]) {
    this.#log = log
    this.#logger = logger
    this.#holes = [...holes]
  }

  get open(): boolean {
    return this.#open
  }

  /** While the window is open: this node's holes and tail back from `source` (once per peer). */
  async from(source: TailSource): Promise<void> {
    const { peer } = source
    if (!this.#open || this.#outcomes.has(peer)) return
    try {
      const mended = await repairHoles(source, this.#log, this.#holes)
      this.#holes = this.#holes.filter((hole) => !mended.includes(hole))
      this.#mended.push(...mended)
      if (mended.length > 0)
        this.#logger.info({ peer, mended }, 'damaged batches of this node put back from a peer copy')
      const outcome = await recoverTail(source, this.#log)
      if (outcome.records > 0 || outcome.status === 'diverged')
        this.#logger.warn({ ...outcome }, 'tail recovery: a peer held records this node had lost')
      this.#outcomes.set(peer, outcome)
      this.#changed()
    } catch (err) {
      this.#logger.warn({ peer, err }, 'tail recovery from this peer did not finish')
    }
  }

  /**
   * Waits until each of `known` (the followers this node had) answered, or
   * `windowMs`, or `signal`; then closes the window: the node writes new
   * records from now on and nothing more is fetched back.
   */
  async finish(known: readonly string[], windowMs: number, signal: AbortSignal): Promise<TailRecoveryReport> {
    if (!this.#open) throw new Error('tail recovery runs once, at start')
    const deadline = performance.now() + windowMs
    const missing = () => known.filter((id) => !this.#outcomes.has(id))
    while (missing().length > 0 && performance.now() < deadline && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - performance.now())
        this.#changed = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
    this.#open = false
    return { outcomes: [...this.#outcomes.values()], unconfirmed: missing(), mended: this.#mended }
  }
}
