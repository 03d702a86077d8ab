// `tributary tail STREAM`: print records of a stream, like tail(1): the last
// --limit records by default, or from the beginning, an offset or a time;
// --follow keeps printing new records as they are committed. This node's
// partitions by default; --origin NODE reads the replica of another node's.

import { once } from 'node:events'
import type { Command } from 'commander'
import { TributaryError } from '../errors.ts'
import { type PartitionRef, partitionRef } from '../log/log-store.ts'
import type { StoredRecord } from '../log/record.ts'
import { bytesForHumans, recordJson } from '../log/record-json.ts'
import type { SegmentLogStore } from '../log/segment-log-store.ts'
import { configFrom, openStoreReadOnly, withStoreOptions } from './shared.ts'

const DEFAULT_LIMIT = 10
const FOLLOW_POLL_MS = 200

interface TailOptions {
  config?: string
  dataDir?: string
  partition?: number
  origin?: string
  fromBeginning?: boolean
  fromOffset?: number
  fromTime?: string
  follow?: boolean
  json?: boolean
  limit?: number
}

interface Located {
  readonly origin: string
  readonly stream: string
  readonly partition: number
  readonly record: StoredRecord
}

function format(item: Located, json: boolean): string {
  const { record } = item
  if (json) return JSON.stringify(recordJson(item, record))
  const key = bytesForHumans(record.key)
  const payload = bytesForHumans(record.payload)
  const shownKey = key.value === null ? '-' : key.encoding === 'utf8' ? key.value : `base64:${key.value}`
  const shownPayload = payload.encoding === 'utf8' ? payload.value : `base64:${payload.value}`
  return `${item.stream}/${item.partition}@${record.offset} ${new Date(record.timestampMs).toISOString()} key=${shownKey} topic=${record.topic} qos=${record.qos} client=${record.clientId} ${shownPayload}`
}

function parseNonNegative(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got "${v}"`)
    return n
  }
}

function startOffset(store: SegmentLogStore, ref: PartitionRef, options: TailOptions, limit: number): number {
  const status = store.partition(ref)
  if (status === undefined)
    throw new TributaryError('TRIB_PARTITION_UNKNOWN', `${ref.stream}/${ref.partition}`)
  if (options.fromBeginning === true) return status.firstOffset
  if (options.fromOffset !== undefined) return options.fromOffset
  if (options.fromTime !== undefined) {
    const ms = Date.parse(options.fromTime)
    if (!Number.isFinite(ms))
      throw new Error(`--from-time must be an ISO 8601 time, got "${options.fromTime}"`)
    return store.offsetForTimestamp(ref, ms)
  }
  return Math.max(status.firstOffset, status.nextOffset - limit)
}

export function registerTail(program: Command): void {
  withStoreOptions(program.command('tail'))
    .description('print records of a stream (the last 10 by default)')
    .argument('<stream>', 'stream name')
    .option('-p, --partition <n>', 'only this partition', parseNonNegative('--partition'))
    .option('--origin <node-id>', "another node's partitions, as replicated here (default: this node's)")
    .option('--from-beginning', 'start at the first retained record')
    .option('--from-offset <n>', 'start at this offset', parseNonNegative('--from-offset'))
    .option('--from-time <iso>', 'start at the first record ingested at or after this time')
    .option('-f, --follow', 'keep printing new records until interrupted')
    .option('--json', 'one JSON object per record per line (payload as UTF-8 or base64)')
    .option(
      '-n, --limit <n>',
      'at most this many records (default 10 without a --from option)',
      parseNonNegative('--limit'),
    )
    .action(async (stream: string, options: TailOptions) => {
      const config = configFrom(options)
      const store = await openStoreReadOnly(config)
      const json = options.json === true
      const origin = options.origin ?? store.origin
      const ofStream = store.partitions().filter((p) => p.stream === stream && p.origin === origin)
      const partitions = ofStream
        .filter((p) => options.partition === undefined || p.partition === options.partition)
        .map((p) => p.partition)
      if (partitions.length === 0) {
        await store.close()
        throw new TributaryError(
          ofStream.length > 0 ? 'TRIB_PARTITION_UNKNOWN' : 'TRIB_STREAM_UNKNOWN',
          stream,
        )
      }
      const refOf = (partition: number): PartitionRef => partitionRef(origin, { stream, partition })
      const fromOption =
        options.fromBeginning === true || options.fromOffset !== undefined || options.fromTime !== undefined
      const limit =
        options.limit ?? (fromOption || options.follow === true ? Number.POSITIVE_INFINITY : DEFAULT_LIMIT)
      const cursors = new Map(
        partitions.map((p) => [p, startOffset(store, refOf(p), options, options.limit ?? DEFAULT_LIMIT)]),
      )
      let printed = 0
      // Waits for stdout to drain whenever its buffer is full: piping a partition of
      // millions of records must not hold them all in memory.
      const print = async (items: Located[]): Promise<void> => {
        for (const item of items) {
          if (printed >= limit) return
          printed++
          if (!process.stdout.write(`${format(item, json)}\n`)) await once(process.stdout, 'drain')
        }
      }
      const readChunk = (partition: number): Located[] => {
        const from = cursors.get(partition) ?? 0
        const result = store.read(refOf(partition), from, { maxRecords: 500 })
        for (const damage of result.corrupt) {
          process.stderr.write(`warning: TRIB_BATCH_CORRUPT ${JSON.stringify(damage)}\n`)
        }
        const first = store.partition(refOf(partition))?.firstOffset ?? 0
        let expected = Math.max(from, first)
        for (const { offset } of result.records) {
          const damaged = result.corrupt.some((c) => c.baseOffset === expected)
          if (offset > expected && !damaged) {
            process.stderr.write(
              `warning: ${stream}/${partition} offsets ${expected}-${offset - 1} are missing (quarantined as damaged; see tributary log verify)\n`,
            )
          }
          expected = offset + 1
        }
        cursors.set(partition, result.nextOffset)
        return result.records.map((record) => ({ origin, stream, partition, record }))
      }
      const drainOnce = async (): Promise<void> => {
        if (!fromOption && options.follow !== true) {
          // The last `limit` records across partitions, oldest first.
          const last = [...cursors.keys()].flatMap(readChunk)
          last.sort((a, b) => a.record.timestampMs - b.record.timestampMs || a.partition - b.partition)
          await print(last.slice(-limit))
          return
        }
        for (const partition of cursors.keys()) {
          for (
            let chunk = readChunk(partition);
            chunk.length > 0 && printed < limit;
            chunk = readChunk(partition)
          ) {
            await print(chunk)
          }
        }
      }
      await drainOnce()
      if (options.follow === true) {
        let stopped = false
        const stop = (): void => {
          stopped = true
        }
        process.once('SIGINT', stop)
        process.once('SIGTERM', stop)
        while (!stopped && printed < limit) {
          await new Promise((resolve) => setTimeout(resolve, FOLLOW_POLL_MS))
          store.refresh()
          await drainOnce()
        }
      }
      await store.close()
    })
}
