// The cluster benchmark's hands inside one network namespace
// (test/bench/cluster.ts starts it with `ip netns exec`): the nodes' MQTT and
// admin API listen on the namespace's own 127.0.0.1, which the benchmark
// process in the root namespace cannot reach. Over IPC it takes requests and
// answers each once:
// - `get`: one GET of the admin API, answered with status and JSON body;
// - `probe`: a QoS 1 publisher on its own connection, `ratePerS` messages of
//   `p<seq>` a second, keeping when each PUBACK came; answered at `end`;
// - `watch`: polls the records API of one partition every `intervalMs` and
//   keeps when each `p<seq>` record was first readable; answered at `end`
//   (or once `stopAfter` records were seen);
// - `publish-one`: connects (retrying while the broker is not up yet) and
//   publishes one QoS 1 message, answered with the PUBACK's time.
// Times are CLOCK_MONOTONIC (process.hrtime) in ms, the same clock in every
// process on the machine, so a PUBACK seen here and a record seen by the
// agent of another namespace can be subtracted. Every operation is bounded
// by its own `maxSeconds`, and the agent exits when the benchmark goes.

import { generate, type Packet } from 'mqtt-packet'
import { closeMqtt, connectMqtt, type MqttConn } from './mqtt-conn.ts'

export type ToAgent =
  | { readonly type: 'get'; readonly id: number; readonly url: string }
  | {
      readonly type: 'probe'
      readonly id: number
      readonly port: number
      readonly topic: string
      readonly ratePerS: number
      readonly maxSeconds: number
    }
  | {
      readonly type: 'watch'
      readonly id: number
      /** The records URL without `offset`. */
      readonly url: string
      readonly intervalMs: number
      readonly maxSeconds: number
      /** End by itself once this many records were seen (null: only at `end`). */
      readonly stopAfter: number | null
    }
  | {
      readonly type: 'publish-one'
      readonly id: number
      readonly port: number
      readonly topic: string
      readonly maxSeconds: number
    }
  | { readonly type: 'end'; readonly id: number }

export type FromAgent =
  | { readonly type: 'get'; readonly id: number; readonly status: number; readonly body: unknown }
  | {
      readonly type: 'probe'
      readonly id: number
      readonly sent: number
      /** [seq, time the PUBLISH was written ms, PUBACK time ms] */
      readonly acks: ReadonlyArray<readonly [number, number, number]>
      readonly error: string | null
    }
  | {
      readonly type: 'watch'
      readonly id: number
      /** [seq, first readable ms] */
      readonly seen: ReadonlyArray<readonly [number, number]>
      readonly polls: number
      readonly error: string | null
    }
  | {
      readonly type: 'publish-one'
      readonly id: number
      readonly ackMs: number | null
      readonly error: string | null
    }

const MAX_PACKET_ID = 65_535
const CONNECT_RETRY_MS = 20

/** CLOCK_MONOTONIC in ms, comparable between processes. */
export function monoMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000
}

function reply(message: FromAgent): void {
  if (process.send !== undefined && process.connected) process.send(message)
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Ends of the long-running operations, by request id. */
const enders = new Map<number, () => void>()

async function get(id: number, url: string): Promise<void> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000) })
    const text = await res.text()
    let body: unknown = text
    try {
      body = JSON.parse(text)
    } catch {
      // Not JSON: the text as it is.
    }
    reply({ type: 'get', id, status: res.status, body })
  } catch (err) {
    reply({ type: 'get', id, status: 0, body: errorText(err) })
  }
}

function publishPacket(topic: string, seq: number): Buffer {
  return generate({
    cmd: 'publish',
    topic,
    payload: Buffer.from(`p${seq}`),
    qos: 1,
    messageId: (seq % MAX_PACKET_ID) + 1,
    retain: false,
    dup: false,
  })
}

async function probe(m: Extract<ToAgent, { type: 'probe' }>): Promise<void> {
  const acks: Array<readonly [number, number, number]> = []
  /** packet id -> [seq, written at] */
  const inFlight = new Map<number, readonly [number, number]>()
  let sent = 0
  let error: string | null = null
  let conn: MqttConn | null = null
  let timer: NodeJS.Timeout | null = null
  const done = new Promise<void>((resolve) => {
    enders.set(m.id, resolve)
    setTimeout(resolve, m.maxSeconds * 1000).unref()
  })
  try {
    conn = await connectMqtt(m.port, `bench-lag-probe-${m.id}`, 10_000)
    const c = conn
    c.parser.on('packet', (packet: Packet) => {
      if (packet.cmd !== 'puback') return
      const sentAt = inFlight.get(packet.messageId ?? 0)
      if (sentAt === undefined) return
      inFlight.delete(packet.messageId ?? 0)
      acks.push([sentAt[0], sentAt[1], monoMs()])
    })
    c.socket.on('error', (err: Error) => {
      error ??= err.message
    })
    timer = setInterval(() => {
      if (c.socket.destroyed || inFlight.size >= MAX_PACKET_ID - 1) return
      const seq = sent++
      inFlight.set((seq % MAX_PACKET_ID) + 1, [seq, monoMs()])
      c.socket.write(publishPacket(m.topic, seq))
    }, 1000 / m.ratePerS)
    await done
  } catch (err) {
    error ??= errorText(err)
  } finally {
    if (timer !== null) clearInterval(timer)
    // The last PUBACKs: a moment for them to come back.
    await sleep(500)
    if (conn !== null) await closeMqtt(conn)
    enders.delete(m.id)
  }
  reply({ type: 'probe', id: m.id, sent, acks, error })
}

async function watch(m: Extract<ToAgent, { type: 'watch' }>): Promise<void> {
  const seen: Array<readonly [number, number]> = []
  let stopped = false
  let polls = 0
  let error: string | null = null
  enders.set(m.id, () => {
    stopped = true
  })
  const deadline = monoMs() + m.maxSeconds * 1000
  let offset = 0
  while (!stopped && monoMs() < deadline) {
    polls++
    try {
      const res = await fetch(`${m.url}&offset=${offset}`, { signal: AbortSignal.timeout(5000) })
      const at = monoMs()
      if (res.status === 200) {
        const body = (await res.json()) as { records: Array<{ payload: string }>; nextFetchOffset: number }
        for (const record of body.records) {
          const seq = /^p(\d+)$/.exec(record.payload)?.[1]
          if (seq !== undefined) seen.push([Number(seq), at])
        }
        offset = body.nextFetchOffset
        if (m.stopAfter !== null && seen.length >= m.stopAfter) break
        if (body.records.length > 0) continue
      } else {
        // 404 before the copy exists, 416 at its end: nothing to read yet.
        await res.arrayBuffer()
      }
    } catch (err) {
      error = errorText(err)
    }
    await sleep(m.intervalMs)
  }
  enders.delete(m.id)
  reply({ type: 'watch', id: m.id, seen, polls, error })
}

async function publishOne(m: Extract<ToAgent, { type: 'publish-one' }>): Promise<void> {
  const deadline = monoMs() + m.maxSeconds * 1000
  let lastError = 'no attempt'
  while (monoMs() < deadline) {
    let conn: MqttConn | null = null
    try {
      conn = await connectMqtt(m.port, `bench-first-${m.id}`, 5000)
      const c = conn
      const acked = new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no PUBACK within 10 s')), 10_000)
        c.parser.on('packet', (packet: Packet) => {
          if (packet.cmd !== 'puback') return
          clearTimeout(timer)
          resolve(monoMs())
        })
      })
      c.socket.write(publishPacket(m.topic, 0))
      const ackMs = await acked
      await closeMqtt(c)
      reply({ type: 'publish-one', id: m.id, ackMs, error: null })
      return
    } catch (err) {
      lastError = errorText(err)
      if (conn !== null) await closeMqtt(conn)
      await sleep(CONNECT_RETRY_MS)
    }
  }
  reply({ type: 'publish-one', id: m.id, ackMs: null, error: lastError })
}

process.on('message', (m: ToAgent) => {
  // Each operation answers for itself, errors included; none throws.
  switch (m.type) {
    case 'get':
      void get(m.id, m.url)
      return
    case 'probe':
      void probe(m)
      return
    case 'watch':
      void watch(m)
      return
    case 'publish-one':
      void publishOne(m)
      return
    case 'end':
      enders.get(m.id)?.()
      return
  }
})
// The benchmark is gone: nobody reads an answer any more.
process.on('disconnect', () => process.exit(0))
