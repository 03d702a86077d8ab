// Whole nodes replicating over mutual TLS on 127.0.0.1 (cluster.tls, no mDNS):
// two nodes with certificates from one CA copy each other's partitions; a node
// whose certificate comes from another CA, and a client with no certificate,
// are refused, logged with their address and counted; the config takes
// exactly one of secretFile and tls; a certificate that does not fit is
// refused at start. Certificates are made by openssl as the README says.

import { once } from 'node:events'
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { afterEach, describe, expect, it } from 'vitest'
import { writeClusterSecret } from '../../src/cluster/secret.ts'
import { loadConfig } from '../../src/config/load.ts'
import { freePort } from '../helpers/free-port.ts'
import { Cleanup, waitFor } from '../helpers/integration.ts'
import type { RunningNode } from '../helpers/node.ts'
import { runTributary } from '../helpers/run-bounded.ts'
import { type ClusterTls, makeClusterCerts } from '../helpers/test-certs.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

const streams = [{ name: 'temps', match: ['t/#'], partitions: 2 }]

function clusterOf(name: string, tls: ClusterTls, port: number, peers: readonly number[]) {
  return {
    name,
    tls,
    peers: peers.map((p) => `127.0.0.1:${p}`),
    mdns: false,
    replicationHost: '127.0.0.1',
    replicationPort: port,
    heartbeatMs: 100,
  }
}

/** Polls an async check every 50 ms until it holds; fails after 15 s. */
async function eventually(check: () => Promise<boolean>, label: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await check()) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`timed out waiting for ${label}`)
}

async function refusedCount(node: RunningNode, code = 'TRIB_PEER_REFUSED'): Promise<number> {
  const metrics = await (await fetch(`${node.httpUrl}/metrics`)).text()
  const line = new RegExp(`tributary_replication_refused_total\\{code="${code}"\\} (\\d+)`).exec(metrics)
  return Number(line?.[1] ?? 0)
}

describe('two nodes with certificates from one CA', () => {
  it('copy each other; another CA and a client without a certificate are refused and counted', async () => {
    const certs = makeClusterCerts(await cleanup.dir(), 'mesh', ['a', 'b'])
    const [portA, portB] = [await freePort(), await freePort()]
    const a = await cleanup.node({
      config: { streams, cluster: clusterOf('mesh', certs.tls('a'), portA, [portB]) },
    })
    const b = await cleanup.node({
      config: { streams, cluster: clusterOf('mesh', certs.tls('b'), portB, [portA]) },
    })
    const sensor = await cleanup.mqtt(a.url, { clientId: 'sensor-a' })
    for (let i = 0; i < 10; i++) await sensor.publishAsync(`t/a${i % 3}`, `a${i}`, { qos: 1 })
    const copied = () =>
      a.node.store
        .localPartitions()
        .filter((p) => p.stream === 'temps')
        .every((p) => b.node.store.partition(p)?.nextOffset === p.nextOffset)
    await waitFor(copied, 'b to copy a over mutual TLS')
    for (const p of a.node.store.localPartitions())
      expect(b.node.store.read(p, 0, { maxRecords: 100 }).records).toEqual(
        a.node.store.read(p, 0, { maxRecords: 100 }).records,
      )
    type Peers = { peers: Array<{ nodeId: string; state: string }> }
    const peersOfA = async () => ((await (await fetch(`${a.httpUrl}/v1/peers`)).json()) as Peers).peers
    // a dialed b before b listened: its next attempt comes after a backoff.
    let peers = await peersOfA()
    for (const deadline = Date.now() + 15_000; peers[0]?.state !== 'connected' && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      peers = await peersOfA()
    }
    expect(peers).toEqual([expect.objectContaining({ nodeId: b.node.nodeId, state: 'connected' })])
    const before = await refusedCount(a)
    const droppedBefore = await refusedCount(a, 'TRIB_PEER_UNREACHABLE')

    // Node c: same cluster name, its own CA. It refuses a's certificate itself and says why; it hangs up
    // without a TLS alert, which a cannot tell from a reset: a counts a dropped handshake, not a refusal.
    const other = makeClusterCerts(await cleanup.dir(), 'mesh', ['c'])
    const c = await cleanup.node({
      config: {
        streams,
        cluster: clusterOf('mesh', other.tls('c'), await freePort(), [portA]),
      },
    })
    let seen: { state: string; lastError: string | null } | undefined
    await eventually(async () => {
      const answer = (await (await fetch(`${c.httpUrl}/v1/peers`)).json()) as {
        peers: Array<{ state: string; lastError: string | null }>
      }
      seen = answer.peers[0]
      return seen?.state === 'refused'
    }, 'c to be refused')
    expect(seen?.lastError).toMatch(/certificate does not verify against cluster\.tls\.caFile/)
    await eventually(
      async () => (await refusedCount(a, 'TRIB_PEER_UNREACHABLE')) > droppedBefore,
      'a to count the dropped handshake',
    )
    await c.stop()
    expect(await refusedCount(a)).toBe(before)

    // A client that trusts the CA but presents no certificate: refused, and counted.
    const counted = await refusedCount(a)
    const bare = tlsConnect({
      host: '127.0.0.1',
      port: portA,
      ca: readFileSync(certs.caFile),
      minVersion: 'TLSv1.3',
      ALPNProtocols: ['tributary/1'],
      checkServerIdentity: () => undefined,
    })
    bare.on('error', () => {})
    await once(bare, 'close')
    await eventually(async () => (await refusedCount(a)) === counted + 1, 'a to count the bare client')
    // b is still connected and copying.
    await sensor.publishAsync('t/late', 'late', { qos: 1 })
    await waitFor(copied, 'b to copy the late record')
  })
})

describe('cluster.tls in the config', () => {
  it('takes exactly one of secretFile and tls, and the flags', async () => {
    const dir = await cleanup.dir()
    const secretFile = join(dir, 'cluster.secret')
    writeClusterSecret(secretFile)
    const tls = { certFile: join(dir, 'n.crt'), keyFile: join(dir, 'n.key'), caFile: join(dir, 'ca.crt') }
    const file = (cluster: Record<string, unknown>) => {
      const path = join(dir, `c${Math.random()}.json`)
      writeFileSync(path, JSON.stringify({ dataDir: dir, cluster: { name: 'x', mdns: false, ...cluster } }))
      return path
    }
    const problems = (path: string) => {
      try {
        loadConfig({ config: path }, {})
        return []
      } catch (err) {
        return (err as { code: string; problems: Array<{ path: string; message: string }> }).problems
      }
    }
    expect(problems(file({ secretFile, tls }))).toEqual([
      { path: 'cluster.tls', message: expect.stringContaining('not both') },
    ])
    expect(problems(file({}))).toEqual([
      { path: 'cluster.secretFile', message: expect.stringContaining('or cluster.tls') },
    ])
    expect(problems(file({ tls: { certFile: 'a', keyFile: 'b' } }))).toEqual([
      { path: 'cluster.tls.caFile', message: expect.any(String) },
    ])
    const flags = loadConfig(
      { config: file({}), clusterCert: tls.certFile, clusterKey: tls.keyFile, clusterCa: tls.caFile },
      {},
    )
    expect(flags.cluster?.tls).toEqual(tls)

    const check = await runTributary(['config', 'check', file({ secretFile, tls })])
    expect(check.code).toBe(1)
    expect(check.stdout).toContain('[TRIB_CONFIG_INVALID]')
  })

  it('refuses at start a certificate that does not name the cluster, or a key readable by others', async () => {
    const certs = makeClusterCerts(await cleanup.dir(), 'mesh', ['a'])
    const { certFile, keyFile } = certs.tls('a')
    const start = async (name: string, key: string) => {
      const dataDir = await cleanup.dir()
      return runTributary([
        'start',
        '--data-dir',
        dataDir,
        '--mqtt-port',
        '0',
        '--http-port',
        'off',
        '--cluster',
        name,
        '--cluster-cert',
        certFile,
        '--cluster-key',
        key,
        '--cluster-ca',
        certs.caFile,
      ])
    }
    const wrongName = await start('elsewhere', keyFile)
    expect(wrongName.code).not.toBe(0)
    expect(wrongName.stderr).toMatch(/TRIB_CLUSTER_TLS_INVALID[\s\S]*does not name cluster "elsewhere"/)
    const shared = join(await cleanup.dir(), 'shared.key')
    copyFileSync(keyFile, shared)
    chmodSync(shared, 0o640)
    const readable = await start('mesh', shared)
    expect(readable.code).not.toBe(0)
    expect(readable.stderr).toMatch(/TRIB_CLUSTER_TLS_INVALID[\s\S]*other users can read it/)
  })
})
