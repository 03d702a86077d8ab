// MQTT sink: a bridge to a central MQTT broker with mqtt.js. Every record is
// published at QoS 1 on a persistent session (MQTT 5, so the forward headers
// travel as user properties), to the topic the template gives; a batch is
// delivered when every PUBACK is in.
//
// PUBACK reason codes that say the record can never be taken (topic name
// invalid, packet too large, payload format invalid) reject it; others (quota
// exceeded, not authorized, server busy) and lost connections are retried.
// mqtt.js does not reconnect by itself here: the next send connects again,
// paced by the forwarder's backoff.

import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import type { SinkConfig } from '../config/schema.ts'
import type { Header } from '../log/record.ts'
import { fillTemplate, forwardHeaders, rejected, type Sink, type SinkBatch, unavailable } from './sink.ts'
import { secret, tlsOptions } from './tls-files.ts'

type MqttSinkConfig = Extract<SinkConfig, { type: 'mqtt' }>

const CONNECT_TIMEOUT_MS = 10_000
/** A week: the central broker keeps the session (and our unacknowledged publishes) across uplink outages. */
const SESSION_EXPIRY_S = 7 * 24 * 3600
/** PUBACK reasons after which no retry can succeed [MQTT-3.4.2.1]. */
const NEVER_ACCEPTED = new Set([0x90, 0x95, 0x99])
/** Fixed header, topic length, packet id and property framing: what a PUBLISH adds besides topic, payload, properties. */
const PUBLISH_OVERHEAD_BYTES = 16

interface Connection {
  readonly client: MqttClient
  /** Rejects when the connection ends: pending PUBACKs will not come on it. */
  readonly closed: Promise<never>
  readonly maxPacketBytes: number | null
}

function userProperties(headers: readonly Header[]): Record<string, string | string[]> {
  const props: Record<string, string | string[]> = {}
  for (const [name, value] of headers) {
    const prev = props[name]
    props[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value]
  }
  return props
}

function reasonCodeOf(err: Error): number | null {
  const code = (err as { code?: unknown }).code
  return typeof code === 'number' ? code : null
}

export class MqttSink implements Sink {
  readonly name: string
  readonly #config: MqttSinkConfig
  readonly #clientId: string
  #connection: Promise<Connection> | null = null
  /** The client of #connection, to tell whether a closing client is the current one. */
  #client: MqttClient | null = null

  constructor(config: MqttSinkConfig, origin: string) {
    this.name = config.name
    this.#config = config
    this.#clientId = config.clientId ?? `tributary-${origin}-${config.name}`
  }

  #connect(): Promise<Connection> {
    this.#connection ??= this.#open()
    return this.#connection
  }

  #open(): Promise<Connection> {
    const c = this.#config
    const options: IClientOptions = {
      clientId: this.#clientId,
      clean: false,
      protocolVersion: 5,
      properties: { sessionExpiryInterval: SESSION_EXPIRY_S },
      reconnectPeriod: 0,
      connectTimeout: CONNECT_TIMEOUT_MS,
      ...tlsOptions(c.tls),
    }
    const password = secret(c.password, c.passwordFile, `sink ${c.name} password`)
    if (c.username !== undefined) options.username = c.username
    if (password !== undefined) options.password = password
    return new Promise<Connection>((resolve, reject) => {
      const client = mqtt.connect(c.url, options)
      let rejectClosed: (err: Error) => void = () => undefined
      const closed = new Promise<never>((_, rej) => {
        rejectClosed = rej
      })
      closed.catch(() => undefined)
      const fail = (why: string): void => {
        const err = unavailable(`${c.url}: ${why}`)
        rejectClosed(err)
        reject(err)
        client.end(true)
        if (this.#client === client) {
          this.#client = null
          this.#connection = null
        }
      }
      this.#client = client
      client.once('connect', (connack) => {
        resolve({ client, closed, maxPacketBytes: connack.properties?.maximumPacketSize ?? null })
      })
      client.on('error', (err) => fail(err.message))
      client.on('close', () => fail('connection closed'))
    })
  }

  async send(batch: SinkBatch, signal: AbortSignal): Promise<void> {
    const { client, closed, maxPacketBytes } = await this.#connect()
    signal.throwIfAborted()
    const aborted = new Promise<never>((_, reject) => {
      signal.addEventListener('abort', () => reject(signal.reason), { once: true })
    })
    aborted.catch(() => undefined)
    const acks = batch.records.map((record) => {
      const topic = fillTemplate(this.#config.topic, batch, record)
      const properties = { userProperties: userProperties(forwardHeaders(batch, record)) }
      const size =
        PUBLISH_OVERHEAD_BYTES +
        Buffer.byteLength(topic) +
        record.payload.length +
        JSON.stringify(properties).length
      if (maxPacketBytes !== null && size > maxPacketBytes) {
        return Promise.reject(rejected(`${size} bytes > the broker's maximum packet size ${maxPacketBytes}`))
      }
      return new Promise<void>((resolve, reject) => {
        client.publish(topic, record.payload, { qos: 1, properties }, (err) => {
          if (err === undefined || err === null) return resolve()
          const reason = reasonCodeOf(err)
          reject(
            reason !== null && NEVER_ACCEPTED.has(reason)
              ? rejected(err.message, err)
              : unavailable(err.message, err),
          )
        })
      })
    })
    await Promise.race([Promise.all(acks), closed, aborted])
  }

  async reset(): Promise<void> {
    const client = this.#client
    this.#client = null
    this.#connection = null
    await client?.endAsync(true)
  }

  close(): Promise<void> {
    return this.reset()
  }
}
