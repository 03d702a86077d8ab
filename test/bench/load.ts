// The load generator: pipelined MQTT 3.1.1 publishers over plain TCP, run as
// a child process of the benchmark (test/bench/run.ts forks it) so the
// process that measures the broker is not the one that loads it.
//
// In: a LoadConfig over IPC, then 'go' (start sending: warm-up), 'measure'
// (start counting), 'progress' (answered with the acks counted so far),
// 'stop' (stop sending, drain, disconnect). Out: 'ready'
// once every connection has its CONNACK, then one LoadResult.
//
// Closed loop (ratePerS null): each connection keeps `window` messages
// unacknowledged and sends a new one when an ack arrives. The ack is PUBACK
// for QoS 1 and PUBREC for QoS 2 (the message is durable at the receiver; the
// generator still completes PUBREL/PUBCOMP before it reuses the packet id).
// QoS 0 has no ack: a PINGREQ follows every half window of publishes and a
// PINGRESP releases the publishes sent before its PINGREQ (the broker
// answers in order), so QoS 0 cannot flood the broker; QoS 0 reports
// throughput only. Open loop (ratePerS set): messages are offered on a
// fixed schedule, spread over the connections; a connection already holding
// `window` unacknowledged messages skips its turn (counted as `deferred`).
//
// Latency is write -> ack, in microseconds, kept in a preallocated
// Uint32Array (reservoir sampling past `maxSamples`). An optional probe (a
// QoS 0 publisher and a separate QoS 0 subscriber) measures live delivery.
// Every phase is bounded: the generator stops itself after `maxSeconds`.

import type { Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { generate, type Packet } from 'mqtt-packet'
import { closeMqtt, connectMqtt, type MqttConn } from './mqtt-conn.ts'
import { percentile } from './stats.ts'

export interface ProbeConfig {
  /** QoS 0 probe publishes per second. */
  readonly ratePerS: number
  readonly topic: string
}

export interface LoadConfig {
  readonly port: number
  readonly connections: number
  /** Unacknowledged messages per connection (closed loop), or the cap per connection (open loop). */
  readonly window: number
  readonly qos: 0 | 1 | 2
  readonly payloadBytes: number
  readonly clientIdPrefix: string
  readonly topicPrefix: string
  /** Open loop: messages per second offered by this generator; null: closed loop. */
  readonly ratePerS: number | null
  readonly maxSamples: number
  /** Hard bound on the whole run from the config message on; the generator stops itself. */
  readonly maxSeconds: number
  /** After 'stop', how long to wait for acks still in flight. */
  readonly drainMs: number
  readonly connectTimeoutMs: number
  readonly probe: ProbeConfig | null
}

export type ToGenerator =
  | { readonly type: 'start'; readonly config: LoadConfig }
  | { readonly type: 'go' }
  | { readonly type: 'measure' }
  | { readonly type: 'progress' }
  | { readonly type: 'stop' }

export interface ProbeResult {
  readonly sent: number
  readonly received: number
  /** Delivery latency publish -> subscriber, microseconds. */
  readonly samples: Uint32Array
}

export interface LoadResult {
  readonly connected: number
  readonly measuredMs: number
  /** Acks (PUBACK, PUBREC, or publishes released by a PINGRESP for QoS 0) inside the window. */
  readonly acked: number
  readonly sent: number
  /** Latency samples (microseconds), at most maxSamples: a uniform sample of `sampled` acks. */
  readonly samples: Uint32Array
  readonly sampled: number
  /** Acks per whole second of the window. */
  readonly perSecond: number[]
  /** This process's event-loop utilisation during the window (0..1). */
  readonly elu: number
  /** This process's CPU time (user + system) during the window, ms. */
  readonly cpuMs: number
  /** Open loop: scheduled messages skipped because the connection was at its cap. */
  readonly deferred: number
  /** Open loop: how late writes went out against their schedule, p99 and max, ms. */
  readonly sendLagP99Ms: number | null
  readonly sendLagMaxMs: number | null
  readonly disconnects: number
  readonly unackedAtEnd: number
  readonly errors: string[]
  readonly probe: ProbeResult | null
}

export type FromGenerator =
  | { readonly type: 'ready' }
  | { readonly type: 'progress'; readonly acked: number; readonly sent: number }
  | { readonly type: 'result'; readonly result: LoadResult }
  | { readonly type: 'failed'; readonly error: string }

const MAX_ERRORS = 20
const MAX_LAG_SAMPLES = 100_000
const OPEN_LOOP_TICK_MS = 1
const MAX_PACKET_ID = 65_535

type Phase = 'idle' | 'warmup' | 'measuring' | 'stopped'

/** A bounded, uniform sample of a stream of values (Algorithm R). */
export class Reservoir {
  readonly values: Uint32Array
  count = 0

  constructor(capacity: number) {
    this.values = new Uint32Array(capacity)
  }

  add(value: number): void {
    const v = value < 0 ? 0 : value > 0xffffffff ? 0xffffffff : value
    if (this.count < this.values.length) {
      this.values[this.count] = v
    } else {
      const j = Math.floor(Math.random() * (this.count + 1))
      if (j < this.values.length) this.values[j] = v
    }
    this.count++
  }

  taken(): Uint32Array {
    return this.values.slice(0, Math.min(this.count, this.values.length))
  }
}

function asciiPayload(bytes: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(bytes)
  let x = seed * 2654435761 + 1
  for (let i = 0; i < bytes; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    out[i] = 0x21 + ((x >>> 16) % 94)
  }
  return out
}

/** The run's shared state: phase, counters and the latency reservoir. */
class Run {
  phase: Phase = 'idle'
  measureStartMs = 0
  measureEndMs = 0
  acked = 0
  sent = 0
  deferred = 0
  disconnects = 0
  readonly errors: string[] = []
  readonly latency: Reservoir
  readonly lag = new Reservoir(MAX_LAG_SAMPLES)
  lagMaxMs = 0
  readonly perSecond: Uint32Array

  readonly config: LoadConfig

  constructor(config: LoadConfig) {
    this.config = config
    this.latency = new Reservoir(Math.max(1, config.maxSamples))
    this.perSecond = new Uint32Array(Math.ceil(config.maxSeconds) + 2)
  }

  get sending(): boolean {
    return this.phase === 'warmup' || this.phase === 'measuring'
  }

  error(text: string): void {
    if (this.errors.length < MAX_ERRORS) this.errors.push(text)
  }

  /** One ack arrived at `now` for a message written at `sentAtMs` (NaN: no latency, QoS 0). */
  ack(now: number, sentAtMs: number, count = 1): void {
    if (this.phase !== 'measuring') return
    this.acked += count
    const second = Math.floor((now - this.measureStartMs) / 1000)
    if (second >= 0 && second < this.perSecond.length) {
      this.perSecond[second] = (this.perSecond[second] ?? 0) + count
    }
    if (!Number.isNaN(sentAtMs)) this.latency.add(Math.round((now - sentAtMs) * 1000))
  }
}

/** One publishing connection with its window of unacknowledged packet ids. */
class Publisher {
  readonly #run: Run
  readonly #conn: MqttConn
  readonly #template: Buffer
  readonly #idOffset: number
  readonly #sentAt = new Float64Array(MAX_PACKET_ID + 1)
  readonly #inUse = new Uint8Array(MAX_PACKET_ID + 1)
  readonly #pubrel: Buffer
  #nextId = 1
  /** Messages written and not yet acknowledged (PUBACK / PUBREC / PINGRESP). */
  outstanding = 0
  /** QoS 2: PUBRELs sent whose PUBCOMP has not come back. */
  awaitingComp = 0
  closed = false
  // QoS 0 flow control: cumulative publishes sent, and those released by PINGRESPs.
  #qos0Sent = 0
  #qos0Covered = 0
  readonly #marks: Array<{ readonly upTo: number; readonly atMs: number }> = []

  constructor(run: Run, conn: MqttConn, index: number) {
    this.#run = run
    this.#conn = conn
    const { config } = run
    const topic = `${config.topicPrefix}/${index}`
    this.#template = generate({
      cmd: 'publish',
      topic,
      payload: asciiPayload(config.payloadBytes, index + 1),
      qos: config.qos,
      messageId: config.qos > 0 ? 1 : undefined,
      retain: false,
      dup: false,
    })
    this.#idOffset = this.#template.length - config.payloadBytes - 2
    this.#pubrel = generate({ cmd: 'pubrel', messageId: 1 })
    const socket = conn.socket
    conn.parser.on('packet', (packet: Packet) => this.#onPacket(packet))
    socket.removeAllListeners('data')
    socket.on('data', (chunk: Buffer) => {
      socket.cork()
      conn.parser.parse(chunk)
      socket.uncork()
    })
    socket.on('error', (err: Error) => run.error(`connection ${index}: ${err.message}`))
    socket.on('close', () => {
      this.closed = true
      if (run.phase !== 'stopped') {
        run.disconnects++
        run.error(`connection ${index} closed by the broker during the run`)
      }
    })
  }

  get socket(): Socket {
    return this.#conn.socket
  }

  get idle(): boolean {
    return this.closed || (this.outstanding === 0 && this.awaitingComp === 0)
  }

  /** Closed loop: fill the window. */
  fill(): void {
    const { config } = this.#run
    if (config.qos === 0) {
      this.#fillQos0()
      return
    }
    while (this.outstanding < config.window && this.#run.sending && !this.closed) {
      this.send(performance.now())
    }
  }

  #fillQos0(): void {
    const window = this.#run.config.window
    const chunk = Math.max(1, Math.ceil(window / 2))
    const socket = this.#conn.socket
    socket.cork()
    while (this.#qos0Sent - this.#qos0Covered + chunk <= window && this.#run.sending && !this.closed) {
      for (let i = 0; i < chunk; i++) this.send(performance.now())
      socket.write(PINGREQ)
      this.#marks.push({ upTo: this.#qos0Sent, atMs: performance.now() })
    }
    socket.uncork()
  }

  /** Writes one publish; `sentAtMs` is when it counts as written. */
  send(sentAtMs: number): void {
    const qos = this.#run.config.qos
    const buf = Buffer.allocUnsafe(this.#template.length)
    this.#template.copy(buf)
    if (qos > 0) {
      let id = this.#nextId
      while (this.#inUse[id] !== 0) id = id >= MAX_PACKET_ID ? 1 : id + 1
      this.#nextId = id >= MAX_PACKET_ID ? 1 : id + 1
      this.#inUse[id] = 1
      this.#sentAt[id] = sentAtMs
      buf.writeUInt16BE(id, this.#idOffset)
      this.outstanding++
    } else {
      this.#qos0Sent++
    }
    if (this.#run.phase === 'measuring') this.#run.sent++
    this.#conn.socket.write(buf)
  }

  #onPacket(packet: Packet): void {
    const now = performance.now()
    const run = this.#run
    switch (packet.cmd) {
      case 'puback': {
        const id = packet.messageId ?? 0
        if (this.#inUse[id] !== 1) {
          run.error(`PUBACK for packet id ${id} not in flight`)
          return
        }
        this.#inUse[id] = 0
        this.outstanding--
        run.ack(now, this.#sentAt[id] ?? now)
        if (run.config.ratePerS === null && run.sending) this.send(now)
        return
      }
      case 'pubrec': {
        const id = packet.messageId ?? 0
        if (this.#inUse[id] !== 1) {
          run.error(`PUBREC for packet id ${id} not in flight`)
          return
        }
        this.#inUse[id] = 2
        this.outstanding--
        this.awaitingComp++
        const rel = Buffer.from(this.#pubrel)
        rel.writeUInt16BE(id, 2)
        this.#conn.socket.write(rel)
        run.ack(now, this.#sentAt[id] ?? now)
        if (run.config.ratePerS === null && run.sending) this.send(now)
        return
      }
      case 'pubcomp': {
        const id = packet.messageId ?? 0
        if (this.#inUse[id] === 2) {
          this.#inUse[id] = 0
          this.awaitingComp--
        }
        return
      }
      case 'pingresp': {
        const mark = this.#marks.shift()
        if (mark === undefined) return
        const released = mark.upTo - this.#qos0Covered
        this.#qos0Covered = mark.upTo
        run.ack(now, Number.NaN, released)
        if (run.config.ratePerS === null) this.#fillQos0()
        return
      }
      default:
        run.error(`unexpected ${packet.cmd} from the broker`)
    }
  }

  /** QoS 0 publishes not yet released by a PINGRESP. */
  get qos0Unreleased(): number {
    return this.#qos0Sent - this.#qos0Covered
  }

  close(): Promise<void> {
    return closeMqtt(this.#conn)
  }
}

const PINGREQ = generate({ cmd: 'pingreq' })

/** A QoS 0 publisher and a separate QoS 0 subscriber on a probe topic: live delivery latency. */
class Probe {
  readonly #run: Run
  readonly #config: ProbeConfig
  readonly #pub: MqttConn
  readonly #sub: MqttConn
  readonly samples = new Reservoir(100_000)
  sent = 0
  received = 0
  #seq = 0
  #timer: NodeJS.Timeout | null = null

  private constructor(run: Run, config: ProbeConfig, pub: MqttConn, sub: MqttConn) {
    this.#run = run
    this.#config = config
    this.#pub = pub
    this.#sub = sub
    sub.parser.on('packet', (packet: Packet) => {
      if (packet.cmd !== 'publish' || packet.topic !== config.topic) return
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload)
      if (payload.length < 12) return
      const sentAt = payload.readDoubleBE(0)
      const measured = payload.readUInt32BE(8) === 1
      if (!measured || this.#run.phase !== 'measuring') return
      this.received++
      this.samples.add(Math.round((performance.now() - sentAt) * 1000))
    })
  }

  static async open(run: Run, config: ProbeConfig, port: number, timeoutMs: number): Promise<Probe> {
    const prefix = run.config.clientIdPrefix
    const sub = await connectMqtt(port, `${prefix}-probe-sub`, timeoutMs)
    const subacked = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('probe: no SUBACK')), timeoutMs)
      sub.parser.on('packet', (packet: Packet) => {
        if (packet.cmd !== 'suback') return
        clearTimeout(timer)
        resolve()
      })
    })
    sub.socket.write(
      generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: config.topic, qos: 0 }] }),
    )
    await subacked
    const pub = await connectMqtt(port, `${prefix}-probe-pub`, timeoutMs)
    for (const c of [pub, sub]) c.socket.on('error', (err: Error) => run.error(`probe: ${err.message}`))
    return new Probe(run, config, pub, sub)
  }

  start(): void {
    const intervalMs = 1000 / this.#config.ratePerS
    this.#timer = setInterval(() => this.#publish(), intervalMs)
  }

  #publish(): void {
    if (!this.#run.sending || this.#pub.socket.destroyed) return
    const payload = Buffer.alloc(16)
    payload.writeDoubleBE(performance.now(), 0)
    const measured = this.#run.phase === 'measuring'
    payload.writeUInt32BE(measured ? 1 : 0, 8)
    payload.writeUInt32BE(this.#seq++ >>> 0, 12)
    if (measured) this.sent++
    this.#pub.socket.write(
      generate({ cmd: 'publish', topic: this.#config.topic, payload, qos: 0, dup: false, retain: false }),
    )
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer)
  }

  async close(): Promise<void> {
    await Promise.all([closeMqtt(this.#pub), closeMqtt(this.#sub)])
  }
}

/** Drives one run; the parent tells it when to go, measure and stop. */
class Generator {
  readonly #run: Run
  readonly #publishers: Publisher[] = []
  #probe: Probe | null = null
  #ticker: NodeJS.Timeout | null = null
  #eluStart: ReturnType<typeof performance.eventLoopUtilization> | null = null
  #cpuStart: NodeJS.CpuUsage | null = null
  #elu = 0
  #cpuMs = 0
  #stopped: Promise<LoadResult> | null = null

  /** Acks counted (measuring phase) and messages written so far. */
  progress(): { acked: number; sent: number } {
    return { acked: this.#run.acked, sent: this.#run.sent }
  }

  constructor(config: LoadConfig) {
    this.#run = new Run(config)
  }

  async connect(): Promise<void> {
    const { config } = this.#run
    if (config.window < 1 || config.window > 30_000)
      throw new Error(`window ${config.window} not in 1..30000`)
    const conns = await Promise.all(
      Array.from({ length: config.connections }, (_, i) =>
        connectMqtt(config.port, `${config.clientIdPrefix}-${i}`, config.connectTimeoutMs),
      ),
    )
    conns.forEach((conn, i) => {
      this.#publishers.push(new Publisher(this.#run, conn, i))
    })
    if (config.probe !== null) {
      this.#probe = await Probe.open(this.#run, config.probe, config.port, config.connectTimeoutMs)
    }
  }

  go(): void {
    const run = this.#run
    if (run.phase !== 'idle') return
    run.phase = 'warmup'
    this.#probe?.start()
    if (run.config.ratePerS === null) {
      for (const p of this.#publishers) p.fill()
    } else if (this.#publishers.length > 0) {
      this.#startOpenLoop(run.config.ratePerS)
    }
  }

  #startOpenLoop(ratePerS: number): void {
    const run = this.#run
    const publishers = this.#publishers
    const startMs = performance.now()
    const perMessageMs = 1000 / ratePerS
    let scheduled = 0
    this.#ticker = setInterval(() => {
      if (!run.sending) return
      const now = performance.now()
      const due = Math.floor((now - startMs) / perMessageMs)
      for (const p of publishers) if (!p.closed) p.socket.cork()
      for (; scheduled < due; scheduled++) {
        const p = publishers[scheduled % publishers.length]
        if (p === undefined || p.closed) continue
        if (p.outstanding >= run.config.window) {
          if (run.phase === 'measuring') run.deferred++
          continue
        }
        const intendedMs = startMs + scheduled * perMessageMs
        const lateMs = now - intendedMs
        if (run.phase === 'measuring') {
          run.lag.add(Math.round(lateMs * 1000))
          if (lateMs > run.lagMaxMs) run.lagMaxMs = lateMs
        }
        p.send(now)
      }
      for (const p of publishers) if (!p.closed) p.socket.uncork()
    }, OPEN_LOOP_TICK_MS)
  }

  measure(): void {
    const run = this.#run
    if (run.phase !== 'warmup') return
    run.phase = 'measuring'
    run.measureStartMs = performance.now()
    this.#eluStart = performance.eventLoopUtilization()
    this.#cpuStart = process.cpuUsage()
  }

  stop(): Promise<LoadResult> {
    this.#stopped ??= this.#stop()
    return this.#stopped
  }

  async #stop(): Promise<LoadResult> {
    const run = this.#run
    const wasMeasuring = run.phase === 'measuring'
    run.measureEndMs = performance.now()
    if (wasMeasuring && this.#eluStart !== null && this.#cpuStart !== null) {
      this.#elu = performance.eventLoopUtilization(this.#eluStart).utilization
      const cpu = process.cpuUsage(this.#cpuStart)
      this.#cpuMs = (cpu.user + cpu.system) / 1000
    }
    run.phase = 'stopped'
    if (this.#ticker !== null) clearInterval(this.#ticker)
    this.#probe?.stop()
    const deadline = performance.now() + run.config.drainMs
    while (performance.now() < deadline && !this.#publishers.every((p) => p.idle)) {
      await new Promise((r) => setTimeout(r, 10))
    }
    const unacked = this.#publishers.reduce(
      (n, p) => n + (p.closed ? 0 : p.outstanding + p.qos0Unreleased),
      0,
    )
    await Promise.all(this.#publishers.map((p) => p.close()))
    await this.#probe?.close()
    const probe = this.#probe
    const seconds = Math.floor((run.measureEndMs - run.measureStartMs) / 1000)
    return {
      connected: this.#publishers.length,
      measuredMs: wasMeasuring ? run.measureEndMs - run.measureStartMs : 0,
      acked: run.acked,
      sent: run.sent,
      samples: run.latency.taken(),
      sampled: run.latency.count,
      perSecond: Array.from(run.perSecond.subarray(0, Math.max(0, seconds))),
      elu: this.#elu,
      cpuMs: this.#cpuMs,
      deferred: run.deferred,
      sendLagP99Ms: run.config.ratePerS === null ? null : percentile(run.lag.taken(), 0.99) / 1000,
      sendLagMaxMs: run.config.ratePerS === null ? null : run.lagMaxMs,
      disconnects: run.disconnects,
      unackedAtEnd: unacked,
      errors: run.errors,
      probe:
        probe === null
          ? null
          : { sent: probe.sent, received: probe.received, samples: probe.samples.taken() },
    }
  }
}

/** Sends one message to the parent; `then` runs once it has been handed to the channel. */
function send(message: FromGenerator, then?: () => void): void {
  if (process.send === undefined || !process.connected) {
    then?.()
    return
  }
  process.send(message, undefined, {}, () => then?.())
}

/** The child-process side: one config, then go / measure / stop from the parent, bounded by maxSeconds. */
function serve(): void {
  let generator: Generator | null = null
  let hardStop: NodeJS.Timeout | null = null
  let finishing = false
  const leave = (): void => {
    if (process.connected) process.disconnect()
  }
  const finish = (): void => {
    if (generator === null || finishing) return
    finishing = true
    generator.stop().then(
      (result) => send({ type: 'result', result }, leave),
      (err: unknown) =>
        send({ type: 'failed', error: err instanceof Error ? err.message : String(err) }, leave),
    )
  }
  process.on('disconnect', () => {
    if (hardStop !== null) clearTimeout(hardStop)
    if (finishing) return
    // The parent is gone: nobody will read a result. Close the sockets and leave.
    setTimeout(() => process.exit(0), 3000).unref()
    generator?.stop().finally(() => process.exit(0))
  })
  process.on('message', (message: ToGenerator) => {
    switch (message.type) {
      case 'start': {
        if (generator !== null) return
        const created = new Generator(message.config)
        generator = created
        hardStop = setTimeout(finish, message.config.maxSeconds * 1000)
        hardStop.unref()
        created.connect().then(
          () => send({ type: 'ready' }),
          (err: unknown) => {
            finishing = true
            send({ type: 'failed', error: err instanceof Error ? err.message : String(err) }, leave)
          },
        )
        return
      }
      case 'go':
        generator?.go()
        return
      case 'measure':
        generator?.measure()
        return
      case 'progress':
        if (generator !== null) send({ type: 'progress', ...generator.progress() })
        return
      case 'stop':
        if (hardStop !== null) clearTimeout(hardStop)
        finish()
        return
    }
  })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) serve()
