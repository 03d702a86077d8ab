// The MQTT front door: aedes on a TCP listener, with the pre-ack append hook.
// aedes sends PUBACK (QoS 1) and PUBREC (QoS 2) only after `authorizePublish`
// calls back, so that hook hands the publish to ingest and calls back when the
// records are durable. While it waits, aedes reads nothing more from that
// socket: backpressure reaches the sensor through TCP.

import { type AddressInfo, createServer, type Server, type Socket } from 'node:net'
import { Aedes, type AedesPublishPacket, type Client, type PublishPacket } from 'aedes'
import mqttPacket from 'mqtt-packet'
import { TributaryError } from '../errors.ts'
import type { Ingest } from '../ingest/ingest.ts'
import type { Qos } from '../log/record.ts'
import type { Logger } from '../observability/logger.ts'
import type { Metrics } from '../observability/metrics.ts'
import { LmdbSessionStore } from './session-store.ts'

export interface BrokerOptions {
  readonly host: string
  readonly port: number
  readonly nodeId: string
  readonly maxPayloadBytes: number
  readonly maxQueuedPerSession: number
  /** Refusals, QoS 0 records not stored, session-queue drops, and how long acks waited for the disk. */
  readonly metrics?: Pick<Metrics, 'refused' | 'qos0NotStored' | 'sessionQueueDropped' | 'ackLatency'>
}

const WILL_SWEEP_HEARTBEAT_MS = 5000

// mqtt-packet by default pre-builds a 2-byte Buffer for each of the 65,536
// packet ids: 6.5 MB of live heap that every full GC marks again, to save a
// 2-byte allocation per ack. Off, as its `cacheNumbers` switch allows.
mqttPacket.writeToStream.cacheNumbers = false

/** The session store, told when a QoS 2 packet id is released (PUBREL) so ingest can forget it. */
class IngestAwareSessionStore extends LmdbSessionStore {
  onRelease: ((clientId: string, messageId: number) => Promise<void>) | null = null

  override async incomingDelPacket(client: { id: string }, packet: { messageId?: number }): Promise<void> {
    try {
      await super.incomingDelPacket(client, packet)
    } finally {
      if (this.onRelease !== null && packet.messageId !== undefined)
        await this.onRelease(client.id, packet.messageId)
    }
  }
}

function invalidTopicReason(topic: string): string | null {
  if (topic.includes('\u0000')) return 'topic contains U+0000 [MQTT-4.7.3-2]'
  if (topic.startsWith('$')) return 'topics starting with $ are reserved for the broker [MQTT-4.7.2-1]'
  return null
}

/**
 * A refused publish: MQTT 5 clients get the message as the reason string of
 * aedes' 0x87 PUBACK/PUBREC, so it starts with the stable code; 3.1.1 clients
 * are disconnected, the only refusal 3.1.1 has [MQTT-3.3.5-2]. Either way
 * nothing was acknowledged, so nothing acknowledged is lost.
 */
function refusal(err: TributaryError): TributaryError {
  err.message = `${err.code}: ${err.message}`
  return err
}

export class Broker {
  readonly #options: BrokerOptions
  readonly #ingest: Ingest
  readonly #log: Logger
  readonly #sessions: IngestAwareSessionStore
  #aedes: Aedes | null = null
  #server: Server | null = null
  readonly #sockets = new Set<Socket>()
  #serverClosed: Promise<void> = Promise.resolve()
  #qos0Dropped = 0
  #qos0DropLoggedAtMs = 0

  constructor(
    options: BrokerOptions,
    ingest: Ingest,
    sessions: ConstructorParameters<typeof LmdbSessionStore>[0],
    log: Logger,
  ) {
    this.#options = options
    this.#ingest = ingest
    this.#log = log
    this.#sessions = new IngestAwareSessionStore(sessions, {
      maxQueuedPerSession: options.maxQueuedPerSession,
      onDrop: (clientId, dropped) => {
        options.metrics?.sessionQueueDropped(dropped)
        log.warn(
          { clientId, dropped, limit: options.maxQueuedPerSession },
          'session queue full: oldest live deliveries dropped (the records stay in the log)',
        )
      },
    })
    this.#sessions.onRelease = (clientId, messageId) => ingest.release(clientId, messageId)
  }

  async listen(): Promise<AddressInfo> {
    const aedes = await Aedes.createBroker({
      // A new broker id per start: wills restored from a previous run then belong to a
      // dead broker, and aedes' will sweep publishes them as the crash warrants.
      id: `${this.#options.nodeId}.${Date.now().toString(36)}`,
      persistence: this.#sessions,
      // aedes sweeps for wills of dead brokers every 4 heartbeats: 20 s instead of 4 min.
      heartbeatInterval: WILL_SWEEP_HEARTBEAT_MS,
      maximumPacketSize: this.#options.maxPayloadBytes + 64 * 1024,
      preConnect: (_client, packet, done) => this.#preConnect(packet.clientId, packet.clean, done),
      authorizePublish: (client, packet, done) => this.#authorizePublish(client, packet, done),
    })
    this.#aedes = aedes
    aedes.on('clientError', (client, err) => this.#clientError(client, err))
    aedes.on('connectionError', (client, err) => this.#clientError(client, err))
    const server = createServer((socket) => {
      // Acks are small and must leave at once: with Nagle's algorithm a QoS 2 flow
      // waited ~40 ms per round trip on delayed ACKs (benchmark: 8k -> 18k msgs/s).
      socket.setNoDelay(true)
      this.#sockets.add(socket)
      socket.once('close', () => this.#sockets.delete(socket))
      aedes.handle(socket)
    })
    this.#server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(
          new TributaryError('TRIB_LISTEN_FAILED', `${this.#options.host}:${this.#options.port}`, {
            cause: err,
          }),
        ),
      )
      server.listen(this.#options.port, this.#options.host, () => resolve())
    })
    return server.address() as AddressInfo
  }

  /** Runs before aedes assigns `client.id`, so the id comes from the CONNECT packet. */
  #preConnect(
    clientId: string,
    clean: boolean | undefined,
    done: (err: Error | null, ok: boolean) => void,
  ): void {
    if (clean !== true) {
      done(null, true)
      return
    }
    // A clean session: packet ids start over, so the client's dedupe markers go.
    this.#ingest.forgetClient(clientId).then(
      () => done(null, true),
      (err: unknown) => {
        this.#log.error({ err, clientId }, 'could not reset dedupe state; refusing the connect')
        done(err instanceof Error ? err : new Error(String(err)), false)
      },
    )
  }

  /** MQTT clients connected now. */
  get connections(): number {
    return this.#aedes?.connectedClients ?? 0
  }

  /** True between listen() and stopAccepting(). */
  get listening(): boolean {
    return this.#server?.listening === true
  }

  #refuse(done: (err?: Error | null) => void, err: TributaryError): void {
    this.#options.metrics?.refused(err.code)
    done(refusal(err))
  }

  #authorizePublish(client: Client | null, packet: PublishPacket, done: (err?: Error | null) => void): void {
    const reason = invalidTopicReason(packet.topic)
    if (reason !== null) {
      this.#refuse(done, new TributaryError('TRIB_TOPIC_INVALID', reason))
      return
    }
    const startedAt = performance.now()
    const aedesPacket = packet as AedesPublishPacket & { clientId?: string }
    const clientId = client?.id ?? aedesPacket.clientId ?? ''
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
    const publish = {
      clientId,
      topic: packet.topic,
      payload,
      qos: packet.qos as Qos,
      dup: packet.dup === true,
      messageId: packet.messageId,
      userProperties: packet.properties?.userProperties,
    }
    const checked = this.#ingest.check(publish)
    if (checked instanceof TributaryError) {
      this.#refuse(done, checked)
      return
    }
    const stored = this.#ingest.accept(checked)
    if (publish.qos === 0) {
      // QoS 0 has no ack to protect: live delivery goes on at once instead of
      // waiting for the disk, and the append completes on its own. A QoS 0 record
      // that cannot be stored (commit queue full, disk full) is counted and logged.
      stored.catch((err: unknown) => this.#droppedQos0(err))
      done(null)
      return
    }
    const qos = publish.qos
    stored.then(
      () => {
        this.#options.metrics?.ackLatency(qos, (performance.now() - startedAt) / 1000)
        done(null)
      },
      (err: unknown) =>
        this.#refuse(
          done,
          err instanceof TributaryError ? err : new TributaryError('TRIB_STORE_WRITE_FAILED', String(err)),
        ),
    )
  }

  /** Logs dropped QoS 0 records at most once a second, with the count since the last line. */
  #droppedQos0(err: unknown): void {
    this.#options.metrics?.qos0NotStored(err instanceof TributaryError ? err.code : 'TRIB_STORE_WRITE_FAILED')
    this.#qos0Dropped++
    const now = Date.now()
    if (now - this.#qos0DropLoggedAtMs < 1000) return
    this.#log.warn(
      {
        code: err instanceof TributaryError ? err.code : 'TRIB_STORE_WRITE_FAILED',
        dropped: this.#qos0Dropped,
      },
      'QoS 0 publishes delivered live but not stored',
    )
    this.#qos0Dropped = 0
    this.#qos0DropLoggedAtMs = now
  }

  #clientError(client: Client | null, err: Error): void {
    const code = err instanceof TributaryError ? err.code : 'TRIB_MQTT_PROTOCOL'
    this.#log.warn(
      { code, clientId: client?.id, err: err.message },
      'client error; connection handled, others unaffected',
    )
  }

  /** Stops accepting new connections; existing ones keep working. Resolves once all have ended. */
  stopAccepting(): Promise<void> {
    const server = this.#server
    this.#server = null
    if (server === null) return this.#serverClosed
    this.#serverClosed = new Promise<void>((resolve) => server.close(() => resolve()))
    return this.#serverClosed
  }

  /** Disconnects every client and closes aedes (sessions are already persisted). Idempotent. */
  async close(): Promise<void> {
    const closed = this.stopAccepting()
    const aedes = this.#aedes
    this.#aedes = null
    if (aedes !== null) await new Promise<void>((resolve) => aedes.close(() => resolve()))
    for (const socket of this.#sockets) socket.destroy()
    await closed
  }
}
