// Reading a Kafka partition back in the tests, two independent ways:
// - kcatRead: Debian's kcat (librdkafka), the consumer TESTING.md names as the
//   independent check of what was forwarded;
// - readCommitted: @platformatic/kafka's low-level Consumer.fetch at
//   isolation level READ_COMMITTED, with the aborted-transaction filtering
//   done here as the Java client does it. This is the recipe the sink uses to
//   read its committed forward position back from the compacted positions
//   topic (docs/kafka-client-notes.md).

import { Consumer } from '@platformatic/kafka'
import {
  type CommittedRecord,
  readCommitted as readPartitionCommitted,
} from '../../src/upstream/kafka-committed.ts'

export type { CommittedRecord }

import { runBounded } from './run-bounded.ts'

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

/** readCommitted (src/upstream/kafka-committed.ts) with a consumer of its own. */
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
    return await readPartitionCommitted(consumer, topic, partition, fromOffset)
  } finally {
    await consumer.close()
  }
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
