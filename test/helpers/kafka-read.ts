// Reading a Kafka partition back in the tests, two independent ways:
// - kcatRead: Debian's kcat (librdkafka), the consumer TESTING.md names as the
//   independent check of what was forwarded;
// - readCommitted: @platformatic/kafka's low-level Consumer.fetch at
//   isolation level READ_COMMITTED, with the aborted-transaction filtering
//   done here as the Java client does it. This is the recipe the sink uses to
//   read its committed forward position back from the compacted positions
//   topic (docs/kafka-client-notes.md).

import { Consumer, FetchIsolationLevels, type RecordsBatch } from '@platformatic/kafka'
import { runBounded } from './run-bounded.ts'

/** Record batch attribute bits (Kafka's DefaultRecordBatch). */
export const BATCH_COMPRESSION_MASK = 0x07
const BATCH_IS_TRANSACTIONAL = 0x10
const BATCH_IS_CONTROL = 0x20
/** Control record key: version int16, type int16; type 0 is ABORT, 1 is COMMIT. */
const CONTROL_TYPE_ABORT = 0

export interface KcatRecord {
  readonly topic: string
  readonly partition: number
  readonly offset: number
  readonly key: string | null
  readonly payload: string | null
  /** [name, value] pairs in record order; kcat prints them as UTF-8 text. */
  readonly headers: ReadonlyArray<readonly [string, string]>
}

interface KcatJson {
  topic: string
  partition: number
  offset: number
  key: string | null
  payload: string | null
  headers?: string[]
}

export type IsolationLevel = 'read_committed' | 'read_uncommitted'

/** Every record of a topic (or one partition) from the beginning to the end, as kcat sees it. */
export async function kcatRead(
  bootstrap: string,
  topic: string,
  options: { isolation?: IsolationLevel; partition?: number } = {},
): Promise<KcatRecord[]> {
  const args = [
    '-C',
    '-b',
    bootstrap,
    '-t',
    topic,
    ...(options.partition === undefined ? [] : ['-p', String(options.partition)]),
    '-o',
    'beginning',
    '-e',
    '-J',
    '-q',
    '-X',
    `isolation.level=${options.isolation ?? 'read_committed'}`,
  ]
  const run = await runBounded('kcat', args, { timeoutMs: 30_000 })
  if (run.code !== 0) throw new Error(`kcat ${args.join(' ')} exited ${run.code}: ${run.stderr}`)
  return run.stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const r = JSON.parse(line) as KcatJson
      const flat = r.headers ?? []
      const headers: Array<[string, string]> = []
      for (let i = 0; i + 1 < flat.length; i += 2) headers.push([flat[i] ?? '', flat[i + 1] ?? ''])
      return {
        topic: r.topic,
        partition: r.partition,
        offset: r.offset,
        key: r.key,
        payload: r.payload,
        headers,
      }
    })
}

export interface CommittedRecord {
  readonly offset: bigint
  readonly key: Buffer | null
  readonly value: Buffer | null
  readonly headers: ReadonlyArray<readonly [Buffer | null, Buffer | null]>
  /** Compression codec of the batch the record came in (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd). */
  readonly codec: number
}

/**
 * Every record of one partition that a READ_COMMITTED consumer may see, from
 * `fromOffset` up to the last stable offset at the time of the call.
 *
 * The broker stops a READ_COMMITTED fetch at the last stable offset but still
 * returns the batches of aborted transactions, with a list of
 * (producerId, firstOffset) for them; the client must drop them. This walks
 * the batches in offset order like the Java consumer: a producer's batches
 * are aborted from its listed firstOffset until its ABORT control batch.
 */
export async function readCommitted(
  bootstrap: string,
  topic: string,
  partition: number,
  fromOffset = 0n,
): Promise<CommittedRecord[]> {
  const consumer = new Consumer({
    clientId: 'tributary-test-reader',
    groupId: `tributary-test-reader-${process.pid}`,
    bootstrapBrokers: [bootstrap],
  })
  try {
    const offsets = await consumer.listOffsets({
      topics: [topic],
      partitions: { [topic]: [partition] },
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
    })
    const end = offsets.get(topic)?.[partition]
    if (end === undefined) throw new Error(`no offset for ${topic}/${partition}`)
    const metadata = await consumer.metadata({ topics: [topic] })
    const topicMetadata = metadata.topics.get(topic)
    const leader = topicMetadata?.partitions[partition]?.leader
    if (topicMetadata === undefined || leader === undefined)
      throw new Error(`no leader for ${topic}/${partition}`)

    const out: CommittedRecord[] = []
    let next = fromOffset
    while (next < end) {
      const response = await consumer.fetch({
        node: leader,
        isolationLevel: FetchIsolationLevels.READ_COMMITTED,
        maxWaitTime: 100,
        topics: [
          {
            topicId: topicMetadata.id,
            partitions: [
              {
                partition,
                currentLeaderEpoch: -1,
                fetchOffset: next,
                lastFetchedEpoch: -1,
                partitionMaxBytes: 1_048_576,
              },
            ],
          },
        ],
      })
      const result = response.responses[0]?.partitions[0]
      if (result === undefined) throw new Error(`empty fetch response for ${topic}/${partition}`)
      if (result.errorCode !== 0)
        throw new Error(`fetch ${topic}/${partition} failed with error ${result.errorCode}`)
      const batches = result.records ?? []
      if (batches.length === 0) break
      next = collectCommitted(batches, result.abortedTransactions ?? [], end, out)
    }
    return out
  } finally {
    await consumer.close()
  }
}

function collectCommitted(
  batches: readonly RecordsBatch[],
  abortedList: ReadonlyArray<{ producerId: bigint; firstOffset: bigint }>,
  end: bigint,
  out: CommittedRecord[],
): bigint {
  const pending = [...abortedList].sort((a, b) => (a.firstOffset < b.firstOffset ? -1 : 1))
  const aborting = new Set<bigint>()
  let next = 0n
  for (const batch of batches) {
    if (batch.firstOffset >= end) break
    while (
      pending.length > 0 &&
      (pending[0]?.firstOffset ?? end) <= batch.firstOffset + BigInt(batch.lastOffsetDelta)
    ) {
      const first = pending.shift()
      if (first !== undefined) aborting.add(first.producerId)
    }
    next = batch.firstOffset + BigInt(batch.lastOffsetDelta) + 1n
    if ((batch.attributes & BATCH_IS_CONTROL) !== 0) {
      const type = batch.records[0]?.key?.readInt16BE(2)
      if (type === CONTROL_TYPE_ABORT) aborting.delete(batch.producerId)
      continue
    }
    if ((batch.attributes & BATCH_IS_TRANSACTIONAL) !== 0 && aborting.has(batch.producerId)) continue
    for (const record of batch.records) {
      const offset = batch.firstOffset + BigInt(record.offsetDelta)
      out.push({
        offset,
        key: record.key,
        value: record.value,
        headers: record.headers,
        codec: batch.attributes & BATCH_COMPRESSION_MASK,
      })
    }
  }
  return next
}

/** The latest committed value of each key: what a compacted topic keeps, read at READ_COMMITTED. */
export async function latestCommittedByKey(
  bootstrap: string,
  topic: string,
  partition: number,
): Promise<Map<string, Buffer | null>> {
  const latest = new Map<string, Buffer | null>()
  for (const record of await readCommitted(bootstrap, topic, partition)) {
    latest.set(record.key?.toString('utf8') ?? '', record.value)
  }
  return latest
}
