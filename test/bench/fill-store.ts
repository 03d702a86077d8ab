// A helper process for the restart and read benchmarks, working directly on
// a stopped node's data dir through the project's SegmentLogStore:
//
//   fill --data-dir D --records N --payload-bytes B --batch K --max-seconds S
//        [--stream NAME --partitions P]
//     appends N records to the stream (default: partition 0 of `default`), K
//     records per append (one append at a time, `relaxed`, so each group
//     commit holds one append: batches of K records, like the broker's group
//     commits under the 8 x 16 load), with the node's own origin so the broker
//     sees them as its own. With P > 1 the appends go round-robin over the
//     partitions, each record keyed by a client id that the router (and
//     Kafka's partitioner) maps to that very partition, so the store looks as
//     if MQTT clients had published them (the drain benchmark).
//   read --data-dir D --max-seconds S
//     reads partition 0 from its first offset with SegmentLogStore.read and
//     reports records/s.
//
// Prints progress and a final JSON line {"result": ...} on stdout. Bounded by
// --max-seconds: it stops early and reports how far it got.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { partitionForKey } from '../../src/ingest/partitioner.ts'
import type { AppendEntry } from '../../src/log/log-store.ts'
import { SegmentLogStore } from '../../src/log/segment-log-store.ts'

export const FILL_STREAM = 'default'
/** Publishing clients per partition (the restart fill: 8 clients, one partition). */
const CLIENTS = 8

export interface FillResult {
  readonly records: number
  readonly seconds: number
  readonly recordsPerS: number
  readonly batchRecords: number
  readonly stoppedEarly: boolean
}

export interface ReadResult {
  readonly records: number
  readonly bytes: number
  readonly seconds: number
  readonly recordsPerS: number
  readonly complete: boolean
}

function payloadOf(bytes: number): Buffer {
  const out = Buffer.alloc(bytes)
  for (let i = 0; i < bytes; i++) out[i] = 0x21 + ((i * 37) % 94)
  return out
}

function openStore(dataDir: string, readOnly: boolean): SegmentLogStore {
  const origin = readFileSync(join(dataDir, 'node-id'), 'utf8').trim()
  return new SegmentLogStore({ dataDir, origin, maxPendingAppends: 1000, readOnly })
}

/** `clients` client ids whose key the router (murmur2, as Kafka's partitioner) puts in `partition`. */
export function clientIdsFor(partition: number, partitions: number, clients: number): string[] {
  const ids: string[] = []
  for (let i = 0; ids.length < clients; i++) {
    const id = `bench-fill-${i}`
    if (partitions === 1 || partitionForKey(Buffer.from(id), partitions) === partition) ids.push(id)
  }
  return ids
}

async function fill(
  dataDir: string,
  stream: string,
  partitions: number,
  records: number,
  payloadBytes: number,
  batch: number,
  maxSeconds: number,
): Promise<FillResult> {
  const store = openStore(dataDir, false)
  await store.open()
  await store.ensureStream(stream, partitions)
  const payload = payloadOf(payloadBytes)
  // One append of `batch` records per client, clients taking turns over the partitions.
  const entries: AppendEntry[][] = []
  for (let c = 0; c < CLIENTS; c++) {
    for (let partition = 0; partition < partitions; partition++) {
      const clientId = clientIdsFor(partition, partitions, CLIENTS)[c] ?? `bench-fill-${c}`
      entries.push(
        Array.from({ length: batch }, () => ({
          stream,
          partition,
          record: {
            key: Buffer.from(clientId),
            topic: `bench/fill/${clientId.slice('bench-fill-'.length)}`,
            payload,
            headers: [],
            clientId,
            qos: 1 as const,
            deviceTimeMs: null,
          },
        })),
      )
    }
  }
  const started = performance.now()
  const deadline = started + maxSeconds * 1000
  let done = 0
  let lastReport = started
  for (let i = 0; done < records && performance.now() < deadline; i++) {
    const n = Math.min(batch, records - done)
    const group = entries[i % entries.length] ?? []
    await store.append({
      entries: n === batch ? group : group.slice(0, n),
      durability: 'relaxed',
      relaxedFlushMs: 60_000,
    })
    done += n
    if (performance.now() - lastReport > 5000) {
      lastReport = performance.now()
      const s = (lastReport - started) / 1000
      process.stdout.write(`${JSON.stringify({ progress: { records: done, seconds: s } })}\n`)
    }
  }
  await store.close()
  const seconds = (performance.now() - started) / 1000
  return {
    records: done,
    seconds,
    recordsPerS: done / seconds,
    batchRecords: batch,
    stoppedEarly: done < records,
  }
}

async function read(dataDir: string, maxSeconds: number): Promise<ReadResult> {
  const store = openStore(dataDir, true)
  await store.open()
  const status = store.partitions().find((p) => p.stream === FILL_STREAM && p.partition === 0)
  if (status === undefined) throw new Error('no partition default/0')
  const started = performance.now()
  const deadline = started + maxSeconds * 1000
  let offset = status.firstOffset
  let records = 0
  let bytes = 0
  while (offset < status.nextOffset && performance.now() < deadline) {
    const result = store.read({ stream: FILL_STREAM, origin: store.origin, partition: 0 }, offset, {
      maxRecords: 1000,
    })
    if (result.records.length === 0 && result.nextOffset <= offset) break
    records += result.records.length
    for (const r of result.records) bytes += r.payload.length
    offset = result.nextOffset
  }
  const seconds = (performance.now() - started) / 1000
  await store.close()
  return { records, bytes, seconds, recordsPerS: records / seconds, complete: offset >= status.nextOffset }
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    'data-dir': { type: 'string' },
    records: { type: 'string', default: '1000000' },
    'payload-bytes': { type: 'string', default: '128' },
    batch: { type: 'string', default: '128' },
    'max-seconds': { type: 'string', default: '600' },
    stream: { type: 'string', default: FILL_STREAM },
    partitions: { type: 'string', default: '1' },
  },
})
const dataDir = values['data-dir']
if (dataDir === undefined) throw new Error('--data-dir is required')
const maxSeconds = Number(values['max-seconds'])
const command = positionals[0]
const result =
  command === 'fill'
    ? await fill(
        dataDir,
        values.stream,
        Number(values.partitions),
        Number(values.records),
        Number(values['payload-bytes']),
        Number(values.batch),
        maxSeconds,
      )
    : command === 'read'
      ? await read(dataDir, maxSeconds)
      : null
if (result === null) throw new Error(`unknown command ${command}; use fill or read`)
process.stdout.write(`${JSON.stringify({ result })}\n`)
