// A trivial MQTT 3.1.1 server that stores nothing and answers at once:
// CONNACK, PUBACK (QoS 1), PUBREC then PUBCOMP (QoS 2), SUBACK, PINGRESP.
// Run against it, the load generator shows its own ceiling on this machine.
// Listens on 127.0.0.1 only; prints {"port": N} on stdout once listening and
// exits on SIGTERM/SIGINT or after --max-seconds.

import { createServer, type Socket } from 'node:net'
import { parseArgs } from 'node:util'
import { generate, type Packet, parser } from 'mqtt-packet'
import { LOOPBACK } from './mqtt-conn.ts'

const CONNACK = generate({ cmd: 'connack', returnCode: 0, sessionPresent: false })
const PINGRESP = generate({ cmd: 'pingresp' })

function withId(template: Buffer, id: number): Buffer {
  const out = Buffer.from(template)
  out.writeUInt16BE(id, 2)
  return out
}

const PUBACK = generate({ cmd: 'puback', messageId: 1 })
const PUBREC = generate({ cmd: 'pubrec', messageId: 1 })
const PUBCOMP = generate({ cmd: 'pubcomp', messageId: 1 })

function serveConnection(socket: Socket): void {
  socket.setNoDelay(true)
  const incoming = parser({ protocolVersion: 4 })
  incoming.on('packet', (packet: Packet) => {
    switch (packet.cmd) {
      case 'connect':
        socket.write(CONNACK)
        return
      case 'publish':
        if (packet.qos === 1) socket.write(withId(PUBACK, packet.messageId ?? 0))
        else if (packet.qos === 2) socket.write(withId(PUBREC, packet.messageId ?? 0))
        return
      case 'pubrel':
        socket.write(withId(PUBCOMP, packet.messageId ?? 0))
        return
      case 'subscribe':
        socket.write(
          generate({
            cmd: 'suback',
            messageId: packet.messageId ?? 0,
            granted: packet.subscriptions.map(() => 0),
          }),
        )
        return
      case 'pingreq':
        socket.write(PINGRESP)
        return
      case 'disconnect':
        socket.end()
        return
      default:
        return
    }
  })
  incoming.on('error', () => socket.destroy())
  socket.on('data', (chunk: Buffer) => {
    socket.cork()
    incoming.parse(chunk)
    socket.uncork()
  })
  socket.on('error', () => undefined)
}

const { values } = parseArgs({
  options: { port: { type: 'string', default: '0' }, 'max-seconds': { type: 'string', default: '3600' } },
})
const server = createServer(serveConnection)
server.listen(Number(values.port), LOOPBACK, () => {
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  process.stdout.write(`${JSON.stringify({ port })}\n`)
})
const stop = (): void => {
  server.close()
  process.exit(0)
}
setTimeout(stop, Number(values['max-seconds']) * 1000).unref()
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
