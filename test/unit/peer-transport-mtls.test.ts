// MutualTlsTransport's own promises, beyond the PeerTransport conformance
// suite: both ends verify the other's certificate against the cluster CA and
// that it names the cluster; a peer of another CA, a client without a
// certificate and a certificate of another cluster are refused with the
// address on the listening side; credentials that do not fit are refused at
// construction; setCredentials serves the connections made after it.
// Sockets on 127.0.0.1 only; certificates made by openssl in a temp dir.

import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type TLSSocket, connect as tlsConnect } from 'node:tls'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { TributaryError } from '../../src/errors.ts'
import {
  type ClusterCredentials,
  MutualTlsTransport,
  type MutualTlsTransportOptions,
} from '../../src/replication/mtls-transport.ts'
import type { PeerConnection, PeerRefusal } from '../../src/replication/transport.ts'
import { type ClusterTls, makeClusterCerts } from '../helpers/test-certs.ts'

const dirs: string[] = []
function certsOf(cluster: string, nodes: readonly string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'tributary-mtls-'))
  dirs.push(dir)
  return makeClusterCerts(dir, cluster, nodes)
}
const load = (tls: ClusterTls): ClusterCredentials => ({
  cert: readFileSync(tls.certFile),
  key: readFileSync(tls.keyFile),
  ca: readFileSync(tls.caFile),
})
const mesh = certsOf('mesh', ['a', 'b', 'c'])
const otherCa = certsOf('mesh', ['x'])
const otherCluster = certsOf('elsewhere', ['y'])

const open: MutualTlsTransport[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()))
})
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

function transport(credentials: ClusterCredentials, options: Partial<MutualTlsTransportOptions> = {}) {
  const t = new MutualTlsTransport({ cluster: 'mesh', credentials, handshakeTimeoutMs: 2000, ...options })
  open.push(t)
  return t
}

async function listening(credentials: ClusterCredentials) {
  const peers: PeerConnection[] = []
  const refusals: PeerRefusal[] = []
  const server = transport(credentials, { onRefused: (info) => refusals.push(info) })
  const { port } = await server.listen('127.0.0.1', 0, (conn) => peers.push(conn))
  const until = async (check: () => boolean): Promise<void> => {
    for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(check()).toBe(true)
  }
  return { server, port, peers, refusals, until }
}

async function refusedConnect(client: MutualTlsTransport, port: number): Promise<TributaryError> {
  const err = await client.connect('127.0.0.1', port).catch((e: unknown) => e)
  if (!(err instanceof TributaryError)) throw new Error(`expected a TributaryError, got ${String(err)}`)
  return err
}

/** A plain TLS client that trusts the mesh CA, with `identity` (or none): did it finish its handshake, and what came back before the close. */
async function clientOf(port: number, identity: { cert?: Buffer; key?: Buffer }) {
  const socket = tlsConnect({
    host: '127.0.0.1',
    port,
    ...identity,
    ca: readFileSync(mesh.caFile),
    minVersion: 'TLSv1.3',
    ALPNProtocols: ['tributary/1'],
    checkServerIdentity: () => undefined,
  })
  let secure = false
  let bytes = 0
  socket.on('secureConnect', () => {
    secure = true
    socket.write('hello?')
  })
  socket.on('data', (chunk: Buffer) => {
    bytes += chunk.length
  })
  socket.on('error', () => {})
  await once(socket, 'close')
  return { secure, bytes }
}

describe('MutualTlsTransport', () => {
  it('connects two nodes of one CA over TLS 1.3, each seeing the other certificate', async () => {
    const { port, peers, until } = await listening(load(mesh.tls('a')))
    const conn = await transport(load(mesh.tls('b'))).connect('127.0.0.1', port)
    await until(() => peers.length === 1)
    const client = conn.socket as TLSSocket
    const server = peers[0]?.socket as TLSSocket
    for (const side of [client, server]) {
      expect(side.getProtocol()).toBe('TLSv1.3')
      expect(side.alpnProtocol).toBe('tributary/1')
      expect(side.authorized).toBe(true)
    }
    expect(client.getPeerCertificate().subject.CN).toBe('a')
    expect(server.getPeerCertificate().subject.CN).toBe('b')
  })

  it('refuses a peer whose certificate is from another CA, on both sides', async () => {
    const { port, peers, refusals, until } = await listening(load(mesh.tls('a')))
    const err = await refusedConnect(transport(load(otherCa.tls('x'))), port)
    expect(err.code).toBe('TRIB_PEER_REFUSED')
    expect(err.message).toContain('does not verify against cluster.tls.caFile')
    await until(() => refusals.length === 1)
    expect(refusals[0]).toMatchObject({ address: '127.0.0.1', kind: 'not-a-peer' })
    expect(peers).toEqual([])
  })

  it('refuses a client whose certificate is from another CA though it trusts this one', async () => {
    const { port, peers, refusals, until } = await listening(load(mesh.tls('a')))
    // Not a MutualTlsTransport: its own start check refuses a certificate its CA did not sign.
    const x = otherCa.tls('x')
    const stranger = await clientOf(port, { cert: readFileSync(x.certFile), key: readFileSync(x.keyFile) })
    await until(() => refusals.length === 1)
    expect(refusals[0]).toMatchObject({ address: '127.0.0.1', kind: 'bad-certificate' })
    expect(refusals[0]?.reason).toMatch(/subject x\) does not verify against cluster.tls.caFile/)
    expect(peers).toEqual([])
    // TLS 1.3: the client finished its handshake first; the link closes without a byte.
    expect(stranger).toEqual({ secure: true, bytes: 0 })
  })

  it('refuses a client that presents no certificate', async () => {
    const { port, peers, refusals, until } = await listening(load(mesh.tls('a')))
    expect(await clientOf(port, {})).toEqual({ secure: true, bytes: 0 })
    await until(() => refusals.length === 1)
    expect(refusals[0]).toMatchObject({ address: '127.0.0.1', kind: 'no-certificate' })
    expect(peers).toEqual([])
  })

  it('refuses a certificate of the same CA that names another cluster, on both sides', async () => {
    // One CA for two clusters: the subjectAltName keeps them apart.
    const shared = certsOf('elsewhere', ['p'])
    const asMesh = { ...load(shared.tls('p')), ca: readFileSync(shared.caFile) }
    expect(() => transport(asMesh)).toThrow(expect.objectContaining({ code: 'TRIB_CLUSTER_TLS_INVALID' }))
    const { port, refusals, until } = await listening(load(mesh.tls('a')))
    const elsewhere = new MutualTlsTransport({
      cluster: 'elsewhere',
      credentials: load(otherCluster.tls('y')),
    })
    open.push(elsewhere)
    const err = await refusedConnect(elsewhere, port)
    expect(err.message).toContain('does not verify')
    await until(() => refusals.length === 1)
  })

  it('refuses at construction a key that is not the certificate one, or a certificate not signed by the CA', () => {
    const mismatched = { ...load(mesh.tls('a')), key: readFileSync(mesh.tls('b').keyFile) }
    expect(() => transport(mismatched)).toThrow(expect.objectContaining({ code: 'TRIB_CLUSTER_TLS_INVALID' }))
    const unsigned = { ...load(mesh.tls('a')), ca: readFileSync(otherCa.caFile) }
    expect(() => transport(unsigned)).toThrow(/is not signed by the CA in cluster.tls.caFile/)
  })

  it('serves the connections made after setCredentials with the new ones', async () => {
    const { server, port, peers, refusals, until } = await listening(load(mesh.tls('a')))
    const x = load(otherCa.tls('x'))
    await refusedConnect(transport(x), port)
    // The node moves to the other CA (a renewed PKI): x gets in, b no longer does.
    const moved = new MutualTlsTransport({
      cluster: 'mesh',
      credentials: { ...x, cert: readFileSync(otherCa.tls('x').certFile) },
    })
    open.push(moved)
    server.setCredentials(x)
    await transport(x).connect('127.0.0.1', port)
    await until(() => peers.length === 1)
    const err = await refusedConnect(transport(load(mesh.tls('b'))), port)
    expect(err.code).toBe('TRIB_PEER_REFUSED')
    expect(refusals.length).toBeGreaterThanOrEqual(1)
  })
})
