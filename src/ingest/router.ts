// Routing: which streams a publish lands in, its record key and partition.
// Pure and synchronous; built once from the frozen config.

import { DEFAULT_STREAM_NAME, type KeyRule, type StreamConfig } from '../config/schema.ts'
import { partitionForKey } from './partitioner.ts'

/** MQTT topic matching [MQTT-4.7]: `+` one level, `#` the rest; `$`-topics only by explicit filters. */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false
  const f = filter.split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    const level = f[i]
    if (level === '#') return true
    if (i >= t.length) return false
    if (level !== '+' && level !== t[i]) return false
  }
  return f.length === t.length
}

export function recordKey(rule: KeyRule, topic: string, clientId: string): Buffer | null {
  switch (rule.from) {
    case 'client-id':
      return Buffer.from(clientId, 'utf8')
    case 'none':
      return null
    case 'topic-level': {
      const level = topic.split('/')[rule.level]
      return level === undefined || level === '' ? null : Buffer.from(level, 'utf8')
    }
  }
}

/** How many topics Router#matched remembers before it starts over. */
const MATCH_CACHE_TOPICS = 4096

export interface Route {
  readonly stream: StreamConfig
  readonly key: Buffer | null
  readonly partition: number
}

export class Router {
  readonly #streams: readonly StreamConfig[]
  readonly #fallback: StreamConfig | undefined
  /** Round-robin position per stream, for records without a key. */
  readonly #roundRobin = new Map<string, number>()
  /**
   * The streams each recently seen topic matches: sensors publish to the same
   * few topics over and over, and matching every filter level by level was a
   * split and an array per filter per publish. Bounded: emptied when full.
   */
  readonly #matched = new Map<string, readonly StreamConfig[]>()

  constructor(streams: readonly StreamConfig[], unmatched: 'store' | 'live-only') {
    this.#streams = streams.filter((s) => s.match.length > 0)
    this.#fallback = unmatched === 'store' ? streams.find((s) => s.name === DEFAULT_STREAM_NAME) : undefined
  }

  /** Every stream the topic matches (or the default stream), each with key and partition. */
  route(topic: string, clientId: string): Route[] {
    return this.#streamsFor(topic).map((stream) => {
      const key = recordKey(stream.key, topic, clientId)
      return { stream, key, partition: this.#partition(stream, key) }
    })
  }

  #streamsFor(topic: string): readonly StreamConfig[] {
    const cached = this.#matched.get(topic)
    if (cached !== undefined) return cached
    const matched = this.#streams.filter((s) => s.match.some((f) => topicMatches(f, topic)))
    if (matched.length === 0 && this.#fallback !== undefined && !topic.startsWith('$'))
      matched.push(this.#fallback)
    if (this.#matched.size >= MATCH_CACHE_TOPICS) this.#matched.clear()
    this.#matched.set(topic, matched)
    return matched
  }

  #partition(stream: StreamConfig, key: Buffer | null): number {
    if (stream.partitions === 1) return 0
    if (key !== null) return partitionForKey(key, stream.partitions)
    const next = this.#roundRobin.get(stream.name) ?? 0
    this.#roundRobin.set(stream.name, (next + 1) % stream.partitions)
    return next
  }
}
