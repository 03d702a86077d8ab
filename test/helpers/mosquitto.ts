// A real Mosquitto (Debian's package) as the central broker of the MQTT sink
// tests: its own temp config on 127.0.0.1 and a free port, stoppable and
// startable again on the same port and persistence file (an uplink outage),
// and freezable with SIGSTOP (connected but silent). Only this module's own
// child is ever signalled, by its pid.

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connectAsync } from 'mqtt'
import { freePort } from './free-port.ts'
import { type Cleanup, Inbox } from './integration.ts'
import { tempDir } from './temp-dir.ts'
import type { TestCerts } from './test-certs.ts'

const READY_MS = 10_000

export class Mosquitto {
  readonly #dir: string
  readonly port: number
  readonly #removeDir: () => Promise<void>
  /** The TLS listener's port, when created with certificates. */
  tlsPort: number | null = null
  #child: ChildProcess | null = null
  #stderr = ''

  private constructor(dir: string, port: number, removeDir: () => Promise<void>) {
    this.#dir = dir
    this.port = port
    this.#removeDir = removeDir
  }

  /**
   * With `tls`, a second listener on `tlsPort` requires TLS and a client
   * certificate signed by the CA. With `maxPacketBytes`, the broker tells MQTT 5
   * clients its maximum packet size in the CONNACK (`max_packet_size`).
   */
  static async create(tls?: TestCerts, options: { maxPacketBytes?: number } = {}): Promise<Mosquitto> {
    const dir = await tempDir('tributary-mosquitto-')
    const broker = new Mosquitto(dir.path, await freePort(), dir.remove)
    const lines = [
      `listener ${broker.port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence true',
      `persistence_location ${dir.path}/`,
      'log_dest stderr',
      'log_type error',
      'log_type warning',
    ]
    if (options.maxPacketBytes !== undefined) lines.push(`max_packet_size ${options.maxPacketBytes}`)
    if (tls !== undefined) {
      broker.tlsPort = await freePort()
      lines.push(
        `listener ${broker.tlsPort} 127.0.0.1`,
        `cafile ${tls.ca}`,
        `certfile ${tls.serverCert}`,
        `keyfile ${tls.serverKey}`,
        'require_certificate true',
      )
    }
    // Started as root, Mosquitto would switch to the `mosquitto` user, which cannot write the temp dir.
    if (process.getuid?.() === 0) lines.push('user root')
    writeFileSync(join(dir.path, 'mosquitto.conf'), `${lines.join('\n')}\n`)
    return broker
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`
  }

  async start(): Promise<void> {
    const child = spawn('mosquitto', ['-c', join(this.#dir, 'mosquitto.conf')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    child.stderr?.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString()).slice(-4000)
    })
    this.#child = child
    const deadline = Date.now() + READY_MS
    for (;;) {
      try {
        const probe = await connectAsync(this.url, { reconnectPeriod: 0, connectTimeout: 1000 })
        await probe.endAsync(true)
        return
      } catch (err) {
        if (child.exitCode !== null || Date.now() > deadline) {
          throw new Error(`mosquitto did not start on ${this.port}: ${this.#stderr}`, { cause: err })
        }
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
  }

  /** SIGSTOP: the kernel still accepts connections, the broker never answers. */
  pause(): void {
    this.#child?.kill('SIGSTOP')
  }

  /** SIGCONT after pause(). */
  resume(): void {
    this.#child?.kill('SIGCONT')
  }

  /** SIGTERM (Mosquitto saves its persistence file), waits for the exit. */
  async stop(): Promise<void> {
    const child = this.#child
    this.#child = null
    if (child === null || child.exitCode !== null) return
    // A paused broker takes the SIGTERM only once it runs again.
    child.kill('SIGCONT')
    child.kill('SIGTERM')
    await once(child, 'exit')
  }

  async remove(): Promise<void> {
    await this.stop()
    await this.#removeDir()
  }
}

/**
 * A reader of `filter` on `broker` with a persistent session that reconnects
 * by itself, so it misses nothing while the broker is down; closed by `cleanup`.
 */
export async function centralReader(cleanup: Cleanup, broker: Mosquitto, filter: string): Promise<Inbox> {
  const client = await cleanup.mqtt(broker.url, {
    protocolVersion: 5,
    clientId: 'central-reader',
    clean: false,
    properties: { sessionExpiryInterval: 600 },
    reconnectPeriod: 100,
  })
  const inbox = new Inbox(client)
  await client.subscribeAsync(filter, { qos: 1 })
  return inbox
}
