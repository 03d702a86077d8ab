// The benchmark's one way to open an MQTT 3.1.1 connection: a plain
// net.Socket to 127.0.0.1, mqtt-packet's generate/parser, CONNECT and wait for
// CONNACK within a deadline. Used by the load generator, the readiness and
// restart probes and the peers' start-up checks. Nothing here reconnects.

import { connect as netConnect, type Socket } from 'node:net'
import { generate, type Packet, type Parser, parser } from 'mqtt-packet'

export const LOOPBACK = '127.0.0.1'

export interface MqttConn {
  readonly socket: Socket
  readonly parser: Parser
}

/**
 * Connects, sends CONNECT (clean session, no keep-alive) and resolves once a
 * successful CONNACK arrived. Packets after the CONNACK go to the parser's
 * 'packet' listeners the caller adds; the socket is destroyed on any failure.
 */
export function connectMqtt(port: number, clientId: string, timeoutMs: number): Promise<MqttConn> {
  return new Promise<MqttConn>((resolve, reject) => {
    const socket = netConnect({ host: LOOPBACK, port })
    socket.setNoDelay(true)
    const incoming = parser({ protocolVersion: 4 })
    let settled = false
    const fail = (err: Error): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      reject(err)
    }
    const timer = setTimeout(() => fail(new Error(`no CONNACK within ${timeoutMs} ms`)), timeoutMs)
    const onPacket = (packet: Packet): void => {
      if (settled) return
      if (packet.cmd !== 'connack') {
        fail(new Error(`expected CONNACK, got ${packet.cmd}`))
        return
      }
      if (packet.returnCode !== 0 && packet.returnCode !== undefined) {
        fail(new Error(`CONNACK refused (return code ${packet.returnCode})`))
        return
      }
      settled = true
      clearTimeout(timer)
      incoming.removeListener('packet', onPacket)
      socket.removeListener('error', fail)
      socket.removeListener('close', onEarlyClose)
      resolve({ socket, parser: incoming })
    }
    const onEarlyClose = (): void => fail(new Error('connection closed before CONNACK'))
    incoming.on('packet', onPacket)
    incoming.on('error', (err: Error) => socket.destroy(err))
    socket.on('data', (chunk: Buffer) => incoming.parse(chunk))
    socket.on('error', fail)
    socket.on('close', onEarlyClose)
    socket.once('connect', () => {
      socket.write(
        generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clientId,
          clean: true,
          keepalive: 0,
        }),
      )
    })
  })
}

/** Sends DISCONNECT and ends the socket; destroys it if it has not closed within `timeoutMs`. */
export function closeMqtt(conn: MqttConn, timeoutMs = 2000): Promise<void> {
  const { socket } = conn
  if (socket.destroyed) return Promise.resolve()
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      socket.destroy()
      resolve()
    }, timeoutMs)
    socket.once('close', () => {
      clearTimeout(timer)
      resolve()
    })
    socket.on('error', () => undefined)
    if (socket.writable) socket.end(generate({ cmd: 'disconnect' }))
    else socket.destroy()
  })
}

/**
 * Tries to connect every `intervalMs` until a CONNACK arrives or `timeoutMs`
 * passes; resolves with the time (performance.now()) the CONNACK was seen.
 */
export async function waitForConnack(
  port: number,
  clientId: string,
  timeoutMs: number,
  intervalMs = 5,
): Promise<number> {
  const deadline = performance.now() + timeoutMs
  let lastError = 'no attempt'
  while (performance.now() < deadline) {
    try {
      const conn = await connectMqtt(
        port,
        clientId,
        Math.max(1, Math.min(5000, deadline - performance.now())),
      )
      const at = performance.now()
      await closeMqtt(conn)
      return at
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err)
      await new Promise((r) => setTimeout(r, intervalMs))
    }
  }
  throw new Error(`no MQTT CONNACK on 127.0.0.1:${port} within ${timeoutMs} ms (${lastError})`)
}
