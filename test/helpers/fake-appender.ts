// A segment appender in memory for the write-side schedulers' unit tests
// (SyncPipeline, IndexCommitter, LogWriter). It logs every append and fdatasync, and
// each fdatasync waits until the test ends it (`endSync`), or ends at once
// when `autoSync` is set. A failed sync makes the segment suspect: the next
// append rolls, like SegmentAppender.

import type { SyncedAppender } from '../../src/log/sync-pipeline.ts'

interface PendingSync {
  readonly segment: number
  readonly size: number
  readonly resolve: () => void
  readonly reject: (err: unknown) => void
}

export class FakeAppender implements SyncedAppender {
  /** `append <segment>:<position>`, `sync <segment>` (started), `synced <segment>`, `sync failed <segment>`. */
  readonly events: string[] = []
  /** The next append fails with this, once, and writes nothing. */
  failNextAppend: Error | null = null
  /** When set, the next append waits for this promise before it writes (a slow write). */
  holdNextAppend: Promise<void> | null = null
  /** When set, each fdatasync ends on its own after this many ms (0: at once). */
  autoSyncMs: number | null = null
  unsyncedSinceMs: number | null = null
  #segment = 1
  #size = 0
  #syncedSize = 0
  #rollNext = false
  readonly #segmentBytes: number
  readonly #pending: PendingSync[] = []

  constructor(segmentBytes = 64 * 1024 * 1024) {
    this.#segmentBytes = segmentBytes
  }

  get position(): { segment: number; position: number } {
    return { segment: this.#segment, position: this.#size }
  }

  get unsyncedBytes(): number {
    return this.#size - this.#syncedSize
  }

  get synced(): boolean {
    return this.#syncedSize >= this.#size
  }

  /** fdatasyncs started and not ended yet. */
  get syncsRunning(): number {
    return this.#pending.length
  }

  rollsFor(frameBytes: number): boolean {
    return this.#rollNext || (this.#size > 0 && this.#size + frameBytes > this.#segmentBytes)
  }

  async append(frame: Buffer): Promise<{ segment: number; position: number }> {
    const failure = this.failNextAppend
    this.failNextAppend = null
    if (failure !== null) throw failure
    const hold = this.holdNextAppend
    this.holdNextAppend = null
    if (hold !== null) await hold
    if (this.rollsFor(frame.length)) {
      this.#segment++
      this.#size = 0
      this.#syncedSize = 0
      this.#rollNext = false
    }
    const at = { segment: this.#segment, position: this.#size }
    this.#size += frame.length
    this.unsyncedSinceMs ??= Date.now()
    this.events.push(`append ${at.segment}:${at.position}`)
    return at
  }

  sync(): Promise<void> {
    const segment = this.#segment
    this.events.push(`sync ${segment}`)
    const done = new Promise<void>((resolve, reject) => {
      this.#pending.push({ segment, size: this.#size, resolve, reject })
    })
    const autoMs = this.autoSyncMs
    if (autoMs !== null) {
      if (autoMs === 0) this.endSync()
      else setTimeout(() => this.endSync(), autoMs)
    }
    return done
  }

  /** Ends the oldest running fdatasync: done, or failed with `err`. */
  endSync(err?: Error): void {
    const sync = this.#pending.shift()
    if (sync === undefined) throw new Error('no fdatasync is running')
    if (err !== undefined) {
      this.#rollNext = true
      this.events.push(`sync failed ${sync.segment}`)
      sync.reject(err)
      return
    }
    if (sync.segment === this.#segment) {
      this.#syncedSize = Math.max(this.#syncedSize, sync.size)
      if (this.synced) this.unsyncedSinceMs = null
    }
    this.events.push(`synced ${sync.segment}`)
    sync.resolve()
  }

  async close(): Promise<void> {
    this.events.push('close')
  }
}

/** Lets every promise callback that is ready run (a macrotask later). */
export function settle(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve))
}
