// The origin's side of one replication link: a follower pulls this node's
// own partitions. On the link it sends the catalog (which partitions exist,
// where each log starts, how far it is durable) at once and whenever that
// changes, and answers each fetch:
// - this node's own partitions are served, and the peer's own partitions
//   from this node's copies (a peer fetching its lost tail back at start,
//   tail-recovery.ts); anything else is `unknown-partition`;
// - a follower whose copy ends before the log's start is told `out-of-range`
//   (the origin deleted what it missed) and starts its copy anew there;
// - before sending anything, the follower's copy must be a prefix of this
//   log (Kafka's leader-epoch check, KIP-101): the CRC32C of its last batch
//   must be the CRC of this log's batch ending at the same offset; if not,
//   or if it holds more than this log has durably, the answer is `diverged`
//   with the offset to go back to (the start of the batch that differs);
//   but while this node recovers its own tail at start, a follower holding
//   more than it has is answered with nothing yet (its copy may be the tail
//   being fetched back);
// - otherwise the stored batches after it, fdatasync'd ones only, as they
//   are on disk, up to the fetch's maxBytes over all its partitions;
// - with nothing to send, the answer waits (long poll) until new records are
//   durable or maxWaitMs ran out, so an idle link costs nothing.
// `synced` reports (how far the follower's copies are fdatasync'd) go to
// `onSynced`, which the follower positions keep. The catalog lists only the
// partitions the origin assigned to this follower (`assigned`, see
// assignment.ts); when that changes it is sent again, and a follower fetches
// only what its latest catalog lists.

import { readBatchHeader } from '../log/batch-codec.ts'
import type { PartitionRef, ReplicaLog } from '../log/log-store.ts'
import type { Logger } from '../observability/logger.ts'
import type { LinkMessage, PeerLink } from './link.ts'
import type { CatalogEntry, FetchEntry, FetchMessage, FetchResponseEntry, SyncedEntry } from './messages.ts'

/** How often the catalog is compared with the log for changes (new partitions, retention). */
export const CATALOG_CHECK_MS = 1000
/** The longest a fetch may wait for records, whatever the follower asks. */
export const MAX_FETCH_WAIT_MS = 5000

export interface OriginServerOptions {
  readonly link: PeerLink
  readonly log: ReplicaLog
  readonly logger: Logger
  /** True while this node fetches its own tail back (before it writes new records). */
  readonly recovering: () => boolean
  /** A follower reported how far its copies are fdatasync'd. */
  readonly onSynced: (follower: string, entries: readonly SyncedEntry[]) => void
  /** Whether this link's follower is one the origin picked to copy partition `p` (its catalog lists only those). */
  readonly assigned: (p: { readonly stream: string; readonly partition: number }) => boolean
}

export class OriginServer {
  readonly #o: OriginServerOptions
  readonly #timer: NodeJS.Timeout
  #catalogKey = ''
  /** Fetches are answered one at a time, in order. */
  #answering: Promise<void> = Promise.resolve()

  constructor(options: OriginServerOptions) {
    this.#o = options
    options.link.onMessage((message) => this.#receive(message))
    this.#timer = setInterval(() => this.#sendCatalog(false), CATALOG_CHECK_MS)
    this.#timer.unref()
    void options.link.closed().then(() => clearInterval(this.#timer))
    this.#sendCatalog(true)
  }

  /** Sends the catalog now if it changed (the assignment moved a partition). */
  refreshCatalog(): void {
    this.#sendCatalog(false)
  }

  /** Stops the catalog timer; the link's owner closes the link. */
  close(): void {
    clearInterval(this.#timer)
  }

  #receive(message: LinkMessage): void {
    if (message.type === 'synced') {
      this.#o.onSynced(this.#o.link.peer.nodeId, message.partitions)
      return
    }
    if (message.type !== 'fetch') return
    // A failed answer (the link closed meanwhile) ends with the link: the follower fetches again on the next one.
    this.#answering = this.#answering
      .then(() => this.#answer(message))
      .catch((err: unknown) =>
        this.#o.logger.debug({ err, peer: this.#o.link.peer.nodeId }, 'fetch not answered'),
      )
  }

  #catalog(): CatalogEntry[] {
    const { log } = this.#o
    return log
      .localPartitions()
      .filter((p) => this.#o.assigned(p))
      .map((p) => ({
        stream: p.stream,
        partition: p.partition,
        firstOffset: p.firstOffset,
        durableNext: log.durableNext(p),
        incarnation: log.incarnation,
      }))
  }

  /** Sends the catalog when the partitions or their log starts changed (or `always`). */
  #sendCatalog(always: boolean): void {
    if (this.#o.link.closedReason !== null) return
    const partitions = this.#catalog()
    const key = partitions.map((p) => `${p.stream}\u0000${p.partition}\u0000${p.firstOffset}`).join('\u0001')
    if (!always && key === this.#catalogKey) return
    this.#catalogKey = key
    this.#o.link.send({ type: 'catalog', partitions }).catch(() => undefined)
  }

  async #answer(fetch: FetchMessage): Promise<void> {
    const deadline = performance.now() + Math.min(fetch.maxWaitMs, MAX_FETCH_WAIT_MS)
    let entries = this.#entries(fetch)
    while (
      entries.every((e) => e.status === 'ok' && e.batches.length === 0) &&
      performance.now() < deadline &&
      this.#o.link.closedReason === null
    ) {
      await this.#o.log.nextDurable(Math.max(1, deadline - performance.now()))
      // The link (and maybe the store) closed while waiting: nobody reads the answer.
      if (this.#o.link.closedReason !== null) return
      entries = this.#entries(fetch)
    }
    await this.#o.link.send({ type: 'fetch-response', requestId: fetch.requestId, partitions: entries })
  }

  #entries(fetch: FetchMessage): FetchResponseEntry[] {
    let budget = fetch.maxBytes
    return fetch.partitions.map((want) => {
      const entry = this.#entry(want, budget)
      for (const batch of entry.batches) budget -= batch.length
      return entry
    })
  }

  #entry(want: FetchEntry, budget: number): FetchResponseEntry {
    const { log, link } = this.#o
    const ref: PartitionRef = { stream: want.stream, origin: want.origin, partition: want.partition }
    const own = want.origin === log.origin
    const p = own || want.origin === link.peer.nodeId ? log.partition(ref) : undefined
    const answer = (
      status: FetchResponseEntry['status'],
      extra: Partial<Pick<FetchResponseEntry, 'divergedAt' | 'batches'>> = {},
    ): FetchResponseEntry => ({
      ...ref,
      status,
      firstOffset: p?.firstOffset ?? 0,
      durableNext: p === undefined ? 0 : log.durableNext(ref),
      divergedAt: extra.divergedAt ?? 0,
      incarnation: own ? log.incarnation : lastIncarnation(extra.batches),
      batches: extra.batches ?? [],
    })
    if (p === undefined) return answer('unknown-partition')
    if (want.nextOffset < p.firstOffset) return answer('out-of-range')
    const durable = log.durableNext(ref)
    if (want.nextOffset > durable) {
      if (own && this.#o.recovering()) return answer('ok')
      return answer('diverged', { divergedAt: this.#backTo(ref, durable, durable) })
    }
    if (want.nextOffset > p.firstOffset && !sameBatch(log.lastBatchBefore(ref, want.nextOffset), want))
      return answer('diverged', { divergedAt: this.#backTo(ref, want.nextOffset, durable) })
    if (budget <= 0) return answer('ok')
    const batches = log.readBatches(ref, want.nextOffset, budget).map((b) => b.bytes)
    return answer('ok', { batches })
  }

  /** Where a diverged copy goes back to: the start of this log's batch holding offset `next - 1` (or its end). */
  #backTo(ref: PartitionRef, next: number, durable: number): number {
    const from = Math.max(0, Math.min(next, durable) - 1)
    const [holding] = this.#o.log.readBatches(ref, from, 1)
    return holding !== undefined && holding.baseOffset <= from ? holding.baseOffset : Math.min(next, durable)
  }
}

/** The follower's last batch is this log's batch ending at the same offset (an incarnation of 0: not told). */
function sameBatch(held: { incarnation: number; crc: number } | null, want: FetchEntry): boolean {
  if (held === null || held.crc !== want.lastCrc) return false
  return want.lastIncarnation === 0 || held.incarnation === want.lastIncarnation
}

/** The incarnation of the last of `batches` (served from a copy); 0 when there are none. */
function lastIncarnation(batches: readonly Buffer[] | undefined): number {
  const last = batches?.[batches.length - 1]
  return last === undefined ? 0 : readBatchHeader(last).incarnation
}
