// Kafka sink with @platformatic/kafka: a Kafka topic per stream (name from a
// template), record key = our key, the Java client's default partitioner for
// keyed records (murmur2, so a key lands in the same partition number as
// here when the partition counts match; topics are created with the stream's
// count) and our partition number for keyless ones, the forward headers,
// compression as configured.
//
// At-least-once (default): an idempotent producer with acks=all; a batch sent
// again after a tributary restart may be stored twice.
//
// Exactly-once (`exactlyOnce: true`): a transactional producer whose id is
// stable per origin node and sink, so a stale forwarder of the same origin is
// fenced by the cluster. Each batch is one transaction that also writes the
// forward position (the next offset of this origin's partition) to the
// compacted positions topic. On start the forwarder goes on from that
// position, so a crash at any point neither loses nor duplicates a record as
// seen by a read_committed consumer. Transactions run one at a time per sink.
//
// Over 400 lines: both modes share the client's connection, topic creation,
// request splitting and error mapping, and the exactly-once half (the
// transaction and the positions read back) only makes sense beside them;
// kafka-committed.ts already holds the positions reader.

import {
  Admin,
  Consumer,
  compatibilityPartitioner,
  findErrorBy,
  type MessageToProduce,
  type ProduceOptions,
  Producer,
  type SASLOptions,
} from '@platformatic/kafka'
import type { SinkConfig } from '../config/schema.ts'
import { isTributaryError, TributaryError } from '../errors.ts'
import { type BackoffPolicy, backoffDelay, sleep } from '../lib/backoff.ts'
import type { PartitionRef } from '../log/log-store.ts'
import type { Logger } from '../observability/logger.ts'
import { readCommitted } from './kafka-committed.ts'
import { fillTemplate, forwardHeaders, rejected, type Sink, type SinkBatch, unavailable } from './sink.ts'
import { secret, tlsOptions } from './tls-files.ts'

type KafkaSinkConfig = Extract<SinkConfig, { type: 'kafka' }>

/** Kafka errors after which the record can never be written as it is. */
const NEVER_ACCEPTED = ['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'CORRUPT_MESSAGE']
/** Another producer took over the transactional id. */
const FENCED = ['PRODUCER_FENCED', 'INVALID_PRODUCER_EPOCH', 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED']

export interface KafkaSinkContext {
  readonly origin: string
  readonly log: Logger
  /** The partition count of a stream, for topics this sink creates. */
  readonly partitionsOf: (stream: string) => number
}

/**
 * The client's own quick retries (see #connection): at most 50, 100, 200 ms
 * before its first, second and third retry, full jitter like every retry.
 */
const CLIENT_RETRY: BackoffPolicy = { initialMs: 50, maxMs: 1000 }

/** The client's retryDelay hook: `attempt` counts from 1 for the first retry. */
export function clientRetryDelay(attempt: number, random: () => number = Math.random): number {
  return backoffDelay(CLIENT_RETRY, attempt - 1, random)
}

/** Kafka's record batch header, and the most a record adds besides its key, value and headers (varints, attributes). */
const RECORD_BATCH_OVERHEAD_BYTES = 61
const RECORD_OVERHEAD_BYTES = 24

function estimatedBytes(message: MessageToProduce<Buffer, Buffer, Buffer, Buffer>): number {
  let bytes = RECORD_OVERHEAD_BYTES + (message.key?.length ?? 0) + (message.value?.length ?? 0)
  const headers = message.headers instanceof Map ? message.headers : new Map<Buffer, Buffer>()
  for (const [name, value] of headers) bytes += name.length + value.length + 2
  return bytes
}

interface TopicSpec {
  readonly name: string
  readonly partitions: number
  readonly compacted?: boolean
}

function positionKey(ref: PartitionRef): string {
  return `${ref.origin}/${ref.stream}/${ref.partition}`
}

function kafkaErrorId(err: unknown, ids: readonly string[]): string | null {
  if (!(err instanceof Error)) return null
  for (const id of ids) if (findErrorBy(err, 'apiId', id) !== null) return id
  return null
}

export class KafkaSink implements Sink {
  readonly name: string
  readonly #config: KafkaSinkConfig
  readonly #context: KafkaSinkContext
  readonly #clientId: string
  #producer: Producer | null = null
  /** Topics known to exist (created or found). */
  readonly #topics = new Set<string>()
  /** Positions read from the positions topic at the first call, then kept up to date by our commits. */
  #positions: Promise<Map<string, number>> | null = null
  /** Producers that have read the positions back since their InitProducerId. */
  readonly #synced = new WeakSet<Producer>()
  /** Exactly-once: one transaction at a time. */
  #transactions: Promise<unknown> = Promise.resolve()

  constructor(config: KafkaSinkConfig, context: KafkaSinkContext) {
    this.name = config.name
    this.#config = config
    this.#context = context
    this.#clientId = config.clientId ?? `tributary-${context.origin}`
  }

  #connection() {
    const c = this.#config
    const options: {
      clientId: string
      bootstrapBrokers: string[]
      timeout: number
      requestTimeout: number
      connectTimeout: number
      retries: number
      retryDelay: (client: object, operationId: string, attempt: number) => number
      tls?: ReturnType<typeof tlsOptions>
      sasl?: SASLOptions
    } = {
      clientId: this.#clientId,
      bootstrapBrokers: [...c.brokers],
      timeout: c.requestTimeoutMs,
      requestTimeout: c.requestTimeoutMs,
      connectTimeout: Math.min(c.requestTimeoutMs, 10_000),
      // A few quick retries inside the client (AddPartitionsToTxn answers
      // CONCURRENT_TRANSACTIONS while the previous commit's markers are written);
      // longer outages are the forwarder's backoff. Fewer than 2 makes an
      // idempotent producer retry forever (docs/kafka-client-notes.md), and the
      // client's 1 s default delay made every exactly-once batch wait a second.
      retries: 3,
      retryDelay: (_client, _operation, attempt) => clientRetryDelay(attempt),
    }
    const tls = tlsOptions(c.tls)
    if (tls !== undefined) options.tls = tls
    if (c.sasl !== undefined) {
      const password = secret(c.sasl.password, c.sasl.passwordFile, `sink ${c.name} SASL password`)
      options.sasl = {
        mechanism: c.sasl.mechanism,
        username: c.sasl.username,
        ...(password === undefined ? {} : { password }),
      }
    }
    return options
  }

  #producerFor(): Producer {
    if (this.#producer !== null) return this.#producer
    const produce: ProduceOptions<Buffer, Buffer, Buffer, Buffer> = {
      acks: -1,
      idempotent: true,
      ...(this.#config.compression === 'none' ? {} : { compression: this.#config.compression }),
    }
    this.#producer = new Producer({
      ...this.#connection(),
      ...produce,
      // @platformatic/kafka 2.12.1 sends InitProducerId with producer id 0 and
      // epoch 0 unless told otherwise, which Kafka takes for an epoch bump of
      // producer 0: any transactional id that once got another producer id is
      // then answered PRODUCER_FENCED forever (seen after a broker restart).
      // -1/-1 is the protocol's "no producer yet".
      producerId: -1n,
      producerEpoch: -1,
      ...(this.#config.exactlyOnce
        ? { transactionalId: `tributary-${this.#context.origin}-${this.name}` }
        : {}),
    })
    return this.#producer
  }

  async #ensureTopics(
    topics: ReadonlyArray<{ name: string; partitions: number; compacted?: boolean }>,
  ): Promise<void> {
    const missing = topics.filter((t) => !this.#topics.has(t.name))
    if (missing.length === 0) return
    if (!this.#config.createTopics) {
      for (const t of missing) this.#topics.add(t.name)
      return
    }
    const admin = new Admin(this.#connection())
    try {
      const existing = new Set(await admin.listTopics())
      for (const t of missing) {
        if (!existing.has(t.name)) {
          await admin.createTopics({
            topics: [t.name],
            partitions: t.partitions,
            replicas: this.#config.replicationFactor,
            ...(t.compacted === true ? { configs: [{ name: 'cleanup.policy', value: 'compact' }] } : {}),
          })
          this.#context.log.info({ topic: t.name, partitions: t.partitions }, 'created Kafka topic')
        }
        this.#topics.add(t.name)
      }
    } catch (err) {
      if (kafkaErrorId(err, ['TOPIC_ALREADY_EXISTS']) === null)
        throw unavailable(`creating Kafka topics: ${describe(err)}`, err)
      for (const t of missing) this.#topics.add(t.name)
    } finally {
      await admin.close()
    }
  }

  /**
   * Splits a batch into produce requests of at most maxRequestBytes (estimated
   * before compression), so that no record batch Kafka sees passes its
   * max.message.bytes; a single larger record goes alone (and is refused).
   */
  *#chunks(
    messages: MessageToProduce<Buffer, Buffer, Buffer, Buffer>[],
  ): Generator<MessageToProduce<Buffer, Buffer, Buffer, Buffer>[]> {
    let chunk: MessageToProduce<Buffer, Buffer, Buffer, Buffer>[] = []
    let bytes = RECORD_BATCH_OVERHEAD_BYTES
    for (const message of messages) {
      const size = estimatedBytes(message)
      if (chunk.length > 0 && bytes + size > this.#config.maxRequestBytes) {
        yield chunk
        chunk = []
        bytes = RECORD_BATCH_OVERHEAD_BYTES
      }
      chunk.push(message)
      bytes += size
    }
    if (chunk.length > 0) yield chunk
  }

  #messages(batch: SinkBatch, topic: string): MessageToProduce<Buffer, Buffer, Buffer, Buffer>[] {
    return batch.records.map((record) => {
      // A Map keyed by distinct Buffer objects keeps repeated header names.
      const headers = new Map<Buffer, Buffer>()
      for (const [name, value] of forwardHeaders(batch, record))
        headers.set(Buffer.from(name), Buffer.from(value))
      return {
        topic,
        value: record.payload,
        headers,
        timestamp: BigInt(record.timestampMs),
        ...(record.key === null ? { partition: batch.partition } : { key: record.key }),
      }
    })
  }

  async send(batch: SinkBatch, signal: AbortSignal): Promise<void> {
    const topic = fillTemplate(this.#config.topic, batch)
    const topics: TopicSpec[] = [{ name: topic, partitions: this.#context.partitionsOf(batch.stream) }]
    if (this.#config.exactlyOnce)
      topics.push({ name: this.#config.positionsTopic, partitions: 1, compacted: true })
    await this.#deadline(this.#ensureTopics(topics))
    signal.throwIfAborted()
    const messages = this.#messages(batch, topic)
    if (!this.#config.exactlyOnce) {
      const producer = this.#producerFor()
      await this.#attempt(producer, async () => {
        for (const chunk of this.#chunks(messages))
          await producer.send({ messages: chunk, partitioner: compatibilityPartitioner })
      })
      return
    }
    const run = this.#transactions.then(() => {
      signal.throwIfAborted()
      const producer = this.#producerFor()
      return this.#attempt(producer, () => this.#transaction(producer, batch, messages))
    })
    this.#transactions = run.catch(() => undefined)
    await run
  }

  /**
   * Runs one request of `producer` within requestTimeoutMs. The client keeps
   * retrying by itself when the cluster is unreachable (an idempotent
   * producer's init, a send on a connection whose broker went away) instead
   * of failing, so the deadline is ours. On a timeout, on fencing, and in
   * exactly-once mode on any failure, the producer is dropped: the next
   * attempt starts a new one, whose InitProducerId also aborts a transaction
   * left open. Only this producer is dropped, never a newer one.
   */
  async #attempt<T>(producer: Producer, work: () => Promise<T>): Promise<T> {
    const ms = this.#config.requestTimeoutMs
    const running = work()
    try {
      return await this.#deadline(running)
    } catch (err) {
      const mapped = this.#mapError(err)
      const unusable =
        this.#config.exactlyOnce ||
        isTributaryError(mapped, 'TRIB_SINK_FENCED') ||
        isTributaryError(err, 'TRIB_SINK_UNAVAILABLE')
      if (unusable && this.#producer === producer) {
        this.#producer = null
        await producer.close(true).catch(() => undefined)
      }
      // Exactly-once: an abandoned transaction must be over (committed or failed)
      // before the next producer starts, or the two could interleave.
      if (this.#config.exactlyOnce) await Promise.race([running.then(noop, noop), sleep(ms)])
      this.#context.log.debug({ err: mapped.message, timeoutMs: ms }, 'Kafka request failed')
      throw mapped
    }
  }

  /** Rejects with TRIB_SINK_UNAVAILABLE when `work` has not settled within requestTimeoutMs. */
  async #deadline<T>(work: Promise<T>): Promise<T> {
    const ms = this.#config.requestTimeoutMs
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(unavailable(`Kafka did not answer within ${ms} ms (requestTimeoutMs)`)),
        ms,
      )
    })
    try {
      return await Promise.race([work, late])
    } finally {
      work.catch(() => undefined)
      clearTimeout(timer)
    }
  }

  async #transaction(
    producer: Producer,
    batch: SinkBatch,
    messages: MessageToProduce<Buffer, Buffer, Buffer, Buffer>[],
  ): Promise<void> {
    const key = positionKey(batch)
    // beginTransaction runs InitProducerId on a new producer, which completes or
    // aborts whatever transaction of ours was still open (a crash, a timeout
    // whose commit may have gone through). Only after that is the committed
    // position the truth: read it again then, and skip what is already in.
    const transaction = await producer.beginTransaction()
    if (!this.#synced.has(producer)) {
      const fresh = await this.#readPositions()
      this.#positions = Promise.resolve(fresh)
      this.#synced.add(producer)
    }
    const committed = (await this.#positions)?.get(key) ?? 0
    const unsent = messages.filter((_, i) => (batch.records[i]?.offset ?? 0) >= committed)
    const next = Math.max(committed, (batch.records.at(-1)?.offset ?? -1) + 1)
    const position: MessageToProduce<Buffer, Buffer, Buffer, Buffer> = {
      topic: this.#config.positionsTopic,
      key: Buffer.from(key),
      value: Buffer.from(JSON.stringify({ next })),
      partition: 0,
    }
    for (const chunk of this.#chunks([...unsent, position]))
      await transaction.send({ messages: chunk, partitioner: compatibilityPartitioner })
    await transaction.commit()
    const positions = await this.#positions
    positions?.set(key, next)
  }

  #mapError(err: unknown): TributaryError {
    if (err instanceof TributaryError) return err
    const never = kafkaErrorId(err, NEVER_ACCEPTED)
    if (never !== null) return rejected(`Kafka: ${never}: ${describe(err)}`, err)
    const fenced = kafkaErrorId(err, FENCED)
    if (fenced !== null)
      return new TributaryError('TRIB_SINK_FENCED', `${fenced}: ${describe(err)}`, { cause: err })
    return unavailable(`Kafka: ${describe(err)}`, err)
  }

  committedPosition(ref: PartitionRef): Promise<number | null> {
    if (!this.#config.exactlyOnce) return Promise.resolve(null)
    this.#positions ??= this.#deadline(this.#readPositions())
    const reading = this.#positions
    reading.catch(() => {
      if (this.#positions === reading) this.#positions = null
    })
    return reading.then((positions) => positions.get(positionKey(ref)) ?? null)
  }

  /** Every committed position in the positions topic (read_committed, from the start to its end). */
  async #readPositions(): Promise<Map<string, number>> {
    const topic = this.#config.positionsTopic
    await this.#ensureTopics([{ name: topic, partitions: 1, compacted: true }])
    const positions = new Map<string, number>()
    const consumer = new Consumer({
      ...this.#connection(),
      groupId: `tributary-positions-${this.#context.origin}-${this.name}`,
    })
    try {
      for (const record of await readCommitted(consumer, topic, 0)) {
        const value =
          record.value === null ? null : (JSON.parse(record.value.toString()) as { next?: unknown })
        if (record.key !== null && typeof value?.next === 'number')
          positions.set(record.key.toString(), value.next)
      }
      return positions
    } catch (err) {
      throw unavailable(`reading Kafka positions topic ${topic}: ${describe(err)}`, err)
    } finally {
      await consumer.close(true)
    }
  }

  /** The watchdog's restart: drops the producer (a new one connects on the next send). */
  async reset(): Promise<void> {
    const producer = this.#producer
    this.#producer = null
    await producer?.close(true).catch(() => undefined)
  }

  close(): Promise<void> {
    return this.reset()
  }
}

/**
 * The client nests the reason (an authentication failure, ECONNREFUSED) in
 * `errors` and `cause` chains under generic messages: keep every distinct one.
 */
function noop(): void {}

function describe(err: unknown): string {
  const seen: string[] = []
  const visit = (e: unknown, depth: number): void => {
    if (depth > 6) return
    if (!(e instanceof Error)) {
      if (e !== undefined && e !== null) seen.push(String(e))
      return
    }
    if (!seen.includes(e.message)) seen.push(e.message)
    if (e instanceof AggregateError) for (const inner of e.errors) visit(inner, depth + 1)
    visit(e.cause, depth + 1)
  }
  visit(err, 0)
  return seen.join(': ')
}
