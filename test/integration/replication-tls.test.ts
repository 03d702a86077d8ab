// Replication over its real transport on 127.0.0.1: TLS 1.3 keyed from the
// cluster secret (wrong secret, wrong cluster, not TLS at all: refused and
// reported), the secret file's checks, and two whole nodes with static peers
// copying each other's partitions.

import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { readClusterSecret, writeClusterSecret } from '../../src/cluster/secret.ts'
import { type PeerConnection, TlsPskTransport } from '../../src/replication/transport.ts'
import { freePort } from '../helpers/free-port.ts'
import { Cleanup, waitFor } from '../helpers/integration.ts'
import { runTributary } from '../helpers/run-bounded.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

function transport(cluster: string, secret: Buffer, refused: string[] = []): TlsPskTransport {
  const t = new TlsPskTransport({
    cluster,
    secret,
    onRefused: ({ address, reason }) => refused.push(`${address} ${reason}`),
    handshakeTimeoutMs: 500,
    connectTimeoutMs: 2000,
  })
  cleanup.defer('close transport', () => t.close())
  return t
}

async function listening(t: TlsPskTransport, accepted: PeerConnection[] = []): Promise<number> {
  const { port } = await t.listen('127.0.0.1', 0, (conn) => accepted.push(conn))
  return port
}

describe('the TLS transport', () => {
  const secret = Buffer.alloc(32, 7)

  it('links two holders of the secret over TLS 1.3 with a PSK suite, bytes flowing both ways', async () => {
    const accepted: PeerConnection[] = []
    const port = await listening(transport('c1', secret), accepted)
    const conn = await transport('c1', secret).connect('127.0.0.1', port)
    await waitFor(() => accepted.length === 1, 'the listener to accept')
    const inbound = accepted[0]?.socket
    if (inbound === undefined) throw new Error('no inbound connection')
    const socket = conn.socket as import('node:tls').TLSSocket
    expect(socket.getProtocol()).toBe('TLSv1.3')
    expect(socket.getCipher().name).toMatch(/^TLS_(CHACHA20_POLY1305|AES_128_GCM)_SHA256$/)
    const got: string[] = []
    inbound.on('data', (d: Buffer) => {
      got.push(d.toString())
      inbound.write('pong')
    })
    const answer = new Promise<string>((resolve) =>
      conn.socket.once('data', (d: Buffer) => resolve(d.toString())),
    )
    conn.socket.write('ping')
    expect(await answer).toBe('pong')
    expect(got).toEqual(['ping'])
  })

  it('refuses a wrong secret and a wrong cluster name on both ends, naming the address', async () => {
    const refused: string[] = []
    const port = await listening(transport('c1', secret, refused))
    await expect(transport('c1', Buffer.alloc(32, 8)).connect('127.0.0.1', port)).rejects.toMatchObject({
      code: 'TRIB_PEER_REFUSED',
    })
    await expect(transport('c2', secret).connect('127.0.0.1', port)).rejects.toMatchObject({
      code: 'TRIB_PEER_REFUSED',
    })
    await waitFor(() => refused.length === 2, 'both refusals to be reported')
    for (const line of refused) expect(line).toMatch(/^127\.0\.0\.1 /)
    expect(refused.join(' ')).not.toContain(secret.toString('hex'))
  })

  it('drops a client that does not speak TLS within the handshake timeout, and reports it', async () => {
    const refused: string[] = []
    const port = await listening(transport('c1', secret, refused))
    const plain = connect(port, '127.0.0.1', () => plain.write('GET / HTTP/1.1\r\n\r\n'))
    await new Promise<void>((resolve) => plain.once('close', () => resolve()))
    await waitFor(() => refused.length === 1, 'the refusal to be reported')
  })

  it('says a port nobody listens on is unreachable', async () => {
    const gone = transport('c1', secret)
    const port = await listening(gone)
    await gone.close()
    await expect(transport('c1', secret).connect('127.0.0.1', port)).rejects.toMatchObject({
      code: 'TRIB_PEER_UNREACHABLE',
    })
  })
})

describe('the cluster secret', () => {
  it('is written 0600 by tributary cluster init, never printed, and not replaced without --force', async () => {
    const file = join(await cleanup.dir(), 'cluster.secret')
    const init = await runTributary(['cluster', 'init', '--secret-file', file])
    expect(init.code, init.stderr).toBe(0)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const text = readFileSync(file, 'utf8').trim()
    expect(text).toMatch(/^[0-9a-f]{64}$/)
    expect(init.stdout + init.stderr).not.toContain(text)
    expect(readClusterSecret(file)).toHaveLength(32)
    const again = await runTributary(['cluster', 'init', '--secret-file', file])
    expect(again.code).toBe(1)
    expect(again.stderr).toContain('TRIB_CLUSTER_SECRET_INVALID')
    expect(readFileSync(file, 'utf8').trim()).toBe(text)
    writeClusterSecret(file, true)
    expect(readFileSync(file, 'utf8').trim()).not.toBe(text)
  })

  it('is refused when others can read it or it is too short, with what to do', async () => {
    const file = join(await cleanup.dir(), 'cluster.secret')
    writeClusterSecret(file)
    chmodSync(file, 0o644)
    expect(() => readClusterSecret(file)).toThrow(/chmod 600/)
    writeFileSync(file, 'abcd\n', { mode: 0o600 })
    chmodSync(file, 0o600)
    expect(() => readClusterSecret(file)).toThrow(/tributary cluster init/)
  })
})

describe('two nodes with static peers on 127.0.0.1', () => {
  it('copy each other partitions, show each other as peers, and say why a third is refused', async () => {
    const dir = await cleanup.dir()
    const secretFile = join(dir, 'cluster.secret')
    writeClusterSecret(secretFile)
    const [portA, portB] = [await freePort(), await freePort()]
    const clusterOf = (port: number, peer: number) => ({
      name: 'bench-row',
      secretFile,
      peers: [`127.0.0.1:${peer}`],
      mdns: false,
      replicationHost: '127.0.0.1',
      replicationPort: port,
      heartbeatMs: 100,
    })
    const streams = [{ name: 'temps', match: ['t/#'], partitions: 2 }]
    const a = await cleanup.node({ config: { streams, cluster: clusterOf(portA, portB) } })
    const b = await cleanup.node({ config: { streams, cluster: clusterOf(portB, portA) } })
    const sensorA = await cleanup.mqtt(a.url, { clientId: 'sensor-a' })
    const sensorB = await cleanup.mqtt(b.url, { clientId: 'sensor-b' })
    for (let i = 0; i < 20; i++) {
      await sensorA.publishAsync(`t/a${i % 3}`, `a${i}`, { qos: 1 })
      await sensorB.publishAsync(`t/b${i % 3}`, `b${i}`, { qos: 1 })
    }
    const copied = (holder: typeof a, origin: typeof a) =>
      origin.node.store
        .localPartitions()
        .filter((p) => p.stream === 'temps')
        .every((p) => holder.node.store.partition(p)?.nextOffset === p.nextOffset)
    await waitFor(() => copied(b, a) && copied(a, b), 'both nodes to copy each other')
    for (const [holder, origin] of [
      [a, b],
      [b, a],
    ] as const) {
      for (const p of origin.node.store.localPartitions()) {
        expect(holder.node.store.read(p, 0, { maxRecords: 100 }).records).toEqual(
          origin.node.store.read(p, 0, { maxRecords: 100 }).records,
        )
      }
    }
    const peersOfA = (await (await fetch(`${a.httpUrl}/v1/peers`)).json()) as {
      cluster: { name: string; refused: string | null }
      peers: Array<{ nodeId: string; state: string; via: string; rttMs: number | null }>
    }
    expect(peersOfA.cluster).toEqual({ name: 'bench-row', refused: null })
    expect(peersOfA.peers).toEqual([
      expect.objectContaining({ nodeId: b.node.nodeId, state: 'connected', via: 'static' }),
    ])
    let rtt: number | null = null
    for (let i = 0; i < 100 && rtt === null; i++) {
      const status = (await (await fetch(`${a.httpUrl}/v1/status`)).json()) as {
        peers: Array<{ rttMs: number | null }>
      }
      rtt = status.peers[0]?.rttMs ?? null
      if (rtt === null) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(rtt).toEqual(expect.any(Number))

    // A node with another secret dials a: the handshake fails, and it says so.
    const otherSecret = join(dir, 'other.secret')
    writeClusterSecret(otherSecret)
    const c = await cleanup.node({
      config: { streams, cluster: { ...clusterOf(await freePort(), portA), secretFile: otherSecret } },
    })
    let refused: { state: string; lastError: string | null } | undefined
    for (let i = 0; i < 100 && refused?.state !== 'refused'; i++) {
      const answer = (await (await fetch(`${c.httpUrl}/v1/peers`)).json()) as {
        peers: Array<{ state: string; lastError: string | null }>
      }
      refused = answer.peers[0]
      if (refused?.state !== 'refused') await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(refused).toMatchObject({
      state: 'refused',
      lastError: expect.stringMatching(/cluster secret or name/),
    })
  })
})

describe('ack: replicated', () => {
  it('acknowledges only once another node holds the record fdatasync-ed; without it, waits then refuses, or degrades', async () => {
    const dir = await cleanup.dir()
    const secretFile = join(dir, 'cluster.secret')
    writeClusterSecret(secretFile)
    const [portA, portB] = [await freePort(), await freePort()]
    const clusterOf = (port: number, peer: number) => ({
      name: 'acks',
      secretFile,
      peers: [`127.0.0.1:${peer}`],
      mdns: false,
      replicationHost: '127.0.0.1',
      replicationPort: port,
      heartbeatMs: 100,
      followerTimeoutMs: 1000,
    })
    const streams = [
      { name: 'safe', match: ['safe/#'], ack: 'replicated', minInsync: 2, replicatedTimeoutMs: 800 },
      {
        name: 'soft',
        match: ['soft/#'],
        ack: 'replicated',
        onTooFewReplicas: 'degrade',
        replicatedTimeoutMs: 300,
      },
    ]
    const a = await cleanup.node({ config: { streams, cluster: clusterOf(portA, portB) } })
    const b = await cleanup.node({ config: { streams, cluster: clusterOf(portB, portA) } })
    const ref = { stream: 'safe', origin: a.node.nodeId, partition: 0 }
    await waitFor(() => b.node.store.partition(ref) !== undefined, 'b to follow a')

    const sensor = await cleanup.mqtt(a.url, { clientId: 'sensor-r', protocolVersion: 5 })
    const reasons: string[] = []
    sensor.on('packetreceive', (packet) => {
      if (packet.cmd === 'puback' && packet.properties?.reasonString !== undefined)
        reasons.push(packet.properties.reasonString)
    })
    for (let i = 0; i < 5; i++) {
      await sensor.publishAsync('safe/x', `r${i}`, { qos: 1 })
      // Acknowledged: b's copy holds it, fdatasync-ed, already.
      expect(b.node.store.durableNext(ref)).toBe(i + 1)
    }

    await b.stop()
    const started = Date.now()
    await expect(sensor.publishAsync('safe/x', 'alone', { qos: 1 })).rejects.toThrow()
    expect(Date.now() - started).toBeGreaterThanOrEqual(700)
    expect(reasons).toEqual([expect.stringMatching(/^TRIB_NOT_ENOUGH_REPLICAS: /)])
    // Stored here all the same (the client sends it again; a dedupe window or the sink sees a duplicate).
    expect(a.node.store.partition({ ...ref, origin: a.node.nodeId })?.nextOffset).toBe(6)

    await sensor.publishAsync('soft/x', 'degraded', { qos: 1 })
    const metrics = await (await fetch(`${a.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/tributary_replicated_acks_degraded_total\{stream="soft"\} 1/)
  })
})
