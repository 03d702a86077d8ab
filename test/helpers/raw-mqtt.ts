// A raw MQTT connection for tests that need exact control of the packets a
// client sends (packet ids, DUP flags, retransmissions, malformed bytes):
// mqtt-packet (aedes's own codec) over a plain net.Socket to 127.0.0.1.

import { connect as netConnect, type Socket } from 'node:net'
import { generate, type IConnackPacket, type Packet, type PacketCmd, parser } from 'mqtt-packet'
import { WAIT_MS, withTimeout } from './integration.ts'

type PacketOf<C extends PacketCmd> = Extract<Packet, { cmd: C }>

interface Waiter {
  readonly cmd: PacketCmd
  readonly resolve: (packet: Packet) => void
  readonly reject: (err: Error) => void
}

export interface RawConnectOptions {
  readonly clientId: string
  readonly clean?: boolean
  readonly protocolVersion?: 4 | 5
}

export class RawMqtt {
  readonly socket: Socket
  readonly protocolVersion: 4 | 5
  /** Resolves when the socket has closed (for any reason). */
  readonly closed: Promise<void>
  readonly #received: Packet[] = []
  #waiters: Waiter[] = []
  #isClosed = false

  private constructor(socket: Socket, protocolVersion: 4 | 5) {
    this.socket = socket
    this.protocolVersion = protocolVersion
    const incoming = parser({ protocolVersion })
    incoming.on('packet', (packet: Packet) => this.#deliver(packet))
    incoming.on('error', (err: Error) => socket.destroy(err))
    socket.on('data', (chunk: Buffer) => incoming.parse(chunk))
    // The server closing the connection is what several tests expect; errors only matter as a close.
    socket.on('error', () => undefined)
    this.closed = new Promise<void>((resolve) => {
      socket.once('close', () => {
        this.#isClosed = true
        for (const waiter of this.#waiters.splice(0))
          waiter.reject(new Error(`connection closed before ${waiter.cmd}`))
        resolve()
      })
    })
  }

  /** Opens a TCP connection and sends nothing yet. */
  static async open(port: number, protocolVersion: 4 | 5 = 4): Promise<RawMqtt> {
    const socket = netConnect({ host: '127.0.0.1', port })
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve)
        socket.once('error', reject)
      }),
      WAIT_MS,
      `TCP connect to 127.0.0.1:${port}`,
    )
    return new RawMqtt(socket, protocolVersion)
  }

  /** Opens a connection, sends CONNECT and returns it with the CONNACK. */
  static async connect(
    port: number,
    options: RawConnectOptions,
  ): Promise<{ conn: RawMqtt; connack: IConnackPacket }> {
    const protocolVersion = options.protocolVersion ?? 4
    const conn = await RawMqtt.open(port, protocolVersion)
    conn.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion,
      clientId: options.clientId,
      clean: options.clean ?? true,
      keepalive: 60,
    })
    const connack = await conn.next('connack')
    return { conn, connack }
  }

  get isClosed(): boolean {
    return this.#isClosed
  }

  send(packet: Packet): void {
    this.socket.write(generate(packet, { protocolVersion: this.protocolVersion }))
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes)
  }

  /** The next packet of this kind (received earlier and not yet taken, or still to come). */
  next<C extends PacketCmd>(cmd: C, timeoutMs = WAIT_MS): Promise<PacketOf<C>> {
    const index = this.#received.findIndex((p) => p.cmd === cmd)
    if (index >= 0) {
      const [packet] = this.#received.splice(index, 1)
      return Promise.resolve(packet as PacketOf<C>)
    }
    if (this.#isClosed) return Promise.reject(new Error(`connection closed before ${cmd}`))
    return new Promise<PacketOf<C>>((resolve, reject) => {
      const waiter: Waiter = {
        cmd,
        resolve: (p) => {
          clearTimeout(timer)
          resolve(p as PacketOf<C>)
        },
        reject: (err) => {
          clearTimeout(timer)
          reject(err)
        },
      }
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter)
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${cmd} from the broker`))
      }, timeoutMs)
      this.#waiters.push(waiter)
    })
  }

  /** Packets received and not taken by next(). */
  get unread(): readonly Packet[] {
    return this.#received
  }

  /** Waits until the server has closed the connection. */
  waitClosed(timeoutMs = WAIT_MS): Promise<void> {
    return withTimeout(this.closed, timeoutMs, 'the broker to close the connection')
  }

  /** Closes from this side without DISCONNECT (as a crashed device would). */
  destroy(): Promise<void> {
    this.socket.destroy()
    return this.closed
  }

  #deliver(packet: Packet): void {
    const index = this.#waiters.findIndex((w) => w.cmd === packet.cmd)
    if (index < 0) {
      this.#received.push(packet)
      return
    }
    const [waiter] = this.#waiters.splice(index, 1)
    waiter?.resolve(packet)
  }
}
