// What `ack: replicated` waits on (the origin's side): each publish waits
// until `minInsync - 1` followers report its records fdatasync'd in their
// copies, or its timeout. Waiting records sit in one queue per partition in
// offset order; a synced report for a partition drains its queue from the
// front, up to the first record not yet copied often enough (a later record
// cannot be copied more often than an earlier one). A dropped link never
// satisfies anyone, so only reports are looked at. How many followers hold a
// record comes from the replicator (`copies`), which counts followers with a
// live link only.

export type CopyCount = (stream: string, partition: number, offset: number) => number

/** One publish waiting for copies of its records. */
interface PendingAck {
  /** Its records not copied often enough yet. */
  records: number
  settled: boolean
  readonly finish: (copied: boolean) => void
}

/** A record of a pending publish, in its partition's queue. */
interface AckWait {
  readonly offset: number
  /** Followers that must hold it (the stream's minInsync - 1). */
  readonly needed: number
  readonly ack: PendingAck
}

export interface RecordAt {
  readonly stream: string
  readonly partition: number
  readonly offset: number
}

export class ReplicatedAcks {
  readonly #copies: CopyCount
  readonly #onWait: ((seconds: number, copied: boolean) => void) | undefined
  /** Per `stream NUL partition`, in offset order. */
  readonly #waiting = new Map<string, AckWait[]>()

  /** `onWait`: how long each publish waited and whether it was copied in time (metrics). */
  constructor(copies: CopyCount, onWait?: (seconds: number, copied: boolean) => void) {
    this.#copies = copies
    this.#onWait = onWait
  }

  /** True once `minInsync - 1` followers hold every record fdatasync'd; false after `timeoutMs`. */
  wait(records: readonly RecordAt[], minInsync: number, timeoutMs: number): Promise<boolean> {
    const needed = minInsync - 1
    const waiting = records.filter((r) => this.#copies(r.stream, r.partition, r.offset) < needed)
    if (waiting.length === 0) {
      this.#onWait?.(0, true)
      return Promise.resolve(true)
    }
    const started = performance.now()
    return new Promise<boolean>((resolve) => {
      const ack: PendingAck = {
        records: waiting.length,
        settled: false,
        finish: (copied) => {
          if (ack.settled) return
          ack.settled = true
          clearTimeout(timer)
          this.#onWait?.((performance.now() - started) / 1000, copied)
          resolve(copied)
        },
      }
      // A timed-out publish stays in its queues, settled, until the records before it are copied.
      const timer = setTimeout(() => ack.finish(false), timeoutMs)
      for (const r of waiting) {
        const key = `${r.stream}\u0000${r.partition}`
        const queue = this.#waiting.get(key) ?? []
        if (queue.length === 0) this.#waiting.set(key, queue)
        const wait = { offset: r.offset, needed, ack }
        // Appends come in offset order; a late one is put in its place.
        const at = queue.findLastIndex((w) => w.offset <= r.offset) + 1
        if (at === queue.length) queue.push(wait)
        else queue.splice(at, 0, wait)
      }
    })
  }

  /** A follower reported its copy of the partition: the publishes now copied often enough go on. */
  reported(stream: string, partition: number): void {
    const key = `${stream}\u0000${partition}`
    const queue = this.#waiting.get(key)
    if (queue === undefined) return
    let done = 0
    for (const wait of queue) {
      if (!wait.ack.settled && this.#copies(stream, partition, wait.offset) < wait.needed) break
      done++
      if (!wait.ack.settled && --wait.ack.records === 0) wait.ack.finish(true)
    }
    if (done === queue.length) this.#waiting.delete(key)
    else queue.splice(0, done)
  }

  /** Every waiting publish is answered `false` (the node closes). */
  close(): void {
    for (const queue of this.#waiting.values()) for (const wait of queue) wait.ack.finish(false)
    this.#waiting.clear()
  }
}
