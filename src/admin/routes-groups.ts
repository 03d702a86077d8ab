// The consumer API's group routes: list groups, read a group's committed
// offsets with their lag, commit offsets (by offset, earliest/latest or a
// time) and reset them. Consumer groups write only their own offsets
// (consumer-groups.ts). A replica's partition is named with `origin`.

import type { FastifyInstance } from 'fastify'
import { TributaryError } from '../errors.ts'
import { type ConsumerGroups, checkGroupName } from './consumer-groups.ts'
import type { NodeView } from './node-view.ts'
import { originParam, type PartitionLookup, parseTime, streamParam } from './route-params.ts'

interface Parts {
  readonly view: NodeView
  readonly groups: ConsumerGroups
  readonly partitionOf: PartitionLookup['partitionOf']
}

/** Offsets of a replica name its origin; this node's, as before replicas, do not. */
function originOf(ref: { readonly origin: string }, local: string): { origin?: string } {
  return ref.origin === local ? {} : { origin: ref.origin }
}

export function registerGroupRoutes(app: FastifyInstance, parts: Parts): void {
  const { view, groups, partitionOf } = parts

  app.get('/v1/groups', async () => {
    const byGroup = new Map<string, { partitions: number; committedAtMs: number }>()
    for (const o of groups.all()) {
      const g = byGroup.get(o.group) ?? { partitions: 0, committedAtMs: 0 }
      byGroup.set(o.group, {
        partitions: g.partitions + 1,
        committedAtMs: Math.max(g.committedAtMs, o.committedAtMs),
      })
    }
    return {
      groups: [...byGroup].map(([group, g]) => ({
        group,
        partitions: g.partitions,
        lastCommit: new Date(g.committedAtMs).toISOString(),
      })),
    }
  })

  const groupParams = {
    type: 'object',
    properties: { group: { type: 'string', minLength: 1, maxLength: 249 } },
    required: ['group'],
  } as const

  app.get<{ Params: { group: string } }>(
    '/v1/groups/:group/offsets',
    { schema: { params: groupParams } },
    async (request) => {
      const { group } = request.params
      checkGroupName(group)
      const offsets = groups.offsets(group)
      if (offsets.length === 0) throw new TributaryError('TRIB_GROUP_UNKNOWN', group)
      return {
        group,
        offsets: offsets.map((o) => {
          const p = view.log.partition(o)
          return {
            stream: o.stream,
            ...originOf(o, view.nodeId),
            partition: o.partition,
            offset: o.offset,
            committedAt: new Date(o.committedAtMs).toISOString(),
            nextOffset: p?.nextOffset ?? null,
            lag: p === undefined ? null : Math.max(0, p.nextOffset - Math.max(o.offset, p.firstOffset)),
          }
        }),
      }
    },
  )

  const commitEntry = {
    type: 'object',
    properties: {
      stream: streamParam,
      origin: originParam,
      partition: { type: 'integer', minimum: 0 },
      offset: {
        anyOf: [
          { type: 'integer', minimum: 0 },
          { type: 'string', enum: ['earliest', 'latest'] },
        ],
      },
      timestamp: { type: 'string' },
    },
    required: ['stream', 'partition'],
    additionalProperties: false,
  } as const
  type CommitEntry = {
    stream: string
    origin?: string
    partition: number
    offset?: number | 'earliest' | 'latest'
    timestamp?: string
  }

  app.post<{ Params: { group: string }; Body: CommitEntry | { offsets: CommitEntry[] } }>(
    '/v1/groups/:group/offsets',
    {
      schema: {
        params: groupParams,
        body: {
          anyOf: [
            commitEntry,
            {
              type: 'object',
              properties: { offsets: { type: 'array', items: commitEntry, minItems: 1, maxItems: 1024 } },
              required: ['offsets'],
              additionalProperties: false,
            },
          ],
        },
      },
    },
    async (request) => {
      const { group } = request.params
      const body = request.body
      const entries = 'offsets' in body ? body.offsets : [body]
      const resolved = entries.map((e) => {
        if ((e.offset === undefined) === (e.timestamp === undefined))
          throw new TributaryError(
            'TRIB_HTTP_BAD_REQUEST',
            'each entry needs exactly one of offset and timestamp',
          )
        const p = partitionOf(e.stream, e.partition, e.origin)
        let offset: number
        if (e.timestamp !== undefined)
          offset = view.log.offsetForTimestamp(p, parseTime('timestamp', e.timestamp))
        else if (e.offset === 'earliest') offset = p.firstOffset
        else if (e.offset === 'latest') offset = p.nextOffset
        else offset = e.offset ?? 0
        return { stream: p.stream, origin: p.origin, partition: p.partition, offset }
      })
      const committed = await groups.commit(group, resolved)
      return {
        group,
        offsets: committed.map((o) => ({
          stream: o.stream,
          ...originOf(o, view.nodeId),
          partition: o.partition,
          offset: o.offset,
          committedAt: new Date(o.committedAtMs).toISOString(),
        })),
      }
    },
  )

  app.delete<{
    Params: { group: string }
    Querystring: { stream?: string; origin?: string; partition?: number }
  }>(
    '/v1/groups/:group/offsets',
    {
      schema: {
        params: groupParams,
        querystring: {
          type: 'object',
          properties: {
            stream: streamParam,
            origin: originParam,
            partition: { type: 'integer', minimum: 0 },
          },
          additionalProperties: false,
        },
      },
    },
    async (request) => {
      const { group } = request.params
      checkGroupName(group)
      const { stream, origin, partition } = request.query
      if ((partition !== undefined || origin !== undefined) && stream === undefined)
        throw new TributaryError('TRIB_HTTP_BAD_REQUEST', 'partition= and origin= need stream= as well')
      const removed = await groups.remove(group, {
        ...(stream === undefined ? {} : { stream, origin: origin ?? view.nodeId }),
        ...(partition === undefined ? {} : { partition }),
      })
      if (removed === 0) throw new TributaryError('TRIB_GROUP_UNKNOWN', group)
      return { group, removed }
    },
  )
}
