// Durable forwarding cursors: per (sink, stream, origin, partition) the next
// offset to send, in the `upstream-cursors` database of the node's LMDB
// environment. A cursor only moves after the sink acknowledged the records
// before it. Writes are coalesced (at most one per cursor per `flushMs`) so an
// idle trickle does not cost a flash commit per batch; after a crash a sink may
// therefore see up to `flushMs` of records again (at-least-once), unless it
// keeps its own position (Kafka exactly-once), which wins over this one.

import type { Database } from 'lmdb'
import type { PartitionRef } from '../log/log-store.ts'
import type { NodeEnvironment } from '../log/node-environment.ts'

export interface CursorKey extends PartitionRef {
  readonly sink: string
}

export interface StoredCursor extends CursorKey {
  readonly offset: number
}

/** lmdb-js array keys (ordered-binary): [sink, stream, origin, partition]. */
type Key = [string, string, string, number]

function keyOf(k: CursorKey): Key {
  return [k.sink, k.stream, k.origin, k.partition]
}

/** Every stored cursor (for `tributary sinks`, which opens the environment read-only). */
export function listCursors(env: NodeEnvironment): StoredCursor[] {
  const db = env.database<number, Key>('upstream-cursors')
  return [...db.getRange({})].map(({ key: [sink, stream, origin, partition], value }) => ({
    sink,
    stream,
    origin,
    partition,
    offset: value,
  }))
}

export class CursorStore {
  readonly #db: Database<number, Key>
  readonly #flushMs: number
  /** Changed cursors not yet written, by their key joined with NUL (no part contains NUL). */
  readonly #dirty = new Map<string, { key: Key; offset: number }>()
  #timer: NodeJS.Timeout | null = null
  #writing: Promise<unknown> = Promise.resolve()

  constructor(env: NodeEnvironment, flushMs: number) {
    this.#db = env.database('upstream-cursors')
    this.#flushMs = flushMs
  }

  get(cursor: CursorKey): number | null {
    const key = keyOf(cursor)
    return this.#dirty.get(key.join('\u0000'))?.offset ?? this.#db.get(key) ?? null
  }

  set(cursor: CursorKey, offset: number): void {
    const key = keyOf(cursor)
    this.#dirty.set(key.join('\u0000'), { key, offset })
    if (this.#timer === null) {
      this.#timer = setTimeout(() => {
        this.#timer = null
        void this.flush()
      }, this.#flushMs)
      this.#timer.unref()
    }
  }

  /** Writes every changed cursor in one LMDB transaction; resolves once committed. */
  flush(): Promise<void> {
    if (this.#dirty.size > 0) {
      const batch = [...this.#dirty]
      this.#dirty.clear()
      // A failed write (disk full) only means these records may be sent again.
      this.#writing = this.#db
        .transaction(() => {
          for (const [, { key, offset }] of batch) this.#db.putSync(key, offset)
        })
        .catch(() => {
          for (const [id, entry] of batch) if (!this.#dirty.has(id)) this.#dirty.set(id, entry)
        })
    }
    return this.#writing.then(() => undefined)
  }

  async close(): Promise<void> {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    await this.flush()
  }
}
