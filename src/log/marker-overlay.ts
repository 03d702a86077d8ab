// Ingest's markers (QoS 2 dedupe state): committed in the LMDB database
// `log-markers` with the lazy index commit, and held here from the moment
// their frame is written until then, so `marker(key)` sees a change as soon
// as the append that made it resolves. Each change carries a sequence number:
// a put counts unless a removal of one of its key's prefixes came after it.
// Lookups cost one map probe per prefix of the key, never a scan.

import type { Database } from 'lmdb'
import type { MarkerChange } from './frame-codec.ts'
import type { Marker } from './log-store.ts'

function prefixEnd(prefix: string): string {
  return `${prefix}\uffff`
}

export class MarkerOverlay {
  readonly #db: Database<Marker, string>
  #seq = 0
  /** Puts since the last commit: the latest per key. */
  #puts = new Map<string, { readonly marker: Marker; readonly seq: number }>()
  /** Prefix removals since the last commit: the latest per prefix. */
  #removals = new Map<string, number>()

  constructor(db: Database<Marker, string>) {
    this.#db = db
  }

  apply(change: MarkerChange): void {
    const seq = ++this.#seq
    if (change.kind === 'put') this.#puts.set(change.key, { marker: change.marker, seq })
    else this.#removals.set(change.prefix, seq)
  }

  /** The sequence number of the latest pending removal that covers `key`, or 0. */
  #removedAt(key: string): number {
    if (this.#removals.size === 0) return 0
    let latest = 0
    for (let end = 1; end <= key.length; end++)
      latest = Math.max(latest, this.#removals.get(key.slice(0, end)) ?? 0)
    return latest
  }

  get(key: string): Marker | undefined {
    const put = this.#puts.get(key)
    const removedAt = this.#removedAt(key)
    if (put !== undefined && put.seq > removedAt) return put.marker
    if (removedAt > 0) return undefined
    return this.#db.get(key)
  }

  /** Writes the changes; call inside an LMDB write transaction, then `committed()`. */
  writePending(): void {
    for (const prefix of this.#removals.keys()) {
      const keys = [...this.#db.getKeys({ start: prefix, end: prefixEnd(prefix) })]
      for (const key of keys) this.#db.removeSync(key)
    }
    for (const [key, put] of this.#puts) if (put.seq > this.#removedAt(key)) this.#db.putSync(key, put.marker)
  }

  committed(): void {
    this.#puts = new Map()
    this.#removals = new Map()
  }
}
