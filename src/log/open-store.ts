// Opening the node's log store with its damage policy, so that a damaged
// file never keeps the service from starting:
// - the LMDB environment is first read in a throwaway process (env-probe.ts);
//   when that fails, it is moved aside as `log.mdb.damaged-<time>` for
//   inspection, reported as TRIB_STORE_DAMAGED, and a new store is started
//   under a new origin (`renewOrigin`), so no offset of the old origin is
//   ever given to another record;
// - each batch of this node quarantined at open leaves a gap record in its
//   partition, so sinks carry the news of the lost offsets upstream (written
//   by `appendQuarantineGaps` once the node began its incarnation, after
//   tail recovery: new records come only then);
// - a damaged batch of a copy (another origin's partition held here) is not
//   this node's to report: the copy is restarted at that batch, which moves
//   it and everything after it to the quarantine, and replication copies
//   them again from the origin.
// In: the data dir, the store's limits, this node's origin. Out: the open
// store, its recovery report and the origin it runs under.

import { existsSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import type { Config } from '../config/schema.ts'
import type { Logger } from '../observability/logger.ts'
import type { Metrics } from '../observability/metrics.ts'
import { probeEnvironment } from './env-probe.ts'
import { gapEntry } from './gap-record.ts'
import type { CorruptBatch, RecoveryReport } from './log-store.ts'
import { LMDB_FILE } from './node-environment.ts'
import { SegmentLogStore } from './segment-log-store.ts'

export interface OpenStoreOptions {
  readonly dataDir: string
  readonly limits: Pick<Config['limits'], 'maxPendingAppends' | 'segmentBytes'>
  /** This node's id as stored in the data dir. */
  readonly origin: string
  /** Writes and returns a new node id (after the store had to be started anew). */
  readonly renewOrigin: () => string
  readonly metrics: Metrics
  readonly log: Logger
}

export interface OpenedStore {
  readonly store: SegmentLogStore
  readonly recovery: RecoveryReport
  /** The origin the store runs under: `origin`, or a new one when the old store was damaged. */
  readonly origin: string
}

export async function openLogStore(options: OpenStoreOptions): Promise<OpenedStore> {
  const { dataDir, log } = options
  let origin = options.origin
  const probe = await probeEnvironment(dataDir)
  if (!probe.ok) {
    const envPath = join(dataDir, LMDB_FILE)
    const aside = `${envPath}.damaged-${Date.now()}`
    renameSync(envPath, aside)
    if (existsSync(`${envPath}-lock`)) renameSync(`${envPath}-lock`, `${aside}-lock`)
    origin = options.renewOrigin()
    log.fatal(
      {
        code: 'TRIB_STORE_DAMAGED',
        reason: probe.reason,
        movedTo: aside,
        previousNodeId: options.origin,
        nodeId: origin,
      },
      'log store damaged; moved aside and started anew',
    )
  }
  const store = new SegmentLogStore({
    dataDir,
    origin,
    maxPendingAppends: options.limits.maxPendingAppends,
    segmentBytes: options.limits.segmentBytes,
    metrics: options.metrics,
    onCorrupt: (damage, action) => {
      options.metrics.corrupt(action)
      log.error({ code: 'TRIB_BATCH_CORRUPT', damage, action }, `damaged batch ${action}`)
    },
  })
  const recovery = await store.open()
  await restartDamagedCopies(store, recovery.quarantined, log)
  return { store, recovery, origin }
}

/** A gap record for each batch of this node quarantined at open, so upstream learns which offsets are lost. */
export async function appendQuarantineGaps(
  store: SegmentLogStore,
  quarantined: readonly CorruptBatch[],
): Promise<void> {
  const atMs = Date.now()
  // A replica's damaged batch is its origin's to report: this node never appends to it.
  const entries = quarantined
    .filter((damage) => damage.origin === store.origin)
    .map((damage) => {
      // An unreadable header hides the count: the gap runs to the next record still there.
      const count = damage.recordCount ?? missingFrom(store, damage, damage.baseOffset)
      const gap = {
        stream: damage.stream,
        partition: damage.partition,
        from: damage.baseOffset,
        to: damage.baseOffset + count - 1,
        count,
        reason: `damaged batch quarantined at start: ${damage.error}`,
        atMs,
      }
      return gapEntry(gap, 'damaged')
    })
  if (entries.length > 0) await store.append({ entries, durability: 'durable' })
}

/** Each copy with a damaged batch goes back to its first damaged batch, to be copied again. */
async function restartDamagedCopies(
  store: SegmentLogStore,
  quarantined: readonly CorruptBatch[],
  log: Logger,
): Promise<void> {
  const firstDamage = new Map<string, CorruptBatch>()
  for (const damage of quarantined) {
    if (damage.origin === store.origin) continue
    const key = `${damage.stream}\u0000${damage.origin}\u0000${damage.partition}`
    const known = firstDamage.get(key)
    if (known === undefined || damage.baseOffset < known.baseOffset) firstDamage.set(key, damage)
  }
  for (const damage of firstDamage.values()) {
    const moved = await store.restartReplica(damage, damage.baseOffset, `damaged copy: ${damage.error}`)
    log.warn(
      { code: 'TRIB_BATCH_CORRUPT', damage, batchesMoved: moved },
      'damaged copy of another node: it is copied again from its origin',
    )
  }
}

/** How many offsets from `offset` on have no readable record before the next one (or the end). */
function missingFrom(store: SegmentLogStore, ref: CorruptBatch, offset: number): number {
  const next = store.read(ref, offset, { maxRecords: 1 })
  const found = next.records[0]?.offset ?? next.nextOffset
  return Math.max(1, found - offset)
}
