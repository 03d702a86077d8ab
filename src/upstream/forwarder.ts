// One forwarder per (sink, partition): reads batches from its durable cursor,
// sends them, and moves the cursor only after the sink acknowledged them.
//
// - Batching: up to the sink's maxBatchRecords / maxBatchBytes; a short batch
//   waits until its oldest record is lingerMs old (a backlog never waits).
// - Failures: retriable ones are retried from the cursor with jittered
//   exponential backoff; a batch the sink rejects is sent again in halves, so
//   that a batch too large for the sink still goes through and only a poison
//   record ends up in the dead-letter stream.
// - Watchdog: a send unanswered for stuckAfterMs is abandoned, the sink's
//   connections are torn down ("connected but stuck"), and the batch retried.
// - The cursor is the retention floor of this sink for the partition, so
//   retention never deletes what was not forwarded (the disk-full policy aside).
// About 400 lines: one loop with the four behaviours above, which share the
// cursor and the state the status reports.

import type { SinkConfig } from '../config/schema.ts'
import { isTributaryError, TributaryError } from '../errors.ts'
import { Backoff, sleep } from '../lib/backoff.ts'
import type { LogStore, PartitionRef } from '../log/log-store.ts'
import type { StoredRecord } from '../log/record.ts'
import type { Logger } from '../observability/logger.ts'
import type { CursorStore } from './cursors.ts'
import { writeDeadLetter } from './dead-letter.ts'
import type { SinkGate } from './gate.ts'
import { type Lag, lagOf } from './lag.ts'
import type { Sink, SinkBatch } from './sink.ts'

/** How often an idle forwarder looks for new records, at most (bounded by the sink's lingerMs). */
const MAX_IDLE_POLL_MS = 200
const MIN_IDLE_POLL_MS = 10
/** While a sink keeps failing, one log line per this long per forwarder. */
const FAILURE_LOG_EVERY_MS = 60_000
/** Per-record framing counted against the bandwidth cap besides key and payload. */
const RECORD_OVERHEAD_BYTES = 64

export type ForwarderState = 'starting' | 'idle' | 'sending' | 'retrying' | 'failed' | 'stopped'

export interface ForwarderStatus extends PartitionRef, Lag {
  readonly sink: string
  /** Next offset to forward. */
  readonly cursor: number
  readonly nextOffset: number
  readonly state: ForwarderState
  readonly forwarded: number
  readonly deadLettered: number
  /** Batches of several records the sink refused, then sent in halves. */
  readonly splitBatches: number
  readonly retries: number
  readonly stuckRestarts: number
  readonly lastError: { readonly code: string; readonly message: string; readonly atMs: number } | null
}

export interface ForwarderOptions {
  readonly sink: Sink
  readonly config: SinkConfig
  /** The partition it forwards, of whichever origin. */
  readonly ref: PartitionRef
  readonly priority: number
  readonly deadLetterStream: string
  readonly store: LogStore
  readonly cursors: CursorStore
  readonly gate: SinkGate
  readonly log: Logger
  /** Tears down the sink's connections after a stuck send (shared by the sink's forwarders). */
  readonly restartSink: () => Promise<void>
}

function recordBytes(record: StoredRecord): number {
  return record.payload.length + (record.key?.length ?? 0) + RECORD_OVERHEAD_BYTES
}

function codeOf(err: unknown): string {
  return isTributaryError(err) ? err.code : 'TRIB_SINK_UNAVAILABLE'
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

export class Forwarder {
  readonly #o: ForwarderOptions
  readonly #holder: string
  readonly #abort = new AbortController()
  readonly #backoff: Backoff
  #cursor = 0
  /**
   * After a rejected batch: within [from, until) send at most `size` records at
   * a time, halving on each rejection, so a batch too large for the sink finds
   * a size that passes and a poison record ends up alone (then dead-lettered)
   * in log2(batch) tries.
   */
  #isolate = { from: 0, until: 0, size: 0 }
  /**
   * Newest-first drain only: records [from, next) already sent ahead of the
   * cursor. Set when a backlog is found; live records go first from `next`,
   * the backlog [cursor, from) is sent when live is caught up, then the two
   * join. Kept in memory: after a restart the range may be sent again.
   */
  #ahead: { from: number; next: number } | null = null
  #state: ForwarderState = 'starting'
  #failingSinceMs: number | null = null
  #lastFailureLogMs = 0
  #running: Promise<void> | null = null
  #forwarded = 0
  #deadLettered = 0
  #splitBatches = 0
  #retries = 0
  #stuckRestarts = 0
  #lastError: ForwarderStatus['lastError'] = null

  constructor(options: ForwarderOptions) {
    this.#o = options
    this.#holder = `sink:${options.sink.name}`
    this.#backoff = new Backoff(options.config.retry)
    // Known at once, so retention and the disk guard see it before the sink is asked for its own.
    this.#cursor = options.cursors.get(this.#key) ?? 0
    options.store.setRetentionFloor(this.#holder, options.ref, this.#cursor)
  }

  get ref(): PartitionRef {
    return this.#o.ref
  }

  /** The next offset to forward. */
  get cursor(): number {
    return this.#cursor
  }

  get #key() {
    return { sink: this.#o.sink.name, ...this.#o.ref }
  }

  start(): void {
    this.#running ??= this.#run().catch((err: unknown) => {
      this.#state = 'failed'
      this.#o.log.error({ err, ...this.#key }, 'forwarder stopped by an unexpected error')
    })
  }

  async stop(): Promise<void> {
    this.#abort.abort(new TributaryError('TRIB_STORE_CLOSED', 'forwarder stopping'))
    await this.#running
    this.#state = 'stopped'
  }

  status(): ForwarderStatus {
    const partition = this.#o.store.partition(this.#o.ref)
    const behind =
      partition === undefined
        ? { lagRecords: 0, lagBytes: 0, lagSeconds: 0 }
        : lagOf(this.#o.store, partition, this.#cursor)
    // Records sent ahead of the cursor (newest-first) are not lag.
    const sentAhead = this.#ahead === null ? 0 : this.#ahead.next - this.#ahead.from
    const lagRecords = Math.max(0, behind.lagRecords - sentAhead)
    const lag = {
      lagRecords,
      lagBytes: behind.lagRecords === 0 ? 0 : Math.round((behind.lagBytes * lagRecords) / behind.lagRecords),
      lagSeconds: lagRecords === 0 ? 0 : behind.lagSeconds,
    }
    return {
      ...this.#key,
      cursor: this.#cursor,
      nextOffset: partition?.nextOffset ?? this.#cursor,
      ...lag,
      state: this.#state,
      forwarded: this.#forwarded,
      deadLettered: this.#deadLettered,
      splitBatches: this.#splitBatches,
      retries: this.#retries,
      stuckRestarts: this.#stuckRestarts,
      lastError: this.#lastError,
    }
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal
    await this.#restore(signal)
    const pollMs = Math.min(MAX_IDLE_POLL_MS, Math.max(MIN_IDLE_POLL_MS, this.#o.config.lingerMs))
    while (!signal.aborted) {
      const { from, until } = this.#nextRead()
      const isolating = from >= this.#isolate.from && from < this.#isolate.until
      const isolatedSize = Math.min(this.#isolate.size, this.#isolate.until - from)
      const limit =
        until === null
          ? this.#o.config.maxBatchRecords
          : Math.min(this.#o.config.maxBatchRecords, until - from)
      const { records, nextOffset } = this.#o.store.read(this.#o.ref, from, {
        maxRecords: isolating ? Math.min(limit, isolatedSize) : limit,
        maxBytes: this.#o.config.maxBatchBytes,
        // Never forward what a power cut could still take back (and give its offset to another record).
        durableOnly: true,
      })
      const inRange = until === null ? records : records.filter((r) => r.offset < until)
      if (inRange.length === 0) {
        // Past records deleted by retention or skipped as damaged: nothing to send there.
        if (nextOffset > from) this.#delivered(from, Math.min(nextOffset, until ?? nextOffset) - 1)
        if (this.#state !== 'retrying') this.#state = 'idle'
        if (nextOffset <= from || until === null) await sleep(pollMs, signal)
        continue
      }
      if (!isolating && (await this.#lingered(inRange, signal))) continue
      await this.#forward(inRange, signal)
    }
  }

  /** Where the next batch starts, and where it must end (newest-first backfill stops at the range sent ahead). */
  #nextRead(): { from: number; until: number | null } {
    if (this.#o.config.drainOrder !== 'newest-first') return { from: this.#cursor, until: null }
    const end = this.#o.store.partition(this.#o.ref)?.nextOffset ?? this.#cursor
    const batch = this.#o.config.maxBatchRecords
    if (this.#ahead === null && end - this.#cursor > batch) {
      this.#ahead = { from: end - batch, next: end - batch }
      this.#o.log.info(
        { ...this.#key, backlog: end - this.#cursor - batch },
        'backlog found: newest records first',
      )
    }
    if (this.#ahead === null) return { from: this.#cursor, until: null }
    if (this.#ahead.next < end) return { from: this.#ahead.next, until: null }
    return { from: this.#cursor, until: this.#ahead.from }
  }

  /** Records from `first` to `last` were sent (or skipped): move whichever position they belong to. */
  #delivered(first: number, last: number): void {
    const ahead = this.#ahead
    if (ahead !== null && first >= ahead.from) {
      ahead.next = Math.max(ahead.next, last + 1)
      return
    }
    this.#advance(last + 1)
    if (ahead !== null && this.#cursor >= ahead.from) {
      this.#ahead = null
      this.#advance(Math.max(this.#cursor, ahead.next))
    }
  }

  /** The cursor to go on from: ours, or the sink's own position when it keeps one and is further. */
  async #restore(signal: AbortSignal): Promise<void> {
    const local = this.#cursor
    let remote: number | null = null
    const position = this.#o.sink.committedPosition?.bind(this.#o.sink)
    while (position !== undefined && !signal.aborted) {
      try {
        remote = await position(this.#o.ref)
        this.#recovered()
        break
      } catch (err) {
        await this.#failed(err, signal)
      }
    }
    this.#cursor = Math.max(local, remote ?? 0)
    this.#o.store.setRetentionFloor(this.#holder, this.#o.ref, this.#cursor)
    this.#state = 'idle'
  }

  /** True when a short batch should wait for more records (it then re-reads). */
  async #lingered(records: readonly StoredRecord[], signal: AbortSignal): Promise<boolean> {
    const { lingerMs, maxBatchRecords, maxBatchBytes } = this.#o.config
    if (lingerMs === 0 || records.length >= maxBatchRecords) return false
    const bytes = records.reduce((sum, r) => sum + recordBytes(r), 0)
    if (bytes >= maxBatchBytes) return false
    const waitMs = (records[0]?.timestampMs ?? 0) + lingerMs - Date.now()
    if (waitMs <= 0) return false
    await sleep(waitMs, signal)
    return true
  }

  async #forward(records: readonly StoredRecord[], signal: AbortSignal): Promise<void> {
    const batch: SinkBatch = { ...this.#o.ref, records }
    const last = records[records.length - 1]
    if (last === undefined) return
    this.#state = 'sending'
    try {
      const bytes = records.reduce((sum, r) => sum + recordBytes(r), 0)
      const release = await this.#o.gate.acquire(this.#o.priority, bytes, signal)
      try {
        await this.#sendWatched(batch, signal)
      } finally {
        release()
      }
      this.#forwarded += records.length
      this.#delivered(records[0]?.offset ?? last.offset, last.offset)
      this.#recovered()
    } catch (err) {
      if (signal.aborted) return
      if (isTributaryError(err, 'TRIB_SINK_REJECTED')) await this.#rejected(batch, err, signal)
      else await this.#failed(err, signal)
    }
  }

  async #sendWatched(batch: SinkBatch, signal: AbortSignal): Promise<void> {
    const attempt = new AbortController()
    const { stuckAfterMs } = this.#o.config
    const stuck = new TributaryError(
      'TRIB_SINK_STUCK',
      `${this.#o.sink.name}: no answer to a batch of ${batch.records.length} in ${stuckAfterMs} ms`,
    )
    const onStop = (): void => attempt.abort(signal.reason)
    signal.addEventListener('abort', onStop, { once: true })
    let timer: NodeJS.Timeout | undefined
    const watchdog = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        attempt.abort(stuck)
        reject(stuck)
      }, stuckAfterMs)
    })
    try {
      await Promise.race([this.#o.sink.send(batch, attempt.signal), watchdog])
    } catch (err) {
      if (err === stuck) {
        this.#stuckRestarts++
        this.#o.log.warn(
          { code: stuck.code, ...this.#key, records: batch.records.length, stuckAfterMs },
          'sink connected but stuck; restarting its connection',
        )
        await this.#o.restartSink()
      }
      throw err
    } finally {
      clearTimeout(timer)
      signal.removeEventListener('abort', onStop)
    }
  }

  async #rejected(batch: SinkBatch, err: TributaryError, signal: AbortSignal): Promise<void> {
    const [record, ...rest] = batch.records
    if (record === undefined) return
    if (rest.length > 0) {
      // Too large for the sink, or one of them is poison: send it in halves.
      this.#splitBatches++
      const until = (rest.at(-1)?.offset ?? record.offset) + 1
      const size = Math.ceil(batch.records.length / 2)
      // Halving inside the range already being split keeps its end; a new rejection starts a new range.
      this.#isolate = {
        from: record.offset,
        until: Math.max(until, this.#isolate.until > record.offset ? this.#isolate.until : until),
        size,
      }
      this.#o.log.info(
        { ...this.#key, ...this.#isolate, error: err.message },
        'sink refused a batch: sending it in halves',
      )
      return
    }
    try {
      await writeDeadLetter(
        this.#o.store,
        this.#o.deadLetterStream,
        { sink: this.#o.sink.name, ...this.#o.ref, reason: err.message },
        record,
      )
    } catch (writeErr) {
      await this.#failed(writeErr, signal)
      return
    }
    this.#deadLettered++
    this.#lastError = { code: err.code, message: err.message, atMs: Date.now() }
    this.#o.log.warn(
      {
        code: err.code,
        ...this.#key,
        offset: record.offset,
        deadLetterStream: this.#o.deadLetterStream,
        reason: err.message,
      },
      'record rejected by the sink; moved to the dead-letter stream',
    )
    this.#delivered(record.offset, record.offset)
  }

  async #failed(err: unknown, signal: AbortSignal): Promise<void> {
    const now = Date.now()
    this.#retries++
    this.#lastError = { code: codeOf(err), message: messageOf(err), atMs: now }
    this.#state = 'retrying'
    if (isTributaryError(err) && !err.retriable) {
      // Retrying cannot fix it (a bug or a setting): say so loudly, keep the records, try again slowly.
      this.#o.log.error({ err, ...this.#key }, 'forwarding failed with an error retrying cannot fix')
    } else if (this.#failingSinceMs === null || now - this.#lastFailureLogMs >= FAILURE_LOG_EVERY_MS) {
      this.#o.log.warn(
        {
          code: this.#lastError.code,
          ...this.#key,
          error: this.#lastError.message,
          retries: this.#backoff.attempts,
        },
        'sink unavailable; retrying with backoff',
      )
      this.#lastFailureLogMs = now
    }
    this.#failingSinceMs ??= now
    await sleep(this.#backoff.next(), signal)
  }

  #recovered(): void {
    this.#backoff.reset()
    if (this.#failingSinceMs === null) return
    this.#o.log.info(
      { ...this.#key, outageMs: Date.now() - this.#failingSinceMs, cursor: this.#cursor },
      'sink reachable again; forwarding resumed',
    )
    this.#failingSinceMs = null
  }

  #advance(offset: number): void {
    this.#cursor = offset
    this.#o.cursors.set(this.#key, offset)
    this.#o.store.setRetentionFloor(this.#holder, this.#o.ref, offset)
  }
}
