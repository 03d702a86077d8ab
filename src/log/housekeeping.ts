// The log's timers while the node runs: retention every `retentionCheckMs`
// (idle consumer groups expire first, so their floors no longer hold data
// back) and the disk guard every `diskCheckMs` (onFull policies, gap
// records). A failed run is logged and tried again on the next tick; ingest
// is never affected. `setRetention` takes new per-stream policies (SIGHUP),
// applied by the next run.

import type { Config, StreamConfig } from '../config/schema.ts'
import type { Logger } from '../observability/logger.ts'
import type { Metrics } from '../observability/metrics.ts'
import type { DiskGuard } from './disk-guard.ts'
import type { LogStore, RetentionPolicy } from './log-store.ts'

export interface HousekeepingOptions {
  readonly store: LogStore
  readonly guard: DiskGuard
  /** streams (retention), retentionCheckMs, limits.diskCheckMs, http.groupExpireAfterMs. */
  readonly config: Readonly<Config>
  /** Deletes consumer groups idle too long; returns their names. */
  readonly expireGroups: () => Promise<string[]>
  readonly metrics: Pick<Metrics, 'retention' | 'gap'>
  readonly log: Logger
}

export class Housekeeping {
  readonly #o: HousekeepingOptions
  #policies: ReadonlyMap<string, RetentionPolicy>
  #retentionTimer: NodeJS.Timeout | null = null
  #diskTimer: NodeJS.Timeout | null = null

  constructor(options: HousekeepingOptions) {
    this.#o = options
    this.#policies = policiesOf(options.config.streams)
  }

  /** Starts both timers (unref'd: they never keep the process alive). Idempotent. */
  start(): void {
    const { log } = this.#o
    this.#retentionTimer ??= setInterval(() => {
      this.runRetention().catch((err: unknown) => log.error({ err }, 'retention run failed'))
    }, this.#o.config.retentionCheckMs).unref()
    this.#diskTimer ??= setInterval(() => {
      // The last verdict stands until the next check succeeds.
      this.#o.guard.check().then(
        (result) => {
          for (const gap of result.gaps) this.#o.metrics.gap(gap.stream, gap.count)
        },
        (err: unknown) => log.error({ err }, 'disk check failed'),
      )
    }, this.#o.config.limits.diskCheckMs).unref()
  }

  setRetention(streams: readonly StreamConfig[]): void {
    this.#policies = policiesOf(streams)
  }

  async runRetention(): Promise<void> {
    const { store, log } = this.#o
    const expired = await this.#o.expireGroups()
    if (expired.length > 0)
      log.info(
        { groups: expired, afterMs: this.#o.config.http.groupExpireAfterMs },
        'idle consumer groups deleted',
      )
    const policies = this.#policies
    // This node's partitions only: a replica's retention follows its origin, never this node's clock.
    const report = await store.applyRetention(
      (ref) => (ref.origin === store.origin ? policies.get(ref.stream) : undefined),
      Date.now(),
    )
    this.#o.metrics.retention(report)
    if (report.batchesDeleted > 0) log.info({ retention: report }, 'retention deleted old records')
    if (report.heldBack.length > 0)
      log.info({ heldBack: report.heldBack }, 'retention held back by consumers')
  }

  /** Stops both timers; a run in progress finishes on its own. Idempotent. */
  close(): void {
    if (this.#retentionTimer !== null) clearInterval(this.#retentionTimer)
    if (this.#diskTimer !== null) clearInterval(this.#diskTimer)
    this.#retentionTimer = null
    this.#diskTimer = null
  }
}

function policiesOf(streams: readonly StreamConfig[]): ReadonlyMap<string, RetentionPolicy> {
  return new Map(streams.map((s) => [s.name, s.retention]))
}
