// The configuration schema: one zod schema gives both validation and the
// TypeScript type. Defaults live here and only here; units are in the names.
// Every field is documented in docs/configuration.md.

import { z } from 'zod'

export const DEFAULT_MQTT_PORT = 1883
export const DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
export const DEFAULT_MAX_PENDING_APPENDS = 20_000
export const DEFAULT_RELAXED_FLUSH_MS = 1000
export const DEFAULT_MAX_QUEUED_PER_SESSION = 10_000
export const DEFAULT_DEDUPE_IDS_PER_CLIENT = 64
export const DEFAULT_DEDUPE_CLIENTS = 10_000
export const DEFAULT_RETENTION_CHECK_MS = 60_000
export const DEFAULT_STREAM_NAME = 'default'
export const DEFAULT_DISK_HIGH_WATER_PERCENT = 95
export const DEFAULT_DISK_CHECK_MS = 5000
export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
export const DEFAULT_HTTP_HOST = '127.0.0.1'
export const DEFAULT_HTTP_PORT = 8080
export const DEFAULT_HTTP_MAX_TAIL_CLIENTS = 32
/** Kafka's offsets.retention.minutes default: a group silent this long stops holding retention back. */
export const DEFAULT_GROUP_EXPIRE_AFTER_MS = 7 * 24 * 3600 * 1000
/** A stream's dead-letter stream, unless it names one: `<stream>.dead-letter`. */
export const DEAD_LETTER_SUFFIX = '.dead-letter'

const STREAM_NAME = /^[A-Za-z0-9._-]{1,249}$/
const SINK_NAME = /^[A-Za-z0-9._-]{1,64}$/
const HOST_PORT = /^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:.]+\]:\d{1,5}$/
export const DEFAULT_REPLICATION_PORT = 7625
export const DEFAULT_HEARTBEAT_MS = 500
export const DEFAULT_FOLLOWER_TIMEOUT_MS = 5000
export const DEFAULT_FOLLOWER_EXPIRE_MS = 24 * 3600 * 1000
/** A stream's `replicas` when a cluster is configured (the origin and one follower); alone it is 1. */
export const DEFAULT_CLUSTER_REPLICAS = 2
/** A stream's `minInsync` unless it holds fewer `replicas`. */
export const DEFAULT_MIN_INSYNC = 2
const CLUSTER_NAME = /^[A-Za-z0-9._-]{1,63}$/
export const DEFAULT_SINK_MAX_BATCH_BYTES = 1024 * 1024
export const DEFAULT_SINK_MAX_BATCH_RECORDS = 1000
export const DEFAULT_SINK_LINGER_MS = 100

/** An MQTT topic filter: `+` only as a whole level, `#` only as the whole last level [MQTT-4.7.1]. */
function isValidTopicFilter(filter: string): boolean {
  if (filter.length === 0 || filter.includes('\u0000')) return false
  const levels = filter.split('/')
  return levels.every((level, i) => {
    if (level.includes('#')) return level === '#' && i === levels.length - 1
    if (level.includes('+')) return level === '+'
    return true
  })
}

const keyRule = z.discriminatedUnion('from', [
  z.object({ from: z.literal('client-id') }).strict(),
  z.object({ from: z.literal('none') }).strict(),
  z
    .object({
      from: z.literal('topic-level'),
      level: z.number().int().min(0).max(99).describe('0-based topic level whose text is the key'),
    })
    .strict(),
])

const retention = z
  .object({
    maxAgeMs: z
      .number()
      .int()
      .positive()
      .nullable()
      .default(7 * 24 * 3600 * 1000),
    maxBytes: z
      .number()
      .int()
      .positive()
      .nullable()
      .default(1024 * 1024 * 1024),
  })
  .strict()

export const streamSchema = z
  .object({
    name: z.string().regex(STREAM_NAME, 'letters, digits, ".", "_" or "-", 1 to 249 characters'),
    match: z.array(z.string().refine(isValidTopicFilter, 'a valid MQTT topic filter')).default([]),
    partitions: z.number().int().min(1).max(1024).default(1),
    key: keyRule.default({ from: 'client-id' }),
    retention: retention.default({ maxAgeMs: 7 * 24 * 3600 * 1000, maxBytes: 1024 * 1024 * 1024 }),
    ack: z
      .enum(['durable', 'relaxed', 'replicated'])
      .default('durable')
      .describe(
        'replicated: acknowledged once fdatasync-ed here and on minInsync - 1 other nodes (needs cluster:)',
      ),
    replicas: z
      .number()
      .int()
      .min(1)
      .max(16)
      .default(1)
      .describe(
        'nodes that hold each partition, its origin included (default 2 with cluster:, 1 alone); the origin picks the followers',
      ),
    minInsync: z
      .number()
      .int()
      .min(1)
      .max(16)
      .default(DEFAULT_MIN_INSYNC)
      .describe('ack: replicated: nodes, this one included, that hold a record fdatasync-ed before its ack'),
    onTooFewReplicas: z
      .enum(['wait', 'degrade'])
      .default('wait')
      .describe(
        'ack: replicated, when fewer copies come within replicatedTimeoutMs: refuse (TRIB_NOT_ENOUGH_REPLICAS) or ack as durable',
      ),
    replicatedTimeoutMs: z.number().int().min(10).max(600_000).default(5000),
    relaxedFlushMs: z.number().int().min(1).max(60_000).default(DEFAULT_RELAXED_FLUSH_MS),
    priority: z
      .number()
      .int()
      .min(0)
      .max(9)
      .default(0)
      .describe('sinks send higher-priority streams first when they share a bandwidth cap'),
    onFull: z
      .enum(['reject', 'dropOldest'])
      .default('reject')
      .describe(
        'above limits.diskHighWaterPercent: refuse new publishes, or delete the oldest records and send a gap record',
      ),
    deadLetter: z
      .string()
      .regex(STREAM_NAME)
      .nullable()
      .default(null)
      .describe('stream that takes records a sink can never accept; null: <name>.dead-letter'),
  })
  .strict()

const tls = z
  .object({
    ca: z.string().min(1).optional().describe('PEM file of the CA(s) to trust'),
    cert: z.string().min(1).optional().describe('PEM file of the client certificate'),
    key: z.string().min(1).optional().describe('PEM file of the client key'),
    rejectUnauthorized: z.boolean().default(true),
  })
  .strict()

const sinkCommon = {
  name: z.string().regex(SINK_NAME, 'letters, digits, ".", "_" or "-", 1 to 64 characters'),
  streams: z
    .array(z.string().min(1))
    .default(['*'])
    .describe('streams to forward; "*" is every stream but dead-letter streams'),
  maxBatchBytes: z
    .number()
    .int()
    .min(1024)
    .max(64 * 1024 * 1024)
    .default(DEFAULT_SINK_MAX_BATCH_BYTES),
  maxBatchRecords: z.number().int().min(1).max(100_000).default(DEFAULT_SINK_MAX_BATCH_RECORDS),
  lingerMs: z.number().int().min(0).max(60_000).default(DEFAULT_SINK_LINGER_MS),
  maxBytesPerS: z.number().int().min(1024).nullable().default(null).describe('bandwidth cap; null: none'),
  maxInFlight: z
    .number()
    .int()
    .min(1)
    .max(64)
    .default(4)
    .describe('batches sent at once over all partitions'),
  drainOrder: z
    .enum(['oldest-first', 'newest-first'])
    .default('oldest-first')
    .describe('after an outage: the backlog in order, or the newest records first and the backlog after'),
  retry: z
    .object({
      initialMs: z.number().int().min(1).default(500),
      maxMs: z.number().int().min(1).default(60_000),
    })
    .strict()
    .default({ initialMs: 500, maxMs: 60_000 }),
  stuckAfterMs: z
    .number()
    .int()
    .min(100)
    .default(60_000)
    .describe('a send unanswered this long: the connection is torn down and restarted'),
}

const kafkaSink = z
  .object({
    ...sinkCommon,
    type: z.literal('kafka'),
    brokers: z.array(z.string().regex(HOST_PORT, 'HOST:PORT')).min(1),
    topic: z.string().min(1).default('{stream}').describe('Kafka topic name template: {stream}, {origin}'),
    exactlyOnce: z.boolean().default(false),
    positionsTopic: z.string().min(1).default('tributary-positions'),
    compression: z.enum(['none', 'gzip', 'snappy', 'lz4', 'zstd']).default('none'),
    clientId: z.string().min(1).optional(),
    createTopics: z.boolean().default(true),
    replicationFactor: z.number().int().min(-1).default(-1).describe('-1: the cluster default'),
    tls: tls.optional(),
    sasl: z
      .object({
        mechanism: z.enum(['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512']),
        username: z.string().min(1),
        password: z.string().optional(),
        passwordFile: z.string().min(1).optional(),
      })
      .strict()
      .optional(),
    requestTimeoutMs: z.number().int().min(100).default(30_000),
    maxRequestBytes: z
      .number()
      .int()
      .min(1024)
      .default(900 * 1024)
      .describe("bytes per produce request (before compression); keep below the topics' max.message.bytes"),
  })
  .strict()

const mqttSink = z
  .object({
    ...sinkCommon,
    type: z.literal('mqtt'),
    url: z.string().regex(/^mqtts?:\/\//, 'an mqtt:// or mqtts:// URL'),
    topic: z
      .string()
      .min(1)
      .default('{topic}')
      .describe('topic template: {topic}, {stream}, {origin}, {partition}'),
    clientId: z.string().min(1).optional().describe('default tributary-<origin>-<sink name>'),
    username: z.string().optional(),
    password: z.string().optional(),
    passwordFile: z.string().min(1).optional(),
    tls: tls.optional(),
  })
  .strict()

const httpSink = z
  .object({
    ...sinkCommon,
    type: z.literal('http'),
    url: z.string().regex(/^https?:\/\//, 'an http:// or https:// URL'),
    format: z.enum(['ndjson', 'json']).default('ndjson'),
    headers: z.record(z.string(), z.string()).default({}),
    timeoutMs: z.number().int().min(100).default(30_000),
    tls: tls.optional(),
  })
  .strict()

export const sinkSchema = z.discriminatedUnion('type', [kafkaSink, mqttSink, httpSink])

/** At start, the longest wait for known followers to answer tail recovery (they normally do within a second). */
const DEFAULT_TAIL_RECOVERY_MS = 10_000

const cluster = z
  .object({
    name: z
      .string()
      .regex(CLUSTER_NAME, 'letters, digits, ".", "_" or "-", 1 to 63 characters')
      .describe('nodes replicate only with nodes of the same cluster name'),
    secretFile: z
      .string()
      .min(1)
      .optional()
      .describe(
        'the shared secret (tributary cluster init writes one); links are TLS with a key derived from it (or give tls)',
      ),
    tls: z
      .object({
        certFile: z.string().min(1).describe("PEM: this node's certificate (naming URI:tributary://<name>)"),
        keyFile: z.string().min(1).describe("PEM: this node's private key, mode 0600"),
        caFile: z.string().min(1).describe("PEM: the CA that signs every node's certificate"),
      })
      .strict()
      .optional()
      .describe('mutual TLS with certificates instead of secretFile'),
    peers: z
      .array(z.string().regex(HOST_PORT, 'HOST:PORT'))
      .default([])
      .describe('replication addresses of other nodes, where multicast (mDNS) is blocked'),
    mdns: z.boolean().default(true).describe('find the other nodes of the cluster on the LAN with mDNS'),
    replicationHost: z.string().min(1).default('0.0.0.0'),
    replicationPort: z.number().int().min(0).max(65535).default(DEFAULT_REPLICATION_PORT),
    heartbeatMs: z.number().int().min(50).max(60_000).default(DEFAULT_HEARTBEAT_MS),
    followerTimeoutMs: z
      .number()
      .int()
      .min(200)
      .default(DEFAULT_FOLLOWER_TIMEOUT_MS)
      .describe('a peer silent this long (no heartbeat) is dropped and dialed again'),
    followerExpireMs: z
      .number()
      .int()
      .min(1000)
      .default(DEFAULT_FOLLOWER_EXPIRE_MS)
      .describe('a follower gone this long no longer holds back retention of this node'),
    tailRecoveryMs: z
      .number()
      .int()
      .min(0)
      .max(600_000)
      .default(DEFAULT_TAIL_RECOVERY_MS)
      .describe(
        'at start, how long MQTT waits while the node fetches its own lost tail back from the followers it had',
      ),
  })
  .strict()

export const configSchema = z
  .object({
    dataDir: z.string().min(1),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    mqtt: z
      .object({
        host: z.string().min(1).default('0.0.0.0'),
        port: z.number().int().min(0).max(65535).default(DEFAULT_MQTT_PORT),
      })
      .strict()
      .default({ host: '0.0.0.0', port: DEFAULT_MQTT_PORT }),
    limits: z
      .object({
        maxPayloadBytes: z
          .number()
          .int()
          .min(1)
          .max(256 * 1024 * 1024)
          .default(DEFAULT_MAX_PAYLOAD_BYTES),
        maxPendingAppends: z.number().int().min(1).default(DEFAULT_MAX_PENDING_APPENDS),
        maxQueuedPerSession: z.number().int().min(1).default(DEFAULT_MAX_QUEUED_PER_SESSION),
        dedupeIdsPerClient: z.number().int().min(1).max(65535).default(DEFAULT_DEDUPE_IDS_PER_CLIENT),
        dedupeClients: z.number().int().min(1).default(DEFAULT_DEDUPE_CLIENTS),
        diskHighWaterPercent: z.number().min(1).max(100).default(DEFAULT_DISK_HIGH_WATER_PERCENT),
        diskCheckMs: z.number().int().min(100).default(DEFAULT_DISK_CHECK_MS),
        segmentBytes: z
          .number()
          .int()
          .min(64 * 1024)
          .max(1024 * 1024 * 1024)
          .default(DEFAULT_SEGMENT_BYTES)
          .describe('segment files roll at this size; retention and the disk guard free whole files'),
      })
      .strict()
      .default({
        maxPayloadBytes: DEFAULT_MAX_PAYLOAD_BYTES,
        maxPendingAppends: DEFAULT_MAX_PENDING_APPENDS,
        maxQueuedPerSession: DEFAULT_MAX_QUEUED_PER_SESSION,
        dedupeIdsPerClient: DEFAULT_DEDUPE_IDS_PER_CLIENT,
        dedupeClients: DEFAULT_DEDUPE_CLIENTS,
        diskHighWaterPercent: DEFAULT_DISK_HIGH_WATER_PERCENT,
        diskCheckMs: DEFAULT_DISK_CHECK_MS,
        segmentBytes: DEFAULT_SEGMENT_BYTES,
      }),
    http: z
      .object({
        host: z.string().min(1).default(DEFAULT_HTTP_HOST),
        port: z
          .number()
          .int()
          .min(0)
          .max(65535)
          .nullable()
          .default(DEFAULT_HTTP_PORT)
          .describe('admin and consumer API port; 0 picks a free one; null runs without it'),
        token: z
          .string()
          .min(16, 'at least 16 characters')
          .optional()
          .describe('bearer token for every route but /healthz; required off loopback'),
        tokenFile: z.string().min(1).optional().describe('file whose first line is the token'),
        maxTailClients: z
          .number()
          .int()
          .min(1)
          .max(1024)
          .default(DEFAULT_HTTP_MAX_TAIL_CLIENTS)
          .describe('live tails (Server-Sent Events) open at once; beyond it 503 TRIB_HTTP_BUSY'),
        groupExpireAfterMs: z
          .number()
          .int()
          .min(1000)
          .nullable()
          .default(DEFAULT_GROUP_EXPIRE_AFTER_MS)
          .describe('a consumer group that commits nothing this long is deleted; null keeps groups forever'),
      })
      .strict()
      .default({
        host: DEFAULT_HTTP_HOST,
        port: DEFAULT_HTTP_PORT,
        maxTailClients: DEFAULT_HTTP_MAX_TAIL_CLIENTS,
        groupExpireAfterMs: DEFAULT_GROUP_EXPIRE_AFTER_MS,
      }),
    metrics: z
      .object({
        storageEnduranceTBW: z
          .number()
          .positive()
          .nullable()
          .default(null)
          .describe('rated write endurance of the data disk in TB written (10^12 bytes); null: not known'),
      })
      .strict()
      .default({ storageEnduranceTBW: null }),
    unmatched: z
      .enum(['store', 'live-only'])
      .default('store')
      .describe('a publish no stream matches: store it in the "default" stream, or deliver it live only'),
    retentionCheckMs: z.number().int().min(100).default(DEFAULT_RETENTION_CHECK_MS),
    streams: z.array(streamSchema).default([]),
    sinks: z.array(sinkSchema).default([]),
    cluster: cluster.nullable().default(null).describe('null: this node runs alone'),
  })
  .strict()

export type Config = z.output<typeof configSchema>
export type StreamConfig = Config['streams'][number]
export type KeyRule = StreamConfig['key']
export type SinkConfig = Config['sinks'][number]
export type SinkType = SinkConfig['type']
export type TlsConfig = z.output<typeof tls>
export type ClusterConfig = NonNullable<Config['cluster']>
