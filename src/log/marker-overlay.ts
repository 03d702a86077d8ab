// Ingest's markers (QoS 2 dedupe state): committed in the LMDB database
// `log-markers` with the lazy index commit, and held here from the moment
// their frame is written until then, so `marker(key)` sees a change as soon
// as the append that made it resolves.

import type { Database } from 'lmdb'
import type { MarkerChange } from './frame-codec.ts'
import type { Marker } from './log-store.ts'

function prefixEnd(prefix: string): string {
  return `${prefix}\uffff`
}

export class MarkerOverlay {
  readonly #db: Database<Marker, string>
  /** Latest value per key changed since the last commit; null: removed. */
  #changed = new Map<string, Marker | null>()
  /** Prefix removals since the last commit, applied to the committed markers first. */
  #removed: string[] = []

  constructor(db: Database<Marker, string>) {
    this.#db = db
  }

  apply(change: MarkerChange): void {
    if (change.kind === 'put') {
      this.#changed.set(change.key, change.marker)
      return
    }
    for (const key of this.#changed.keys()) if (key.startsWith(change.prefix)) this.#changed.set(key, null)
    this.#removed.push(change.prefix)
  }

  get(key: string): Marker | undefined {
    const changed = this.#changed.get(key)
    if (changed !== undefined) return changed ?? undefined
    if (this.#removed.some((prefix) => key.startsWith(prefix))) return undefined
    return this.#db.get(key)
  }

  /** Writes the changes; call inside an LMDB write transaction, then `committed()`. */
  writePending(): void {
    for (const prefix of this.#removed) {
      const keys = [...this.#db.getKeys({ start: prefix, end: prefixEnd(prefix) })]
      for (const key of keys) this.#db.removeSync(key)
    }
    for (const [key, marker] of this.#changed) {
      if (marker === null) this.#db.removeSync(key)
      else this.#db.putSync(key, marker)
    }
  }

  committed(): void {
    this.#changed = new Map()
    this.#removed = []
  }
}
