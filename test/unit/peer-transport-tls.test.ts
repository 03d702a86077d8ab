// TlsPskTransport's own promises, beyond the PeerTransport conformance suite:
// the link is TLS 1.3 with a PSK suite and an ephemeral key exchange; a peer
// with the wrong secret, cluster name or protocol version is refused on both
// sides, with the address on the listening side; a client that never
// completes a handshake is cut off (a drop, not a refusal); unauthenticated
// connections are bounded.
// Sockets on 127.0.0.1 only.

import { once } from 'node:events'
import { connect as netConnect, type Socket } from 'node:net'
import { type TLSSocket, connect as tlsConnect } from 'node:tls'
import { afterEach, describe, expect, it } from 'vitest'
import { isTributaryError, TributaryError } from '../../src/errors.ts'
import {
  derivePsk,
  type PeerConnection,
  type PeerDrop,
  type PeerRefusal,
  TLS_CIPHERSUITES,
  TlsPskTransport,
  type TlsPskTransportOptions,
} from '../../src/replication/transport.ts'

const secret = Buffer.alloc(32, 0x11)
const otherSecret = Buffer.alloc(32, 0x22)

const open: TlsPskTransport[] = []
const sockets: Socket[] = []
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy()
  await Promise.all(open.splice(0).map((t) => t.close()))
})

function transport(options: Partial<TlsPskTransportOptions> = {}): TlsPskTransport {
  const t = new TlsPskTransport({ cluster: 'greenhouse', secret, ...options })
  open.push(t)
  return t
}

/** A listening transport that records its peers and refusals. */
async function listening(options: Partial<TlsPskTransportOptions> = {}) {
  const peers: PeerConnection[] = []
  const refusals: PeerRefusal[] = []
  const drops: PeerDrop[] = []
  const waiters: Array<() => void> = []
  const notify = (): void => {
    for (const w of waiters.splice(0)) w()
  }
  const server = transport({
    ...options,
    onRefused: (info) => {
      refusals.push(info)
      notify()
    },
    onDropped: (info) => {
      drops.push(info)
      notify()
    },
  })
  const { port } = await server.listen('127.0.0.1', 0, (conn) => {
    peers.push(conn)
    notify()
  })
  const until = async (check: () => boolean): Promise<void> => {
    while (!check()) await new Promise<void>((resolve) => waiters.push(resolve))
  }
  return { server, port, peers, refusals, drops, until }
}

async function refusedConnect(client: TlsPskTransport, port: number): Promise<TributaryError> {
  const err = await client.connect('127.0.0.1', port).catch((e: unknown) => e)
  if (!(err instanceof TributaryError)) throw new Error(`expected a TributaryError, got ${String(err)}`)
  return err
}

describe('TlsPskTransport', () => {
  it('negotiates TLS 1.3 with a PSK suite and an ephemeral key exchange', async () => {
    const { port, peers, until } = await listening()
    const conn = await transport().connect('127.0.0.1', port)
    await until(() => peers.length === 1)
    for (const side of [conn.socket, peers[0]?.socket] as TLSSocket[]) {
      expect(side.getProtocol()).toBe('TLSv1.3')
      expect(TLS_CIPHERSUITES.split(':')).toContain(side.getCipher().name)
      expect(side.alpnProtocol).toBe('tributary/1')
      // No certificate on either side: the PSK alone authenticated the handshake.
      expect(side.getPeerCertificate()).toEqual({})
    }
    // psk_dhe_ke: the client saw the server's ephemeral share (forward secrecy).
    expect((conn.socket as TLSSocket).getEphemeralKeyInfo()).toHaveProperty('name')
  })

  it('refuses a peer with another secret on both sides', async () => {
    const { port, peers, refusals, until } = await listening()
    const err = await refusedConnect(transport({ secret: otherSecret }), port)
    expect(err.code).toBe('TRIB_PEER_REFUSED')
    expect(err.retriable).toBe(true)
    expect(err.message).toContain(`127.0.0.1:${port}`)
    expect(err.message).toContain('another cluster secret')
    await until(() => refusals.length === 1)
    expect(refusals[0]).toMatchObject({ address: '127.0.0.1', kind: 'wrong-secret' })
    expect(peers).toEqual([])
    // Neither side's secret nor key appears in what was reported.
    const reported = `${err.message} ${JSON.stringify(refusals)}`
    for (const s of [secret, otherSecret]) {
      for (const bytes of [s, derivePsk(s, 'greenhouse')]) {
        expect(reported).not.toContain(bytes.toString('hex'))
        expect(reported).not.toContain(bytes.toString('base64'))
      }
    }
  })

  it('refuses a peer of another cluster (same secret) on both sides', async () => {
    const { port, peers, refusals, until } = await listening()
    const err = await refusedConnect(transport({ cluster: 'orchard' }), port)
    expect(err.code).toBe('TRIB_PEER_REFUSED')
    expect(err.message).toContain('cluster name')
    await until(() => refusals.length === 1)
    expect(refusals[0]).toMatchObject({ address: '127.0.0.1', kind: 'wrong-cluster' })
    expect(refusals[0]?.reason).toContain('"orchard"')
    expect(peers).toEqual([])
  })

  it('derives different keys for different clusters from one secret', () => {
    expect(derivePsk(secret, 'a').equals(derivePsk(secret, 'b'))).toBe(false)
    expect(derivePsk(secret, 'a').equals(derivePsk(secret, 'a'))).toBe(true)
    expect(derivePsk(secret, 'a').equals(secret)).toBe(false)
  })

  it('refuses a peer of another protocol version on both sides', async () => {
    const { port, peers, refusals, until } = await listening()
    const err = await refusedConnect(transport({ protocol: 'tributary/2' }), port)
    expect(err.code).toBe('TRIB_PEER_REFUSED')
    expect(err.message).toContain('protocol version')
    await until(() => refusals.length === 1)
    expect(refusals[0]).toMatchObject({ address: '127.0.0.1', kind: 'protocol-version' })
    expect(refusals[0]?.reason).toContain('tributary/2')
    expect(peers).toEqual([])
  })

  it('refuses a client with the right key that offers no protocol version', async () => {
    const { port, peers, refusals, until } = await listening()
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      minVersion: 'TLSv1.3',
      ciphers: TLS_CIPHERSUITES,
      pskCallback: () => ({ identity: 'greenhouse', psk: derivePsk(secret, 'greenhouse') }),
      checkServerIdentity: () => undefined,
    })
    sockets.push(socket)
    socket.on('error', () => {})
    await once(socket, 'close')
    await until(() => refusals.length === 1)
    expect(refusals[0]).toMatchObject({ address: '127.0.0.1', kind: 'protocol-version' })
    expect(peers).toEqual([])
  })

  it('cuts off and reports a plain TCP client that sends garbage', async () => {
    const { port, refusals, until } = await listening({ handshakeTimeoutMs: 500 })
    const socket = netConnect(port, '127.0.0.1')
    sockets.push(socket)
    socket.on('error', () => {})
    await once(socket, 'connect')
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    await once(socket, 'close')
    await until(() => refusals.length === 1)
    expect(refusals[0]).toMatchObject({ address: '127.0.0.1', kind: 'not-a-peer' })
  })

  it('cuts off a client that says nothing after the handshake timeout, as a drop, not a refusal', async () => {
    const { port, refusals, drops, until } = await listening({ handshakeTimeoutMs: 300 })
    const socket = netConnect(port, '127.0.0.1')
    sockets.push(socket)
    socket.on('error', () => {})
    await once(socket, 'connect')
    await once(socket, 'close')
    await until(() => drops.length === 1)
    expect(drops[0]).toMatchObject({ address: '127.0.0.1', reason: 'no TLS handshake in 300 ms' })
    expect(refusals).toEqual([])
  })

  it('rejects connect with TRIB_PEER_UNREACHABLE when the server never answers the handshake', async () => {
    const { createServer } = await import('node:net')
    const silent = createServer((s) => sockets.push(s))
    silent.listen(0, '127.0.0.1')
    await once(silent, 'listening')
    try {
      const address = silent.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      const err = await refusedConnect(transport({ handshakeTimeoutMs: 300 }), port)
      expect(err.code).toBe('TRIB_PEER_UNREACHABLE')
      expect(err.message).toContain('no TLS handshake in 300 ms')
    } finally {
      for (const s of sockets.splice(0)) s.destroy()
      await new Promise((resolve) => silent.close(resolve))
    }
  })

  it('destroys at once the connections beyond maxPendingHandshakes, and still accepts peers after', async () => {
    const { port, peers, refusals, drops, until } = await listening({
      maxPendingHandshakes: 2,
      handshakeTimeoutMs: 10_000,
    })
    const idle: Socket[] = []
    for (let i = 0; i < 3; i += 1) {
      const socket = netConnect(port, '127.0.0.1')
      socket.on('error', () => {})
      sockets.push(socket)
      idle.push(socket)
      await once(socket, 'connect')
    }
    await once(idle[2] as Socket, 'close')
    await until(() => refusals.length === 1)
    expect(refusals[0]).toMatchObject({ address: '127.0.0.1', kind: 'too-many-handshakes' })
    // The two pending ones are still open; when they go (drops, not refusals), a real peer gets in.
    expect(idle[0]?.destroyed).toBe(false)
    for (const s of idle.slice(0, 2)) s.destroy()
    await until(() => drops.length === 2)
    expect(refusals).toHaveLength(1)
    await transport().connect('127.0.0.1', port)
    await until(() => peers.length === 1)
  })

  it('refuses a secret shorter than 256 bits and an empty cluster name', () => {
    expect(() => new TlsPskTransport({ cluster: 'c', secret: Buffer.alloc(16) })).toThrow(
      expect.objectContaining({ code: 'TRIB_CLUSTER_SECRET_INVALID' }),
    )
    expect(() => new TlsPskTransport({ cluster: '', secret })).toThrow(
      expect.objectContaining({ code: 'TRIB_CONFIG_INVALID' }),
    )
  })

  it('reports a listen failure with TRIB_LISTEN_FAILED', async () => {
    const { port } = await listening()
    const err = await transport()
      .listen('127.0.0.1', port, () => {})
      .catch((e: unknown) => e)
    expect(isTributaryError(err, 'TRIB_LISTEN_FAILED')).toBe(true)
  })
})
