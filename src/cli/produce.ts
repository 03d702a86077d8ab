// `tributary produce STREAM`: publishes each line of stdin as one record, for
// testing. It goes in over MQTT, like a sensor: the same routing, keys,
// limits and durable acknowledgement as real traffic, and no second way for
// records into the log. The topic comes from the stream's first topic filter
// (`+` and `#` filled in) unless --topic gives one; the config decides which
// streams a topic lands in, so the command checks that STREAM is one of them.
// QoS 1 by default: each line counts as produced once its PUBACK says it is
// stored; MQTT 5 refusals are reported with their TRIB_* code.

import { createInterface } from 'node:readline'
import type { Command } from 'commander'
import { connectAsync, type MqttClient } from 'mqtt'
import type { Config, StreamConfig } from '../config/schema.ts'
import { TributaryError } from '../errors.ts'
import { Router } from '../ingest/router.ts'
import { authority, clientHost, configFrom, printJson, withStoreOptions } from './shared.ts'

const MAX_IN_FLIGHT = 64
/** A --partition without --key: candidate keys tried until one lands in the partition. */
const MAX_KEY_SEARCH = 100_000
const FILL = 'produce'

interface ProduceOptions {
  config?: string
  dataDir?: string
  key?: string
  partition?: number
  topic?: string
  qos?: number
  clientId?: string
  mqttHost?: string
  mqttPort?: number
  json?: boolean
}

interface Plan {
  readonly topic: (key: string | null) => string
  readonly clientId: (key: string | null) => string
  readonly key: string | null
}

/** A topic the stream's first filter matches, with `key` at the key level when the stream keys by topic level. */
function topicFor(stream: StreamConfig, key: string | null): string {
  const filter = stream.match[0]
  if (filter === undefined) return `tributary/${FILL}/${stream.name}`
  const levels = filter.split('/')
  const keyLevel = stream.key.from === 'topic-level' ? stream.key.level : -1
  const out = levels.map((level, i) =>
    level === '+' || level === '#' ? (i === keyLevel && key !== null ? key : FILL) : level,
  )
  if (keyLevel >= out.length && key !== null) {
    while (out.length < keyLevel) out.push(FILL)
    out.push(key)
  }
  return out.join('/')
}

function plan(config: Readonly<Config>, streamName: string, options: ProduceOptions): Plan {
  const stream = config.streams.find((s) => s.name === streamName)
  if (stream === undefined)
    throw new TributaryError('TRIB_STREAM_UNKNOWN', `${streamName} (not in the config)`)
  const router = new Router(config.streams, config.unmatched)
  const ownClientId = options.clientId ?? `tributary-produce-${process.pid}`
  const topicOf = (key: string | null): string => options.topic ?? topicFor(stream, key)
  const clientOf = (key: string | null): string =>
    stream.key.from === 'client-id' && key !== null ? key : ownClientId
  const routeOf = (key: string | null) =>
    router.route(topicOf(key), clientOf(key)).find((r) => r.stream.name === streamName)

  if (options.key !== undefined && stream.key.from === 'none')
    throw new TributaryError(
      'TRIB_CONFIG_INVALID',
      `stream ${streamName} has key: { from: none }; --key cannot apply`,
    )
  let key = options.key ?? null
  if (options.partition !== undefined) {
    if (options.partition >= stream.partitions)
      throw new TributaryError('TRIB_PARTITION_UNKNOWN', `${streamName} has ${stream.partitions} partitions`)
    if (stream.key.from === 'none')
      throw new TributaryError(
        'TRIB_CONFIG_INVALID',
        `stream ${streamName} spreads keyless records round-robin; --partition cannot apply`,
      )
    if (key === null) {
      // The stream's keys pick partitions (murmur2, as Kafka): find a key that lands in the one asked for.
      for (let i = 0; i < MAX_KEY_SEARCH && key === null; i++)
        if (routeOf(`${FILL}-${i}`)?.partition === options.partition) key = `${FILL}-${i}`
    }
  }
  const route = routeOf(key)
  if (route === undefined)
    throw new TributaryError(
      'TRIB_CONFIG_INVALID',
      `topic ${topicOf(key)} does not land in stream ${streamName}; give a --topic that its match filters take`,
    )
  if (key !== null && route.key?.toString('utf8') !== key)
    throw new TributaryError(
      'TRIB_CONFIG_INVALID',
      `with topic ${topicOf(key)}, stream ${streamName}'s key rule does not take "${key}" as the key`,
    )
  if (options.partition !== undefined && route.partition !== options.partition)
    throw new TributaryError(
      'TRIB_CONFIG_INVALID',
      `key ${key} lands in partition ${route.partition} of ${streamName}, not ${options.partition}`,
    )
  return { topic: topicOf, clientId: clientOf, key }
}

async function publishLines(client: MqttClient, topic: string, qos: 0 | 1 | 2) {
  let produced = 0
  const refused: Array<{ line: number; error: string }> = []
  const inFlight = new Set<Promise<void>>()
  let line = 0
  for await (const text of createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY })) {
    const n = ++line
    const sent = client.publishAsync(topic, text, { qos }).then(
      () => {
        produced++
      },
      (err: unknown) => {
        refused.push({ line: n, error: err instanceof Error ? err.message : String(err) })
      },
    )
    inFlight.add(sent)
    void sent.finally(() => inFlight.delete(sent))
    if (inFlight.size >= MAX_IN_FLIGHT) await Promise.race(inFlight)
  }
  await Promise.all(inFlight)
  return { produced, refused }
}

export function registerProduce(program: Command): void {
  withStoreOptions(program.command('produce'))
    .description(
      'publish each line of stdin as a record of STREAM, over MQTT to the running node (for testing)',
    )
    .argument('<stream>', 'stream name (from the config)')
    .option('-k, --key <key>', "record key: the client id or the topic level the stream's key rule reads")
    .option('-p, --partition <n>', 'a partition: without --key, a key that lands there is chosen', (v) => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < 0)
        throw new Error(`--partition must be a non-negative integer, got "${v}"`)
      return n
    })
    .option('-t, --topic <topic>', "MQTT topic (default: from the stream's first match filter)")
    .option('-q, --qos <0|1|2>', 'MQTT QoS (default 1: each line waits for its PUBACK)', (v) => {
      if (!['0', '1', '2'].includes(v)) throw new Error(`--qos must be 0, 1 or 2, got "${v}"`)
      return Number(v)
    })
    .option(
      '--client-id <id>',
      'MQTT client id (default tributary-produce-<pid>; the key when the stream keys by client id)',
    )
    .option('--mqtt-host <host>', 'the node (default: mqtt.host of the config, loopback for 0.0.0.0)')
    .option('--mqtt-port <port>', 'its MQTT port (default: mqtt.port of the config)', (v) =>
      Number.parseInt(v, 10),
    )
    .option('--json', 'print one JSON object with the counts')
    .action(async (stream: string, options: ProduceOptions) => {
      const config = configFrom({ config: options.config, dataDir: options.dataDir })
      const p = plan(config, stream, options)
      const topic = p.topic(p.key)
      const clientId = p.clientId(p.key)
      const url = `mqtt://${authority(clientHost(options.mqttHost ?? config.mqtt.host), options.mqttPort ?? config.mqtt.port)}`
      let client: MqttClient
      try {
        client = await connectAsync(url, {
          clientId,
          protocolVersion: 5,
          clean: true,
          reconnectPeriod: 0,
          connectTimeout: 5000,
        })
      } catch (err) {
        throw new TributaryError(
          'TRIB_NODE_UNREACHABLE',
          `MQTT ${url}: ${err instanceof Error ? err.message : String(err)}`,
        )
      }
      let result: Awaited<ReturnType<typeof publishLines>>
      try {
        result = await publishLines(client, topic, (options.qos ?? 1) as 0 | 1 | 2)
      } finally {
        await client.endAsync()
      }
      const summary = { stream, topic, clientId, key: p.key, qos: options.qos ?? 1, ...result }
      if (options.json === true) printJson(summary)
      else {
        process.stdout.write(
          `produced ${result.produced} records to ${stream} (topic ${topic}, client ${clientId}${p.key === null ? '' : `, key ${p.key}`})\n`,
        )
        for (const r of result.refused) process.stderr.write(`line ${r.line} refused: ${r.error}\n`)
      }
      if (result.refused.length > 0) process.exitCode = 1
    })
}
