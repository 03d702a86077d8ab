// The PeerTransport conformance suite: every implementation runs it. A
// transport gives two peers a byte stream both ways, refuses nothing it
// should accept, fails fast on a closed port, and close() ends everything.
// Only 127.0.0.1 is used.

import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { isTributaryError } from '../../src/errors.ts'
import { MutualTlsTransport } from '../../src/replication/mtls-transport.ts'
import { type PeerConnection, type PeerTransport, TlsPskTransport } from '../../src/replication/transport.ts'
import { makeClusterCerts } from '../helpers/test-certs.ts'

interface Factory {
  readonly name: string
  /** Two transports of the same cluster, which must accept each other. */
  readonly pair: () => [PeerTransport, PeerTransport]
}

const secret = Buffer.alloc(32, 0x5a)
const certDir = mkdtempSync(join(tmpdir(), 'tributary-conformance-'))
const certs = makeClusterCerts(certDir, 'conformance', ['a', 'b'])
afterAll(() => rmSync(certDir, { recursive: true, force: true }))
const mutual = (node: string): MutualTlsTransport => {
  const tls = certs.tls(node)
  const credentials = {
    cert: readFileSync(tls.certFile),
    key: readFileSync(tls.keyFile),
    ca: readFileSync(tls.caFile),
  }
  return new MutualTlsTransport({ cluster: 'conformance', credentials })
}
const implementations: Factory[] = [
  {
    name: 'TlsPskTransport',
    pair: () => [
      new TlsPskTransport({ cluster: 'conformance', secret }),
      new TlsPskTransport({ cluster: 'conformance', secret }),
    ],
  },
  { name: 'MutualTlsTransport', pair: () => [mutual('a'), mutual('b')] },
]

const open: PeerTransport[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()))
})

function made(factory: Factory): [PeerTransport, PeerTransport] {
  const pair = factory.pair()
  open.push(...pair)
  return pair
}

/** Reads from `socket` until `bytes` have arrived. */
async function readBytes(socket: Duplex, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let got = 0
  for await (const chunk of socket) {
    chunks.push(chunk as Buffer)
    got += (chunk as Buffer).length
    if (got >= bytes) break
  }
  return Buffer.concat(chunks)
}

async function listenAndConnect(
  server: PeerTransport,
  client: PeerTransport,
): Promise<{ inbound: PeerConnection; outbound: PeerConnection; port: number }> {
  let onPeer!: (conn: PeerConnection) => void
  const accepted = new Promise<PeerConnection>((resolve) => {
    onPeer = resolve
  })
  const { port } = await server.listen('127.0.0.1', 0, (conn) => onPeer(conn))
  const outbound = await client.connect('127.0.0.1', port)
  const inbound = await accepted
  return { inbound, outbound, port }
}

for (const factory of implementations) {
  describe(`PeerTransport: ${factory.name}`, () => {
    it('listens on a free port and carries bytes both ways', async () => {
      const [a, b] = made(factory)
      const { inbound, outbound, port } = await listenAndConnect(a, b)
      expect(port).toBeGreaterThan(0)
      expect(inbound.remoteAddress).toBe('127.0.0.1')
      expect(outbound.remoteAddress).toBe('127.0.0.1')
      expect(outbound.remotePort).toBe(port)

      // More than one TLS record (16 KiB) each way.
      const toServer = Buffer.alloc(100_000, 1)
      const toClient = Buffer.alloc(70_000, 2)
      const serverRead = readBytes(inbound.socket, toServer.length)
      const clientRead = readBytes(outbound.socket, toClient.length)
      outbound.socket.write(toServer)
      inbound.socket.write(toClient)
      expect((await serverRead).equals(toServer)).toBe(true)
      expect((await clientRead).equals(toClient)).toBe(true)
    })

    it('rejects a connect to a closed port quickly with TRIB_PEER_UNREACHABLE', async () => {
      const [, b] = made(factory)
      const probe = createServer()
      probe.listen(0, '127.0.0.1')
      await once(probe, 'listening')
      const address = probe.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      await new Promise((resolve) => probe.close(resolve))
      const started = Date.now()
      const err = await b.connect('127.0.0.1', port).catch((e: unknown) => e)
      expect(isTributaryError(err, 'TRIB_PEER_UNREACHABLE')).toBe(true)
      expect((err as Error).message).toContain(`127.0.0.1:${port}`)
      expect((err as { retriable: boolean }).retriable).toBe(true)
      expect(Date.now() - started).toBeLessThan(2_000)
    })

    it('rejects with the signal reason when the connect is aborted', async () => {
      const [a, b] = made(factory)
      const { port } = await a.listen('127.0.0.1', 0, () => {})
      const controller = new AbortController()
      controller.abort(new Error('stop'))
      await expect(b.connect('127.0.0.1', port, controller.signal)).rejects.toThrow('stop')
    })

    it('close() of the listening side destroys its sockets, stops listening and is idempotent', async () => {
      const [a, b] = made(factory)
      const { inbound, outbound, port } = await listenAndConnect(a, b)
      const inboundClosed = once(inbound.socket, 'close')
      const outboundClosed = once(outbound.socket, 'close')
      await a.close()
      await inboundClosed
      await outboundClosed
      const err = await b.connect('127.0.0.1', port).catch((e: unknown) => e)
      expect(isTributaryError(err, 'TRIB_PEER_UNREACHABLE')).toBe(true)
      await a.close()
    })

    it('close() of the connecting side destroys its sockets', async () => {
      const [a, b] = made(factory)
      const { inbound, outbound } = await listenAndConnect(a, b)
      const inboundClosed = once(inbound.socket, 'close')
      const outboundClosed = once(outbound.socket, 'close')
      await b.close()
      await outboundClosed
      await inboundClosed
    })

    it('refuses listen and connect after close()', async () => {
      const [a] = made(factory)
      await a.close()
      await expect(a.listen('127.0.0.1', 0, () => {})).rejects.toThrow()
      await expect(a.connect('127.0.0.1', 1)).rejects.toThrow()
    })
  })
}
