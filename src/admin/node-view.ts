// What the admin API may see of a node: read-only status interfaces, plus
// the consumer groups (which write only their own offsets). The composition
// root (src/index.ts) builds one from the running parts; tests can fake it.

import type { LogStore } from '../log/log-store.ts'
import type { LogEvent } from '../observability/recent-log.ts'
import type { ForwarderStatus } from '../upstream/forwarder.ts'

export interface HealthChecks {
  /** The MQTT listener accepts connections (false while draining). */
  readonly mqtt: boolean
  readonly store: boolean
  /** The data disk is below limits.diskHighWaterPercent. */
  readonly disk: boolean
}

export interface DiskView {
  readonly usedPercent: number | null
  readonly full: boolean
  readonly highWaterPercent: number
}

export interface NodeView {
  readonly nodeId: string
  readonly startedAtMs: number
  /** The log, read side only. */
  readonly log: Pick<LogStore, 'partitions' | 'read' | 'offsetForTimestamp'>
  health(): HealthChecks
  sinks(): readonly ForwarderStatus[]
  connections(): number
  disk(): DiskView
  /** The last warn/error log events, newest first (empty when the node keeps none). */
  recentErrors(): readonly LogEvent[]
}
