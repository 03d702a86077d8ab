// Steady QoS 1 or QoS 2 load from several mqtt.js connections, for crash
// tests. Every publisher sends unique payloads (`<tag>|p<publisher>|s<seq>|`)
// and keeps a window of messages in flight; a message counts as acknowledged
// when the broker's durable ack for it arrives: PUBACK (QoS 1), PUBREC or
// PUBCOMP (QoS 2), seen on the wire or as publishAsync resolving.
// Bounded in count and time; no reconnects (the broker is expected to die).

import mqtt, { type MqttClient, type Packet } from 'mqtt'

export interface LoadOptions {
  readonly url: string
  readonly qos: 1 | 2
  readonly publishers: number
  /** Messages in flight per publisher. */
  readonly window: number
  /** Unique per load run: every payload and client id starts with it. */
  readonly tag: string
  readonly topicPrefix: string
  readonly maxPerPublisher: number
  readonly maxMs: number
}

export interface LoadSnapshot {
  readonly sent: ReadonlySet<string>
  readonly acked: ReadonlySet<string>
  /** QoS 2: messages whose PUBCOMP arrived (a subset of acked). */
  readonly completed: number
  /** Acks that arrived after the connection had closed (processed late, still real acks). */
  readonly lateAcks: number
  /** publishAsync calls that rejected (connection closed with the message in flight, or refused). */
  readonly failed: number
}

export interface RunningLoad {
  /** Resolves once any message has been acknowledged: the load is really flowing. */
  readonly flowing: Promise<void>
  /**
   * After the broker died: waits until every connection has closed, lets acks
   * already received be processed, then closes the clients and returns the counts.
   */
  settle(timeoutMs?: number): Promise<LoadSnapshot>
}

export function clientIdFor(tag: string, publisher: number): string {
  return `${tag}-p${publisher}`
}

export function topicFor(prefix: string, publisher: number): string {
  return `${prefix}/p${publisher}`
}

/** The publisher a payload of this load came from, or null when it is not one of ours. */
export function publisherOf(tag: string, payload: string): number | null {
  const match = new RegExp(`^${tag.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\|p(\\d+)\\|s\\d+\\|`).exec(
    payload,
  )
  return match === null ? null : Number(match[1])
}

function payloadText(payload: Buffer | string): string {
  return typeof payload === 'string' ? payload : payload.toString('utf8')
}

class Publisher {
  readonly client: MqttClient
  readonly closed: Promise<void>
  isClosed = false
  ackedAfterClose = 0
  completed = 0
  readonly #byPacketId = new Map<number, string>()

  constructor(client: MqttClient, acked: Set<string>, onAck: () => void) {
    this.client = client
    // Connection errors after the kill are expected; they end this publisher.
    client.on('error', () => undefined)
    this.closed = new Promise<void>((resolve) =>
      client.once('close', () => {
        this.isClosed = true
        resolve()
      }),
    )
    client.on('packetsend', (packet: Packet) => {
      if (packet.cmd === 'publish' && packet.messageId !== undefined)
        this.#byPacketId.set(packet.messageId, payloadText(packet.payload))
    })
    client.on('packetreceive', (packet: Packet) => {
      if (packet.cmd !== 'puback' && packet.cmd !== 'pubrec' && packet.cmd !== 'pubcomp') return
      if (packet.cmd === 'pubcomp') this.completed++
      const payload = packet.messageId === undefined ? undefined : this.#byPacketId.get(packet.messageId)
      if (payload === undefined) return
      this.#ack(payload, acked, onAck)
    })
  }

  #ack(payload: string, acked: Set<string>, onAck: () => void): void {
    if (acked.has(payload)) return
    acked.add(payload)
    if (this.isClosed) this.ackedAfterClose++
    onAck()
  }

  /** Publishes until the connection closes or a bound is reached; window messages in flight. */
  async pump(
    options: LoadOptions,
    index: number,
    sent: Set<string>,
    acked: Set<string>,
    onAck: () => void,
    onFail: () => void,
  ): Promise<void> {
    const topic = topicFor(options.topicPrefix, index)
    const deadline = Date.now() + options.maxMs
    const inFlight = new Set<Promise<void>>()
    let seq = 0
    while (!this.isClosed && seq < options.maxPerPublisher && Date.now() < deadline) {
      if (inFlight.size >= options.window) {
        await Promise.race([this.closed, ...inFlight])
        continue
      }
      const payload = `${options.tag}|p${index}|s${String(seq).padStart(7, '0')}|`
      seq++
      sent.add(payload)
      const done: Promise<void> = this.client
        .publishAsync(topic, payload, { qos: options.qos })
        .then(
          () => this.#ack(payload, acked, onAck),
          () => onFail(),
        )
        .finally(() => inFlight.delete(done))
      inFlight.add(done)
    }
  }
}

export async function startLoad(options: LoadOptions): Promise<RunningLoad> {
  const sent = new Set<string>()
  const acked = new Set<string>()
  let failed = 0
  let firstAck: () => void = () => undefined
  const flowing = new Promise<void>((resolve) => {
    firstAck = resolve
  })
  const publishers: Publisher[] = []
  for (let i = 0; i < options.publishers; i++) {
    const client = await mqtt.connectAsync(options.url, {
      clientId: clientIdFor(options.tag, i),
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    })
    publishers.push(new Publisher(client, acked, firstAck))
  }
  const pumps = publishers.map((p, i) =>
    p.pump(options, i, sent, acked, firstAck, () => {
      failed++
    }),
  )
  // A pump only ends by closing, a bound or its own bug; settle() reports the bug.
  const pumped = Promise.all(pumps)
  pumped.catch(() => undefined)

  return {
    flowing,
    async settle(timeoutMs = 15_000): Promise<LoadSnapshot> {
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`publisher connections still open ${timeoutMs} ms after the broker died`)),
          timeoutMs,
        )
      })
      try {
        await Promise.race([Promise.all(publishers.map((p) => p.closed)), timeout])
        // Packets the client had already received are parsed after 'close'; give them a moment.
        await new Promise((resolve) => setTimeout(resolve, 250))
        await Promise.race([pumped, timeout])
      } finally {
        clearTimeout(timer)
      }
      const snapshot: LoadSnapshot = {
        sent: new Set(sent),
        acked: new Set(acked),
        completed: publishers.reduce((n, p) => n + p.completed, 0),
        lateAcks: publishers.reduce((n, p) => n + p.ackedAfterClose, 0),
        failed,
      }
      // Publishes still pending in mqtt.js never settle on a dead connection; end(true) drops them.
      for (const p of publishers) p.client.end(true)
      return snapshot
    },
  }
}
