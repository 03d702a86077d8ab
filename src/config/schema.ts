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

const STREAM_NAME = /^[A-Za-z0-9._-]{1,249}$/

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
    ack: z.enum(['durable', 'relaxed']).default('durable'),
    relaxedFlushMs: z.number().int().min(1).max(60_000).default(DEFAULT_RELAXED_FLUSH_MS),
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
      })
      .strict()
      .default({
        maxPayloadBytes: DEFAULT_MAX_PAYLOAD_BYTES,
        maxPendingAppends: DEFAULT_MAX_PENDING_APPENDS,
        maxQueuedPerSession: DEFAULT_MAX_QUEUED_PER_SESSION,
        dedupeIdsPerClient: DEFAULT_DEDUPE_IDS_PER_CLIENT,
        dedupeClients: DEFAULT_DEDUPE_CLIENTS,
      }),
    unmatched: z
      .enum(['store', 'live-only'])
      .default('store')
      .describe('a publish no stream matches: store it in the "default" stream, or deliver it live only'),
    retentionCheckMs: z.number().int().min(100).default(DEFAULT_RETENTION_CHECK_MS),
    streams: z.array(streamSchema).default([]),
  })
  .strict()

export type Config = z.output<typeof configSchema>
export type StreamConfig = Config['streams'][number]
export type KeyRule = StreamConfig['key']
