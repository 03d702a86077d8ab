// Two nodes with one node id following one node, where mDNS cannot see them
// (static peers, multicast blocked): a real node on 127.0.0.1, and the
// "nodes" that dial it are real TLS-PSK connections from two loopback
// addresses (127.0.0.1 and 127.0.0.2, both on `lo`), speaking the
// replication protocol with one id. The newer link from another address is
// refused with TRIB_NODE_ID_CONFLICT while the older one is heard from,
// shown in /v1/peers and `tributary peers`, counted; one from the same
// address is no conflict (a restart), and once the older link falls silent
// past followerTimeoutMs the other address is accepted (a node that moved).

import { connect as netConnect } from 'node:net'
import type { Duplex } from 'node:stream'
import { connect as tlsConnect } from 'node:tls'
import { afterEach, describe, expect, it } from 'vitest'
import { readClusterSecret, writeClusterSecret } from '../../src/cluster/secret.ts'
import {
  encodeMessage,
  FrameDecoder,
  REPLICATION_PROTOCOL_VERSION,
} from '../../src/replication/frame-codec.ts'
import { PeerLink } from '../../src/replication/link.ts'
import { derivePsk, PEER_PROTOCOL, TLS_CIPHERSUITES } from '../../src/replication/transport.ts'
import { until } from '../helpers/cluster-child.ts'
import { freePort } from '../helpers/free-port.ts'
import { Cleanup } from '../helpers/integration.ts'
import { runTributary } from '../helpers/run-bounded.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

const CLUSTER = 'twins'
const TWIN = 'twin-node-id'
const TIMEOUT_MS = 4000

interface ConflictView {
  nodeId: string
  accepted: string
  refused: string[]
  refusals: number
}

/** A TLS-PSK connection to the node, made from `localAddress`. */
async function tlsFrom(localAddress: string, port: number, secretFile: string): Promise<Duplex> {
  const psk = derivePsk(readClusterSecret(secretFile), CLUSTER)
  const raw = netConnect({ host: '127.0.0.1', port, localAddress })
  cleanup.defer(`close the socket from ${localAddress}`, () => {
    raw.destroy()
  })
  const socket = tlsConnect({
    socket: raw,
    minVersion: 'TLSv1.3',
    ciphers: TLS_CIPHERSUITES,
    ALPNProtocols: [PEER_PROTOCOL],
    pskCallback: () => ({ identity: CLUSTER, psk }),
    checkServerIdentity: () => undefined,
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve)
    socket.once('error', reject)
  })
  return socket
}

/** A follower with the twin id from `localAddress`; resolves once the node took it (its catalog came) or refused it. */
async function follow(localAddress: string, port: number, secretFile: string): Promise<PeerLink> {
  const socket = await tlsFrom(localAddress, port, secretFile)
  const link = await PeerLink.open(socket, {
    cluster: CLUSTER,
    nodeId: TWIN,
    incarnation: 1,
    replicationPort: 7625,
    heartbeatMs: 100,
    timeoutMs: TIMEOUT_MS,
  })
  cleanup.defer(`close the link from ${localAddress}`, () => link.close('test over'))
  const catalog = new Promise<void>((resolve) => link.onMessage((m) => m.type === 'catalog' && resolve()))
  await Promise.race([catalog, link.closed()])
  return link
}

/** A follower that says hello, takes the catalog, then falls silent (power cut: the link is half-open). */
async function silentFollower(localAddress: string, port: number, secretFile: string): Promise<void> {
  const socket = await tlsFrom(localAddress, port, secretFile)
  socket.write(
    encodeMessage({
      type: 'hello',
      protocol: REPLICATION_PROTOCOL_VERSION,
      cluster: CLUSTER,
      nodeId: TWIN,
      incarnation: 1,
      replicationPort: 7625,
    }),
  )
  const decoder = new FrameDecoder()
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      if (decoder.push(chunk).some((m) => m.type === 'catalog')) resolve()
    })
    socket.once('close', () => reject(new Error('the node closed the first link')))
  })
}

describe('one node id following a node from two addresses', () => {
  it('refuses the newer while the older is heard from, not a restart at the same address, and not for good', async () => {
    const secretFile = `${await cleanup.dir()}/cluster.secret`
    writeClusterSecret(secretFile)
    const port = await freePort()
    const b = await cleanup.node({
      config: {
        streams: [{ name: 'temps', match: ['t/#'] }],
        cluster: {
          name: CLUSTER,
          secretFile,
          peers: [],
          mdns: false,
          replicationHost: '127.0.0.1',
          replicationPort: port,
          heartbeatMs: 100,
          followerTimeoutMs: TIMEOUT_MS,
        },
      },
    })
    const sensor = await cleanup.mqtt(b.url)
    await sensor.publishAsync('t/x', 'one', { qos: 1 })
    const conflicts = async (): Promise<ConflictView[]> =>
      ((await (await fetch(`${b.httpUrl}/v1/peers`)).json()) as { cluster: { conflicts: ConflictView[] } })
        .cluster.conflicts

    await silentFollower('127.0.0.1', port, secretFile)
    const newer = await follow('127.0.0.2', port, secretFile)
    await newer.closed()
    expect(newer.refusal?.code).toBe('TRIB_NODE_ID_CONFLICT')
    expect(newer.refusal?.message).toContain(
      `node id ${TWIN} already follows ${b.node.nodeId} from 127.0.0.1`,
    )
    expect(newer.refusal?.message).toContain('the link from 127.0.0.2 is refused')
    expect(newer.refusal?.message).toContain('delete `<dataDir>/node-id`')

    // Back from the same address (a restart while the old link is half-open): no conflict.
    const restarted = await follow('127.0.0.1', port, secretFile)
    expect(restarted.closedReason).toBeNull()
    restarted.close('done')

    expect(await conflicts()).toEqual([
      {
        nodeId: TWIN,
        accepted: '127.0.0.1',
        refused: ['127.0.0.2'],
        refusals: 1,
        lastRefusedAtMs: expect.any(Number),
      },
    ])
    const httpPort = new URL(b.httpUrl ?? '').port
    const peers = await runTributary(['peers', '--data-dir', b.dataDir, '--http-port', httpPort])
    expect(peers.code, peers.stderr).toBe(0)
    expect(peers.stdout).toContain(
      `NODE ID CONFLICT (TRIB_NODE_ID_CONFLICT): ${TWIN} follows this node from 127.0.0.1; refused from 127.0.0.2 (1 times)`,
    )
    const metrics = await (await fetch(`${b.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/tributary_replication_refused_total\{code="TRIB_NODE_ID_CONFLICT"\} 1\n/)

    // The silent link times out (followerTimeoutMs): the other address is no longer refused.
    await until('the silent link to time out', async () => (await conflicts()).length === 0)
    const moved = await follow('127.0.0.2', port, secretFile)
    expect(moved.refusal).toBeNull()
    expect(moved.closedReason).toBeNull()
  })
})
