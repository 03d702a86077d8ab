// The quarantine: damaged batches found at open (in the frames replayed past
// the index, or among the last batches of each partition) are moved out of
// the log into the `log-quarantine` database, kept there for inspection with
// the error and when, and their index entries dropped, so reads never meet
// them again. Reports go to the store's onCorrupt; gap records are the
// opener's (open-store.ts).

import type { Database } from 'lmdb'
import { type BatchIndex, type IndexEntry, indexKey } from './batch-index.ts'
import type { LogState } from './log-state.ts'
import type { NodeEnvironment } from './node-environment.ts'
import type { PartitionReads } from './partition-reads.ts'
import type { Quarantined } from './store-recovery.ts'

export type Damaged = Quarantined & { readonly entry?: IndexEntry }

export class Quarantine {
  readonly #db: Database<{ batch: Buffer; error: string; atMs: number }, Buffer>
  readonly #state: LogState
  readonly #index: BatchIndex

  constructor(env: NodeEnvironment, state: LogState, index: BatchIndex) {
    this.#db = env.database('log-quarantine')
    this.#state = state
    this.#index = index
  }

  /** Checks the last `limit` batches of every partition (CRC32C, structure, offsets). */
  checkTails(
    reads: PartitionReads,
    limit: number,
  ): { checked: number; damaged: Array<Damaged & { entry: IndexEntry }> } {
    const damaged: Array<Damaged & { entry: IndexEntry }> = []
    let checked = 0
    for (const meta of this.#state.all()) {
      for (const entry of this.#index.tail(meta.id, limit)) {
        checked++
        const { bytes, damage } = reads.check(meta, entry)
        if (damage !== null) damaged.push({ meta, entry, damage, batch: bytes ?? Buffer.alloc(0) })
      }
    }
    return { checked, damaged }
  }

  /** The LMDB work that moves damaged batches out of the log (run inside an index commit). */
  task(items: readonly Damaged[]): () => void {
    return () => {
      for (const { meta, damage, batch, entry } of items) {
        this.#db.putSync(indexKey(meta.id, damage.baseOffset), {
          batch,
          error: damage.error,
          atMs: Date.now(),
        })
        if (entry === undefined) continue
        this.#state.dropEntry(meta, entry)
        if (damage.baseOffset === meta.firstOffset)
          meta.firstOffset = this.#index.nextAfter(meta.id, damage.baseOffset) ?? meta.nextOffset
      }
    }
  }

  /** How many batches it holds. */
  count(): number {
    let count = 0
    for (const _ of this.#db.getKeys()) count++
    return count
  }
}
