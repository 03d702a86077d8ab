// Reads a Kafka partition as a READ_COMMITTED consumer sees it, with
// @platformatic/kafka's low-level fetch and the transaction markers. Its
// consumer stream cannot be used for this: when one fetch holds several
// aborted transactions of one producer, it lets all but the last through
// (pinned in test/upstream/kafka-peer.test.ts), and an aborted forward
// position taken for committed would skip records.
// The exactly-once Kafka sink reads its positions topic with this.

import { type Consumer, FetchIsolationLevels, type RecordsBatch } from '@platformatic/kafka'

/** Record batch attribute bits (Kafka's DefaultRecordBatch). */
const BATCH_COMPRESSION_MASK = 0x07
const BATCH_IS_TRANSACTIONAL = 0x10
const BATCH_IS_CONTROL = 0x20
/** Control record key: version int16, type int16; type 0 is ABORT, 1 is COMMIT. */
const CONTROL_TYPE_COMMIT = 1

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
 * Every transaction below the last stable offset has its COMMIT or ABORT
 * marker there, so the batches are fetched uncommitted and each producer's
 * transactional batches are held until its marker says which it was. The
 * client's own READ_COMMITTED fetch cannot be used: it drops committed
 * batches when one producer id (a transactional id across epochs) has an
 * aborted transaction listed before them (seen: a fetch at 0 answered from
 * offset 10, and the sink's positions read back empty, so records were sent
 * again).
 */
export async function readCommitted(
  consumer: Consumer,
  topic: string,
  partition: number,
  fromOffset = 0n,
): Promise<CommittedRecord[]> {
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
  // Transactional records per producer, until its marker; a transaction may span fetches.
  const open = new Map<bigint, CommittedRecord[]>()
  let next = fromOffset
  while (next < end) {
    const response = await consumer.fetch({
      node: leader,
      isolationLevel: FetchIsolationLevels.READ_UNCOMMITTED,
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
    const after = collectCommitted(batches, open, end, out)
    if (after <= next) throw new Error(`fetch ${topic}/${partition} at ${next} returned nothing below ${end}`)
    next = after
  }
  return out
}

function collectCommitted(
  batches: readonly RecordsBatch[],
  open: Map<bigint, CommittedRecord[]>,
  end: bigint,
  out: CommittedRecord[],
): bigint {
  let next = 0n
  for (const batch of batches) {
    if (batch.firstOffset >= end) break
    next = batch.firstOffset + BigInt(batch.lastOffsetDelta) + 1n
    if ((batch.attributes & BATCH_IS_CONTROL) !== 0) {
      const held = open.get(batch.producerId) ?? []
      open.delete(batch.producerId)
      if (batch.records[0]?.key?.readInt16BE(2) === CONTROL_TYPE_COMMIT) out.push(...held)
      continue
    }
    const records = batch.records.map((record) => ({
      offset: batch.firstOffset + BigInt(record.offsetDelta),
      key: record.key,
      value: record.value,
      headers: record.headers,
      codec: batch.attributes & BATCH_COMPRESSION_MASK,
    }))
    if ((batch.attributes & BATCH_IS_TRANSACTIONAL) === 0) {
      out.push(...records)
      continue
    }
    const held = open.get(batch.producerId) ?? []
    held.push(...records)
    open.set(batch.producerId, held)
  }
  return next
}
