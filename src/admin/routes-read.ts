// The consumer API's read routes: streams and partitions, records from an
// offset, a time or a consumer group's committed offset, and the live tail
// (tail.ts); the group offsets are in routes-groups.ts. Everything here reads
// the log. Every route names a partition of this node by default;
// `origin=<node id>` names the replica of another node's.

import type { FastifyInstance } from 'fastify'
import { TributaryError } from '../errors.ts'
import type { PartitionStatus } from '../log/log-store.ts'
import { recordJson } from '../log/record-json.ts'
import { type ConsumerGroups, checkGroupName } from './consumer-groups.ts'
import { ApiError } from './http-errors.ts'
import type { NodeView } from './node-view.ts'
import { originParam, parseTime, partitionLookup, streamParam } from './route-params.ts'
import { registerGroupRoutes } from './routes-groups.ts'
import { streamsOf } from './status.ts'
import { lastEventCursors, type Tails } from './tail.ts'

export const DEFAULT_MAX_RECORDS = 500
export const MAX_MAX_RECORDS = 10_000
export const DEFAULT_MAX_BYTES = 1024 * 1024
export const MAX_MAX_BYTES = 16 * 1024 * 1024

interface Parts {
  readonly view: NodeView
  readonly groups: ConsumerGroups
  readonly tails: Tails
}

const encodingParam = { type: 'string', enum: ['utf8', 'base64'], default: 'utf8' } as const

function parseOffset(name: string, text: string): number | 'earliest' | 'latest' {
  if (text === 'earliest' || text === 'latest') return text
  const n = Number(text)
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n))
    throw new TributaryError(
      'TRIB_HTTP_BAD_REQUEST',
      `${name} must be a non-negative integer, "earliest" or "latest"`,
    )
  return n
}

export function registerReadRoutes(app: FastifyInstance, parts: Parts): void {
  const { view, groups, tails } = parts

  const { partitionsOf, partitionOf } = partitionLookup(view)
  const startOffset = (
    p: PartitionStatus,
    q: { offset?: string; timestamp?: string; group?: string },
    fallback: 'earliest' | 'latest',
  ): number => {
    const given = [q.offset, q.timestamp, q.group].filter((v) => v !== undefined).length
    if (given > 1)
      throw new TributaryError('TRIB_HTTP_BAD_REQUEST', 'give at most one of offset, timestamp and group')
    if (q.timestamp !== undefined) return view.log.offsetForTimestamp(p, parseTime('timestamp', q.timestamp))
    if (q.group !== undefined) {
      checkGroupName(q.group)
      // Like Kafka's auto.offset.reset=earliest: no commit yet, or the commit fell out of retention.
      return Math.max(groups.offset(q.group, p) ?? p.firstOffset, p.firstOffset)
    }
    const offset = q.offset === undefined ? fallback : parseOffset('offset', q.offset)
    if (offset === 'earliest') return p.firstOffset
    if (offset === 'latest') return p.nextOffset
    if (offset < p.firstOffset || offset > p.nextOffset)
      throw new ApiError(
        'TRIB_OFFSET_OUT_OF_RANGE',
        `${p.stream}/${p.partition}@${offset}: stored are ${p.firstOffset}..${p.nextOffset - 1}`,
        { firstOffset: p.firstOffset, nextOffset: p.nextOffset },
      )
    return offset
  }

  app.get('/v1/streams', async () => ({ streams: streamsOf(view.log.partitions()) }))

  app.get<{ Params: { stream: string }; Querystring: { origin?: string } }>(
    '/v1/streams/:stream',
    {
      schema: {
        params: { type: 'object', properties: { stream: streamParam }, required: ['stream'] },
        querystring: {
          type: 'object',
          properties: { origin: originParam },
          additionalProperties: false,
        },
      },
    },
    async (request) => {
      const [stream] = streamsOf(partitionsOf(request.params.stream, request.query.origin))
      return stream
    },
  )

  app.get<{
    Params: { stream: string; partition: number }
    Querystring: {
      origin?: string
      offset?: string
      timestamp?: string
      group?: string
      maxRecords: number
      maxBytes: number
      encoding: 'utf8' | 'base64'
    }
  }>(
    '/v1/streams/:stream/partitions/:partition/records',
    {
      schema: {
        params: {
          type: 'object',
          properties: {
            stream: streamParam,
            origin: originParam,
            partition: { type: 'integer', minimum: 0 },
          },
          required: ['stream', 'partition'],
        },
        querystring: {
          type: 'object',
          properties: {
            origin: originParam,
            offset: { type: 'string' },
            timestamp: { type: 'string' },
            group: { type: 'string' },
            maxRecords: {
              type: 'integer',
              minimum: 1,
              maximum: MAX_MAX_RECORDS,
              default: DEFAULT_MAX_RECORDS,
            },
            maxBytes: { type: 'integer', minimum: 1, maximum: MAX_MAX_BYTES, default: DEFAULT_MAX_BYTES },
            encoding: encodingParam,
          },
          additionalProperties: false,
        },
      },
    },
    async (request) => {
      const { stream, partition } = request.params
      const q = request.query
      const p = partitionOf(stream, partition, q.origin)
      const from = startOffset(p, q, 'earliest')
      const result = view.log.read(p, from, {
        maxRecords: q.maxRecords,
        maxBytes: q.maxBytes,
        durableOnly: true,
      })
      const always = q.encoding === 'base64' ? 'base64' : null
      return {
        stream,
        partition,
        origin: p.origin,
        firstOffset: p.firstOffset,
        nextOffset: p.nextOffset,
        fromOffset: from,
        nextFetchOffset: result.nextOffset,
        records: result.records.map((r) => recordJson({ stream, partition, origin: p.origin }, r, always)),
        corrupt: result.corrupt,
      }
    },
  )

  app.get<{
    Params: { stream: string }
    Querystring: {
      origin?: string
      partition?: number
      offset?: string
      timestamp?: string
      group?: string
      encoding: 'utf8' | 'base64'
    }
  }>(
    '/v1/streams/:stream/tail',
    {
      schema: {
        params: { type: 'object', properties: { stream: streamParam }, required: ['stream'] },
        querystring: {
          type: 'object',
          properties: {
            origin: originParam,
            partition: { type: 'integer', minimum: 0 },
            offset: { type: 'string' },
            timestamp: { type: 'string' },
            group: { type: 'string' },
            encoding: encodingParam,
          },
          additionalProperties: false,
        },
      },
    },
    async (request, reply) => {
      const { stream } = request.params
      const q = request.query
      const partitions =
        q.partition === undefined
          ? partitionsOf(stream, q.origin)
          : [partitionOf(stream, q.partition, q.origin)]
      if (q.offset !== undefined && partitions.length > 1 && !['earliest', 'latest'].includes(q.offset))
        throw new TributaryError('TRIB_HTTP_BAD_REQUEST', 'a numeric offset needs partition= as well')
      const given = q.offset !== undefined || q.timestamp !== undefined || q.group !== undefined
      // A reconnecting EventSource sends the last event's id: go on from there (within what is stored).
      const resume = given ? null : lastEventCursors(request.headers['last-event-id'] as string | undefined)
      const from = new Map(
        partitions.map((p) => {
          const at = resume?.get(p.partition)
          return [
            p.partition,
            at === undefined
              ? startOffset(p, q, 'latest')
              : Math.min(Math.max(at, p.firstOffset), p.nextOffset),
          ]
        }),
      )
      tails.admit()
      reply.hijack()
      const origin = q.origin ?? view.nodeId
      await tails
        .run(view.log, reply.raw, {
          stream,
          origin,
          from,
          encoding: q.encoding === 'base64' ? 'base64' : null,
        })
        .catch((err: unknown) => request.log.warn({ err, stream }, 'live tail ended by an error'))
    },
  )

  registerGroupRoutes(app, { view, groups, partitionOf })
}
