// Reads a Kafka partition as a READ_COMMITTED consumer sees it, with
// @platformatic/kafka's low-level fetch. Its consumer stream cannot be used for
// this: when one fetch holds several aborted transactions of one producer, it
// lets all but the last through (pinned in test/upstream/kafka-peer.test.ts),
// and an aborted forward position taken for committed would skip records.
// The exactly-once Kafka sink reads its positions topic with this.

import { type Consumer, FetchIsolationLevels, type RecordsBatch } from '@platformatic/kafka'

/** Record batch attribute bits (Kafka's DefaultRecordBatch). */
const BATCH_COMPRESSION_MASK = 0x07
const BATCH_IS_TRANSACTIONAL = 0x10
const BATCH_IS_CONTROL = 0x20
/** Control record key: version int16, type int16; type 0 is ABORT, 1 is COMMIT. */
const CONTROL_TYPE_ABORT = 0

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
  consumer: Consumer,
  topic: string,
  partition: number,
  fromOffset = 0n,
): Promise<CommittedRecord[]> {
  {
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
    // A transaction's ABORT marker may come in a later fetch than its first batch.
    const aborting = new Set<bigint>()
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
      next = collectCommitted(batches, result.abortedTransactions ?? [], aborting, end, out)
    }
    return out
  }
}

function collectCommitted(
  batches: readonly RecordsBatch[],
  abortedList: ReadonlyArray<{ producerId: bigint; firstOffset: bigint }>,
  aborting: Set<bigint>,
  end: bigint,
  out: CommittedRecord[],
): bigint {
  const pending = [...abortedList].sort((a, b) => (a.firstOffset < b.firstOffset ? -1 : 1))
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
