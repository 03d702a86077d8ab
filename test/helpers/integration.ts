// What the integration tests share beyond node.ts and child.ts: a cleanup
// stack (nodes, clients, temp dirs, children, undone in reverse order after
// every test), bounded waits, and reading a whole partition back.

import {
  connect,
  connectAsync,
  type IClientOptions,
  type IConnackPacket,
  type IPublishPacket,
  type MqttClient,
} from 'mqtt'
import type { LogStore } from '../../src/log/log-store.ts'
import type { StoredRecord } from '../../src/log/record.ts'
import { type NodeOptions, type RunningNode, startNode } from './node.ts'
import { tempDir } from './temp-dir.ts'

export const WAIT_MS = 15_000

/** Rejects with `label` when `promise` has not settled within `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, label: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Polls `condition` every `intervalMs` until it holds; fails after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean,
  label: string,
  { timeoutMs = WAIT_MS, intervalMs = 20 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${label}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** Every record of one of the node's own partitions, from its first offset (bounded to 100 reads). */
export function readAll(store: LogStore, stream: string, partition = 0): StoredRecord[] {
  const records: StoredRecord[] = []
  let from = 0
  for (let i = 0; i < 100; i++) {
    const result = store.read({ stream, origin: store.origin, partition }, from)
    if (result.records.length === 0) return records
    records.push(...result.records)
    from = result.nextOffset
  }
  throw new Error(`${stream}/${partition}: more than 100 reads`)
}

/** Streams present in the store (a stream name per partition row, deduplicated). */
export function streamNames(store: LogStore): string[] {
  return [...new Set(store.partitions().map((p) => p.stream))]
}

/**
 * Things to undo after a test, undone last-in first-out; every step runs even
 * when an earlier one fails, and the failures are thrown together.
 */
export class Cleanup {
  readonly #steps: Array<{ label: string; run: () => unknown }> = []

  defer(label: string, run: () => unknown): void {
    this.#steps.push({ label, run })
  }

  async run(): Promise<void> {
    const errors: unknown[] = []
    for (let step = this.#steps.pop(); step !== undefined; step = this.#steps.pop()) {
      try {
        await withTimeout(Promise.resolve().then(step.run), WAIT_MS, `cleanup: ${step.label}`)
      } catch (err) {
        errors.push(err)
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed')
  }

  /** A temp dir removed after the test. */
  async dir(prefix = 'tributary-it-'): Promise<string> {
    const dir = await tempDir(prefix)
    this.defer(`remove ${dir.path}`, dir.remove)
    return dir.path
  }

  /** An in-process node, stopped after the test (stopping twice is harmless). */
  async node(options: NodeOptions = {}): Promise<RunningNode> {
    const dataDir = options.dataDir ?? (await this.dir())
    const running = await startNode({ ...options, dataDir })
    this.defer(`stop node on ${dataDir}`, running.stop)
    return running
  }

  /** An mqtt.js client that does not reconnect by itself, force-closed after the test. */
  async mqtt(url: string, options: IClientOptions = {}): Promise<MqttClient> {
    const client = await connectAsync(url, { reconnectPeriod: 0, connectTimeout: WAIT_MS, ...options })
    this.defer(`close mqtt client ${client.options.clientId}`, () => client.endAsync(true))
    return client
  }

  /**
   * An mqtt.js client whose Inbox listens before CONNECT is sent: a persistent
   * session's queued messages may arrive in the same read as the CONNACK, before
   * connectAsync's promise would let a listener be attached.
   */
  async mqttWithInbox(
    url: string,
    options: IClientOptions = {},
  ): Promise<{ client: MqttClient; inbox: Inbox; connack: IConnackPacket }> {
    const client = connect(url, { reconnectPeriod: 0, connectTimeout: WAIT_MS, ...options })
    this.defer(`close mqtt client ${client.options.clientId}`, () => client.endAsync(true))
    const inbox = new Inbox(client)
    const connected = new Promise<IConnackPacket>((resolve, reject) => {
      client.once('connect', resolve)
      client.once('error', reject)
    })
    const connack = await withTimeout(connected, WAIT_MS, 'mqtt.js connect')
    return { client, inbox, connack }
  }
}

export interface Message {
  readonly topic: string
  readonly payload: Buffer
  readonly packet: IPublishPacket
}

/** Collects an mqtt.js client's messages from the moment it is made; waits on arrivals, not on time. */
export class Inbox {
  readonly messages: Message[] = []
  #wake: Array<() => void> = []

  constructor(client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      this.messages.push({ topic, payload, packet })
      for (const wake of this.#wake.splice(0)) wake()
    })
  }

  /** Resolves with the first `count` messages once that many have arrived. */
  async take(count: number, timeoutMs = WAIT_MS): Promise<Message[]> {
    await this.until((messages) => messages.length >= count, `${count} messages`, timeoutMs)
    return this.messages.slice(0, count)
  }

  /** Resolves once `condition` holds for the messages received so far. */
  async until(
    condition: (messages: readonly Message[]) => boolean,
    label: string,
    timeoutMs = WAIT_MS,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!condition(this.messages)) {
      const left = deadline - Date.now()
      if (left <= 0)
        throw new Error(`timed out waiting for ${label}: ${this.messages.length} messages arrived`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#wake.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }
}
