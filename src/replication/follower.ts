// The follower's side of one replication link: this node copies the origin's
// partitions. The origin's catalog says which partitions this node is to
// copy and where each log starts; a copy is started for each
// (ReplicaLog.ensureReplica), and one the catalog no longer lists is
// fetched no more. Such a copy (the origin gave the partition to another
// follower) stays `expireMs` (cluster.followerExpireMs), timed on this
// node's monotonic clock from the first catalog that left it out, while
// the origin's catalogs keep leaving it out; then its batches are deleted
// (retention floors, a consumer group reading it, still hold them). A copy
// of an origin that is not connected is never deleted so: only the origin
// says a partition is no longer this node's. Assigned again, an emptied
// copy starts over at the origin's log start.
// Then one fetch at a time covers every copy: each names where the copy ends
// and the CRC32C of its last batch, so the origin can check that the copy is
// a prefix of its log before it answers. Answers:
// - `ok`: the batches are appended as they are (durable here before the next
//   fetch), and a `synced` report tells the origin how far the copies are
//   fdatasync'd (a follower reports an offset only once its copy of it is;
//   and once per link even with nothing new, so a follower back on a new
//   link counts as in sync again without waiting for a new record);
// - `diverged`: the copy's tail from `divergedAt` on is moved to the
//   quarantine (kept for inspection, logged, counted) and copied again;
// - `out-of-range`: the origin deleted what the copy missed; it jumps to the
//   origin's log start;
// - `unknown-partition`: the origin no longer has it; it is fetched no more.
// Retention of a copy follows its origin: when the catalog says the origin's
// log now starts later, the copy deletes the batches below that start (never
// by comparing the origin's timestamps with this node's clock; a Pi has no
// real-time clock). Retention floors on the copy (a consumer group reading
// it) still hold batches back.
// Catch-up yields to other work between fetches, and each fetch is bounded
// in bytes, so live traffic keeps its turn on the event loop.

import { readBatchHeader } from '../log/batch-codec.ts'
import type { PartitionRef, ReplicaLog } from '../log/log-store.ts'
import type { Logger } from '../observability/logger.ts'
import type { LinkMessage, PeerLink } from './link.ts'
import type { CatalogMessage, FetchEntry, FetchResponseMessage } from './messages.ts'

/**
 * Bytes asked for per fetch over all partitions. The origin reads and
 * encrypts an answer in one go on its event loop, so this bounds how long a
 * catch-up answer holds its live traffic; at 512 KiB a catch-up still copies
 * at tens of times the live rate (the cluster bench).
 */
export const FETCH_MAX_BYTES = 512 * 1024
/** How long the origin may hold a fetch when it has nothing new. */
export const FETCH_MAX_WAIT_MS = 1000

export interface FollowerOptions {
  readonly link: PeerLink
  readonly log: ReplicaLog
  readonly logger: Logger
  /** A copy diverged from its origin and its tail was moved aside. */
  readonly onDiverged?: (ref: PartitionRef, from: number) => void
  /** How long a copy the origin no longer assigns to this node stays (cluster.followerExpireMs; default 24 h). */
  readonly expireMs?: number
  /** Per `origin NUL stream NUL partition` not assigned here: since when (performance.now()); the replicator's, kept across links. */
  readonly unassigned?: Map<string, number>
}

/** cluster.followerExpireMs's default. */
const DEFAULT_EXPIRE_MS = 24 * 60 * 60 * 1000

interface Copy {
  readonly ref: PartitionRef
  /** The incarnation and CRC32C of the copy's last batch; 0 and 0 when it holds none. */
  lastIncarnation: number
  lastCrc: number
  /** The origin's durable end, from its last answer. */
  originDurableNext: number
  /** A synced report went out for it on this link (after the origin checked it is a prefix). */
  reported: boolean
}

export class Follower {
  readonly #o: FollowerOptions
  readonly #expireMs: number
  readonly #unassigned: Map<string, number>
  readonly #copies = new Map<string, Copy>()
  #requestId = 0
  #pending: { id: number; resolve: (response: FetchResponseMessage) => void } | null = null
  #catalogs: Promise<void> = Promise.resolve()
  #running: Promise<void> | null = null
  #wakeForCatalog: (() => void) | null = null
  /** The partitions the origin's latest catalog lists (`stream NUL partition`); null before the first. */
  #listed: ReadonlySet<string> | null = null

  constructor(options: FollowerOptions) {
    this.#o = options
    this.#expireMs = options.expireMs ?? DEFAULT_EXPIRE_MS
    this.#unassigned = options.unassigned ?? new Map()
    options.link.onMessage((message) => this.#receive(message))
  }

  /** The origin this follower copies. */
  get origin(): string {
    return this.#o.link.peer.nodeId
  }

  /** Per copy: where it ends here, and how far the origin is durable. */
  positions(): Array<{ ref: PartitionRef; nextOffset: number; originDurableNext: number }> {
    return [...this.#copies.values()].map((c) => ({
      ref: c.ref,
      nextOffset: this.#o.log.partition(c.ref)?.nextOffset ?? 0,
      originDurableNext: c.originDurableNext,
    }))
  }

  /** Fetches until the link closes; resolves then (a failed append is logged, and ends the link). */
  run(): Promise<void> {
    // Copies no longer assigned are checked between catalogs too (a catalog comes only when it changes).
    const expiry = setInterval(
      () => this.#chain(() => this.#expireUnassigned()),
      Math.min(this.#expireMs, 60_000),
    )
    expiry.unref()
    this.#running ??= this.#loop()
      .catch((err: unknown) => {
        this.#o.logger.warn(
          { err, origin: this.origin },
          'replication from this origin stopped; it reconnects',
        )
        this.#o.link.close(`follower failed: ${err instanceof Error ? err.message : String(err)}`)
      })
      .finally(() => clearInterval(expiry))
    return this.#running
  }

  /** Runs `step` after the catalogs before it; one that fails (the store closing) ends the link. */
  #chain(step: () => Promise<void>): void {
    this.#catalogs = this.#catalogs.then(step).catch((err: unknown) => {
      this.#o.logger.debug({ err, origin: this.origin }, 'catalog not applied')
      this.#o.link.close(`catalog not applied: ${err instanceof Error ? err.message : String(err)}`)
    })
  }

  #receive(message: LinkMessage): void {
    if (message.type === 'catalog') {
      // A catalog that cannot be applied (the store closed while the node stops) ends the link; the loop ends with it.
      this.#chain(() => this.#applyCatalog(message))
      return
    }
    if (message.type === 'fetch-response' && this.#pending?.id === message.requestId) {
      this.#pending.resolve(message)
      this.#pending = null
    }
  }

  async #applyCatalog(catalog: CatalogMessage): Promise<void> {
    const starts = new Map<string, number>()
    for (const entry of catalog.partitions) {
      const ref = { stream: entry.stream, origin: this.origin, partition: entry.partition }
      const key = `${ref.stream}\u0000${ref.partition}`
      const before = this.#o.log.partition(ref)
      if (before !== undefined && before.firstOffset < entry.firstOffset) starts.set(key, entry.firstOffset)
      if (this.#copies.has(key)) continue
      if (
        before !== undefined &&
        before.firstOffset === before.nextOffset &&
        entry.firstOffset < before.firstOffset
      ) {
        // An emptied copy assigned again: from the origin's log start, not from where it once ended.
        await this.#o.log.restartReplica(ref, entry.firstOffset, 'assigned again after its copy was deleted')
        this.#o.logger.info(
          { ...ref, from: entry.firstOffset },
          "copy assigned again: copied from the origin's log start",
        )
      }
      await this.#o.log.ensureReplica(ref, entry.firstOffset)
      const copy = {
        ref,
        lastIncarnation: 0,
        lastCrc: 0,
        originDurableNext: entry.durableNext,
        reported: false,
      }
      this.#resetLast(copy)
      this.#copies.set(key, copy)
    }
    // The origin gave a partition to another follower: stop fetching it, keep the copy as it is.
    const listed = new Set(catalog.partitions.map((e) => `${e.stream}\u0000${e.partition}`))
    for (const [key, copy] of this.#copies)
      if (!listed.has(key)) {
        this.#copies.delete(key)
        this.#o.logger.info(
          { ...copy.ref },
          'the origin no longer lists this partition for this node; the copy stays',
        )
      }
    this.#listed = listed
    if (starts.size > 0) await this.#followStarts(starts)
    await this.#expireUnassigned()
    this.#wakeForCatalog?.()
  }

  /** Deletes the batches of this origin's copies that its catalogs have left out for expireMs. */
  async #expireUnassigned(): Promise<void> {
    const listed = this.#listed
    const { log } = this.#o
    const unassigned = this.#unassigned
    const expireMs = this.#expireMs
    if (listed === null || this.#o.link.closedReason !== null) return
    const origin = this.origin
    const now = performance.now()
    const due = new Map<string, number>()
    for (const p of log.partitions()) {
      if (p.origin !== origin) continue
      const key = `${p.stream}\u0000${p.partition}`
      const held = `${origin}\u0000${key}`
      if (listed.has(key)) {
        unassigned.delete(held)
        continue
      }
      const since = unassigned.get(held) ?? now
      unassigned.set(held, since)
      if (now - since >= expireMs && p.nextOffset > p.firstOffset) due.set(key, p.nextOffset)
    }
    if (due.size === 0) return
    const report = await log.applyRetention((ref) => {
      const end = ref.origin === origin ? due.get(`${ref.stream}\u0000${ref.partition}`) : undefined
      return end === undefined ? undefined : { maxAgeMs: null, maxBytes: null, deleteBelow: end }
    }, Date.now())
    this.#o.logger.info(
      {
        origin,
        expireMs,
        partitions: [...due.keys()].map((k) => k.replace('\u0000', '/')),
        retention: report,
      },
      'copies no longer assigned to this node for cluster.followerExpireMs: deleted',
    )
  }

  /** Deletes what the origin no longer keeps from the copies (keyed `stream NUL partition`). */
  async #followStarts(starts: ReadonlyMap<string, number>): Promise<void> {
    const origin = this.origin
    const report = await this.#o.log.applyRetention((ref) => {
      const start = ref.origin === origin ? starts.get(`${ref.stream}\u0000${ref.partition}`) : undefined
      return start === undefined ? undefined : { maxAgeMs: null, maxBytes: null, deleteBelow: start }
    }, Date.now())
    if (report.batchesDeleted > 0)
      this.#o.logger.info({ origin, retention: report }, "copies follow their origin's log start")
  }

  async #loop(): Promise<void> {
    const { link } = this.#o
    while (link.closedReason === null) {
      await this.#catalogs
      if (this.#copies.size === 0) {
        const catalog = new Promise<void>((resolve) => {
          this.#wakeForCatalog = resolve
        })
        await Promise.race([catalog, link.closed()])
        this.#wakeForCatalog = null
        continue
      }
      const response = await this.#fetch()
      if (response === null) return
      await this.#apply(response)
      // Let other work in between catch-up fetches.
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
  }

  #fetch(): Promise<FetchResponseMessage | null> {
    const { log } = this.#o
    const partitions = [...this.#copies.values()].map((c) => {
      const nextOffset = log.partition(c.ref)?.nextOffset ?? 0
      return { ...c.ref, nextOffset, lastIncarnation: c.lastIncarnation, lastCrc: c.lastCrc }
    })
    return this.request(partitions, FETCH_MAX_WAIT_MS)
  }

  /**
   * One fetch over the link and its answer (null when the link closed first).
   * The follower's own loop uses it; so does tail recovery, before `run()`.
   */
  async request(partitions: readonly FetchEntry[], maxWaitMs: number): Promise<FetchResponseMessage | null> {
    const { link } = this.#o
    const id = ++this.#requestId
    const answered = new Promise<FetchResponseMessage>((resolve) => {
      this.#pending = { id, resolve }
    })
    await link.send({ type: 'fetch', requestId: id, maxWaitMs, maxBytes: FETCH_MAX_BYTES, partitions })
    const closed = link.closed().then(() => null)
    return Promise.race([answered, closed])
  }

  async #apply(response: FetchResponseMessage): Promise<void> {
    const { log, logger, link } = this.#o
    const synced: Array<{ stream: string; origin: string; partition: number; syncedNext: number }> = []
    for (const entry of response.partitions) {
      const copy = this.#copies.get(`${entry.stream}\u0000${entry.partition}`)
      if (copy === undefined) continue
      copy.originDurableNext = entry.durableNext
      switch (entry.status) {
        case 'ok': {
          const last = entry.batches[entry.batches.length - 1]
          if (last !== undefined) {
            await log.appendReplica(copy.ref, entry.batches)
            const header = readBatchHeader(last)
            copy.lastIncarnation = header.incarnation
            copy.lastCrc = header.crc
          } else if (copy.reported) continue
          // Reported at least once per link, new batches or not: a follower back on a new link
          // with nothing new to copy counts again at once (the origin forgot it when the old link dropped).
          copy.reported = true
          synced.push({ ...copy.ref, syncedNext: log.durableNext(copy.ref) })
          break
        }
        case 'diverged': {
          const moved = await log.restartReplica(
            copy.ref,
            entry.divergedAt,
            `diverged from origin ${this.origin} at offset ${entry.divergedAt}`,
          )
          logger.error(
            { code: 'TRIB_REPLICA_DIVERGED', ...copy.ref, from: entry.divergedAt, batchesMoved: moved },
            'replica diverged from its origin: its tail was moved to the quarantine and is copied again',
          )
          this.#o.onDiverged?.(copy.ref, entry.divergedAt)
          this.#resetLast(copy)
          break
        }
        case 'out-of-range':
          await log.restartReplica(
            copy.ref,
            entry.firstOffset,
            `origin ${this.origin} deleted records before ${entry.firstOffset}`,
          )
          logger.warn(
            { ...copy.ref, firstOffset: entry.firstOffset },
            'replica jumps to the origin log start',
          )
          this.#resetLast(copy)
          break
        case 'unknown-partition':
          logger.warn({ ...copy.ref }, 'the origin no longer has this partition; the copy stays as it is')
          this.#copies.delete(`${entry.stream}\u0000${entry.partition}`)
          break
      }
    }
    if (synced.length > 0 && link.closedReason === null)
      await link.send({ type: 'synced', partitions: synced })
  }

  #resetLast(copy: Copy): void {
    const last = lastBatchOf(this.#o.log, copy.ref)
    copy.lastIncarnation = last.incarnation
    copy.lastCrc = last.crc
    copy.reported = false
  }
}

/** The incarnation and CRC32C of a partition's last batch here; 0 and 0 when it holds none. */
export function lastBatchOf(log: ReplicaLog, ref: PartitionRef): { incarnation: number; crc: number } {
  const held = log.partition(ref)
  if (held === undefined || held.nextOffset <= held.firstOffset) return { incarnation: 0, crc: 0 }
  return log.lastBatchBefore(ref, held.nextOffset) ?? { incarnation: 0, crc: 0 }
}
