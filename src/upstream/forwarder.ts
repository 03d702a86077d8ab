// One forwarder per (sink, partition): reads batches from its durable cursor,
// sends them, and moves the cursor only after the sink acknowledged them.
//
// - Batching: up to the sink's maxBatchRecords / maxBatchBytes; a short batch
//   waits until its oldest record is lingerMs old (a backlog never waits).
// - Failures: retriable ones are retried from the cursor with jittered
//   exponential backoff; a batch the sink rejects is retried one record at a
//   time so that only the poison record goes to the dead-letter stream.
// - Watchdog: a send unanswered for stuckAfterMs is abandoned, the sink's
//   connections are torn down ("connected but stuck"), and the batch retried.
// - The cursor is the retention floor of this sink for the partition, so
//   retention never deletes what was not forwarded (the disk-full policy aside).

import type { SinkConfig } from '../config/schema.ts'
import { isTributaryError, TributaryError } from '../errors.ts'
import { Backoff, sleep } from '../lib/backoff.ts'
import type { LogStore, PartitionRef, PartitionStatus } from '../log/log-store.ts'
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
  readonly origin: string
  /** Next offset to forward. */
  readonly cursor: number
  readonly nextOffset: number
  readonly state: ForwarderState
  readonly forwarded: number
  readonly deadLettered: number
  readonly retries: number
  readonly stuckRestarts: number
  readonly lastError: { readonly code: string; readonly message: string; readonly atMs: number } | null
}

export interface ForwarderOptions {
  readonly sink: Sink
  readonly config: SinkConfig
  readonly ref: PartitionRef
  readonly origin: string
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
  /** After a rejected batch: send one record at a time up to here, to find the poison. */
  #isolateUntil = -1
  #state: ForwarderState = 'starting'
  #failingSinceMs: number | null = null
  #lastFailureLogMs = 0
  #running: Promise<void> | null = null
  #forwarded = 0
  #deadLettered = 0
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
    return { sink: this.#o.sink.name, origin: this.#o.origin, ...this.#o.ref }
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

  status(partition: PartitionStatus | undefined): ForwarderStatus {
    const lag =
      partition === undefined
        ? { lagRecords: 0, lagBytes: 0, lagSeconds: 0 }
        : lagOf(this.#o.store, partition, this.#cursor)
    return {
      ...this.#key,
      cursor: this.#cursor,
      nextOffset: partition?.nextOffset ?? this.#cursor,
      ...lag,
      state: this.#state,
      forwarded: this.#forwarded,
      deadLettered: this.#deadLettered,
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
      const isolating = this.#cursor < this.#isolateUntil
      const { records, nextOffset } = this.#o.store.read(this.#o.ref, this.#cursor, {
        maxRecords: isolating ? 1 : this.#o.config.maxBatchRecords,
        maxBytes: this.#o.config.maxBatchBytes,
      })
      if (records.length === 0) {
        // Past records deleted by retention or skipped as damaged: nothing to send there.
        if (nextOffset > this.#cursor) this.#advance(nextOffset)
        if (this.#state !== 'retrying') this.#state = 'idle'
        await sleep(pollMs, signal)
        continue
      }
      if (!isolating && (await this.#lingered(records, signal))) continue
      await this.#forward(records, signal)
    }
  }

  /** The cursor to go on from: ours, or the sink's own position when it keeps one and is further. */
  async #restore(signal: AbortSignal): Promise<void> {
    const local = this.#cursor
    let remote: number | null = null
    const position = this.#o.sink.committedPosition?.bind(this.#o.sink)
    while (position !== undefined && !signal.aborted) {
      try {
        remote = await position(this.#o.ref, this.#o.origin)
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
    const batch: SinkBatch = { ...this.#o.ref, origin: this.#o.origin, records }
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
      this.#advance(last.offset + 1)
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
      // One of them is poison: send one at a time up to the end of this batch.
      this.#isolateUntil = (rest.at(-1)?.offset ?? record.offset) + 1
      this.#o.log.info(
        { ...this.#key, from: record.offset, until: this.#isolateUntil },
        'isolating a rejected record',
      )
      return
    }
    try {
      await writeDeadLetter(
        this.#o.store,
        this.#o.deadLetterStream,
        { sink: this.#o.sink.name, origin: this.#o.origin, ...this.#o.ref, reason: err.message },
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
    this.#advance(record.offset + 1)
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
