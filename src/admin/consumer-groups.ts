// Consumer groups for local applications (the Kafka idea over HTTP): per
// (group, stream, origin, partition) the next offset the group will read, in
// the `consumer-groups` database of the node's LMDB environment. A commit is
// flushed to disk before it is confirmed.
//
// Every committed offset is a retention floor (holder `group:<name>`), so
// retention keeps what a group has not read yet; a full disk (onFull:
// dropOldest) still wins. A group that commits nothing for `expireAfterMs`
// is deleted with its floors (Kafka's offsets.retention), so an abandoned
// reader cannot hold the disk forever.
//
// This module writes only its own database and the floors, never records.

import type { Database } from 'lmdb'
import { TributaryError } from '../errors.ts'
import type { LogStore, PartitionRef } from '../log/log-store.ts'
import type { NodeEnvironment } from '../log/node-environment.ts'
export const GROUP_NAME = /^[A-Za-z0-9._-]{1,249}$/

/**
 * lmdb-js array key (ordered-binary): [group, stream, partition] for this
 * node's partitions (the format since offsets were first stored), and
 * [group, stream, partition, origin] for a replica of another node's.
 */
type Key = [string, string, number] | [string, string, number, string]

interface Stored {
  readonly offset: number
  readonly committedAtMs: number
}

export interface GroupOffset extends PartitionRef {
  readonly group: string
  readonly offset: number
  readonly committedAtMs: number
}

export type GroupLog = Pick<
  LogStore,
  'origin' | 'partitions' | 'partition' | 'setRetentionFloor' | 'removeRetentionFloor'
>

function holder(group: string): string {
  return `group:${group}`
}

export function checkGroupName(group: string): void {
  if (!GROUP_NAME.test(group))
    throw new TributaryError(
      'TRIB_HTTP_BAD_REQUEST',
      `group "${group}": letters, digits, ".", "_" or "-", 1 to 249 characters`,
    )
}

export class ConsumerGroups {
  readonly #env: NodeEnvironment
  readonly #db: Database<Stored, Key>
  readonly #log: GroupLog
  readonly #expireAfterMs: number | null

  constructor(env: NodeEnvironment, log: GroupLog, expireAfterMs: number | null) {
    this.#env = env
    this.#db = env.database('consumer-groups')
    this.#log = log
    this.#expireAfterMs = expireAfterMs
  }

  #key(group: string, ref: PartitionRef): Key {
    return ref.origin === this.#log.origin
      ? [group, ref.stream, ref.partition]
      : [group, ref.stream, ref.partition, ref.origin]
  }

  /** Registers every stored offset as a retention floor (at start, before retention first runs). */
  load(): void {
    for (const o of this.all()) this.#log.setRetentionFloor(holder(o.group), o, o.offset)
  }

  all(): GroupOffset[] {
    return [...this.#db.getRange({})].map(({ key: [group, stream, partition, origin], value }) => ({
      group,
      stream,
      origin: origin ?? this.#log.origin,
      partition,
      offset: value.offset,
      committedAtMs: value.committedAtMs,
    }))
  }

  offsets(group: string): GroupOffset[] {
    return this.all().filter((o) => o.group === group)
  }

  offset(group: string, ref: PartitionRef): number | null {
    return this.#db.get(this.#key(group, ref))?.offset ?? null
  }

  /** Stores the offsets (one transaction, flushed) and moves the group's retention floors. */
  async commit(
    group: string,
    entries: ReadonlyArray<PartitionRef & { readonly offset: number }>,
    nowMs = Date.now(),
  ): Promise<GroupOffset[]> {
    checkGroupName(group)
    for (const e of entries) {
      const p = this.#log.partition(e)
      if (p === undefined) {
        const known = this.#log.partitions().some((q) => q.stream === e.stream && q.origin === e.origin)
        throw new TributaryError(
          known ? 'TRIB_PARTITION_UNKNOWN' : 'TRIB_STREAM_UNKNOWN',
          known ? `${e.stream} has no partition ${e.partition}` : e.stream,
        )
      }
      if (!Number.isInteger(e.offset) || e.offset < 0 || e.offset > p.nextOffset)
        throw new TributaryError(
          'TRIB_OFFSET_OUT_OF_RANGE',
          `${e.stream}/${e.partition}: ${e.offset} is not in 0..${p.nextOffset}`,
        )
    }
    await this.#db.transaction(() => {
      for (const e of entries)
        this.#db.putSync(this.#key(group, e), { offset: e.offset, committedAtMs: nowMs })
    })
    await this.#env.flushed
    for (const e of entries) this.#log.setRetentionFloor(holder(group), e, e.offset)
    return entries.map((e) => ({
      group,
      stream: e.stream,
      origin: e.origin,
      partition: e.partition,
      offset: e.offset,
      committedAtMs: nowMs,
    }))
  }

  /** Deletes the group's offsets (all, one stream's, or one partition's) and their floors; returns how many. */
  async remove(
    group: string,
    only: { stream?: string; origin?: string; partition?: number } = {},
  ): Promise<number> {
    const doomed = this.offsets(group).filter(
      (o) =>
        (only.stream === undefined || o.stream === only.stream) &&
        (only.origin === undefined || o.origin === only.origin) &&
        (only.partition === undefined || o.partition === only.partition),
    )
    if (doomed.length === 0) return 0
    await this.#db.transaction(() => {
      for (const o of doomed) this.#db.removeSync(this.#key(o.group, o))
    })
    await this.#env.flushed
    for (const o of doomed) this.#log.removeRetentionFloor(holder(o.group), o)
    return doomed.length
  }

  /** Deletes groups whose newest commit is older than expireAfterMs; returns their names. */
  async expire(nowMs = Date.now()): Promise<string[]> {
    if (this.#expireAfterMs === null) return []
    const newest = new Map<string, number>()
    for (const o of this.all()) newest.set(o.group, Math.max(newest.get(o.group) ?? 0, o.committedAtMs))
    const expired = [...newest].filter(([, at]) => at < nowMs - (this.#expireAfterMs ?? 0)).map(([g]) => g)
    for (const group of expired) await this.remove(group)
    return expired
  }
}
