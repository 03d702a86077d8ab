// Three tributary nodes on a LAN of network namespaces (test/helpers/netns.ts),
// started with a cluster name and a secret: they find each other over mDNS
// (and, for the first node, also as static peers: each peer is still listed
// once), copy each node's partitions to `replicas` nodes, keep the copies
// when a node is killed with SIGKILL, and show their peers. Streams ack
// `replicated`: `default` (replicas 2: the origin and the one follower it
// picked) once that follower holds a record (minInsync 2); `strict` and
// `loose` are held by all three (replicas 3, minInsync 3), so with one node
// dead `strict` refuses (onTooFewReplicas: wait) and `loose` acknowledges
// anyway (degrade); `default` goes on once the origin gave the dead
// follower's place to the survivor (cluster.followerTimeoutMs). Each node is a real broker
// process in its own namespace; sensors publish inside that namespace; the
// test reads each node's data dir directly (`tributary tail --origin`).

import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { BROKER_NODE_FLAGS, CLI, collectLogLines } from '../helpers/child.ts'
import { Cleanup } from '../helpers/integration.ts'
import { Lan, type LanHost } from '../helpers/netns.ts'
import { runTributary } from '../helpers/run-bounded.ts'

const WAIT_MS = 30_000
const RECORDS_PER_NODE = 40

interface ClusterNode {
  readonly host: LanHost
  readonly dataDir: string
  readonly child: ChildProcess
  readonly log: Array<Record<string, unknown>>
  nodeId: string
}

const cleanup = new Cleanup()
let lan: Lan
let secretFile: string
let configFile: string
const nodes: ClusterNode[] = []

async function until(what: string, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

function startNode(host: LanHost, dataDir: string, peers: readonly string[] = []): ClusterNode {
  const child = lan.spawn(host, process.execPath, [
    ...BROKER_NODE_FLAGS,
    CLI,
    'start',
    '--data-dir',
    dataDir,
    '--cluster',
    'plant-7',
    '--cluster-secret-file',
    secretFile,
    '--config',
    configFile,
    ...peers.flatMap((peer) => ['--peer', peer]),
  ])
  const node: ClusterNode = { host, dataDir, child, log: [], nodeId: '' }
  collectLogLines(child.stdout, node.log)
  return node
}

async function started(node: ClusterNode): Promise<void> {
  await until(`${node.host.ns} to listen for replication`, () =>
    node.log.some((l) => l.msg === 'replication listening'),
  )
  node.nodeId = readFileSync(join(node.dataDir, 'node-id'), 'utf8').trim()
}

/** Publishes `count` QoS 1 messages inside the node's namespace, as its sensors would. */
async function publish(node: ClusterNode, count: number): Promise<void> {
  const script = `seq 1 ${count} | sed 's/^/${node.host.index}-/' | mosquitto_pub -h 127.0.0.1 -p 1883 -q 1 -i sensor-${node.host.index} -t sensors/s${node.host.index}/t -l`
  const result = await lan.exec(node.host, 'sh', ['-c', script])
  expect(result.code, result.stderr).toBe(0)
}

/** One MQTT 5 QoS 1 publish inside the node's namespace; what mosquitto_pub warns (a refusal's reason string), else ''. */
async function publishOne(node: ClusterNode, topic: string): Promise<string> {
  const result = await lan.exec(node.host, 'mosquitto_pub', [
    '-V',
    '5',
    '-h',
    '127.0.0.1',
    '-p',
    '1883',
    '-q',
    '1',
    '-t',
    topic,
    '-m',
    'one',
  ])
  expect(result.code, result.stderr).toBe(0)
  return result.stderr.trim()
}

/** The payloads of `origin`'s stream `default` as held in `holder`'s data dir. */
async function held(holder: ClusterNode, origin: ClusterNode): Promise<string[]> {
  const args = ['tail', 'default', '--from-beginning', '--json', '--data-dir', holder.dataDir]
  if (holder !== origin) args.push('--origin', origin.nodeId)
  const result = await runTributary(args)
  if (result.code !== 0) return []
  return result.stdout
    .trim()
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => (JSON.parse(line) as { payload: string }).payload)
}

describe('a cluster of three nodes', () => {
  beforeAll(async () => {
    lan = await Lan.create({ hosts: 3 })
    cleanup.defer('tear down the LAN', () => lan.close())
    const dir = await cleanup.dir()
    secretFile = join(dir, 'cluster.secret')
    const init = await runTributary(['cluster', 'init', '--secret-file', secretFile])
    expect(init.code, init.stderr).toBe(0)
    configFile = join(dir, 'tributary.yaml')
    writeFileSync(
      configFile,
      [
        'cluster: { followerTimeoutMs: 2000 }',
        'streams:',
        '  - { name: default, match: ["sensors/#"], ack: replicated, replicatedTimeoutMs: 10000 }',
        '  - { name: strict, match: ["strict/#"], ack: replicated, replicas: 3, minInsync: 3, replicatedTimeoutMs: 1500 }',
        '  - { name: loose, match: ["loose/#"], ack: replicated, replicas: 3, minInsync: 3, replicatedTimeoutMs: 500, onTooFewReplicas: degrade }',
        '',
      ].join('\n'),
    )
    // The first node also names the others as static peers: found twice, listed once.
    const others = lan.hosts.slice(1).map((host) => `${host.address}:7625`)
    for (const host of lan.hosts)
      nodes.push(startNode(host, await cleanup.dir(), host.index === 0 ? others : []))
    for (const node of nodes) await started(node)
  }, 120_000)

  afterAll(() => cleanup.run())

  test('find each other with mDNS and hold every acknowledged record on replicas (2) nodes, record for record', async () => {
    await Promise.all(nodes.map((node) => publish(node, RECORDS_PER_NODE)))
    for (const origin of nodes) {
      const own = await held(origin, origin)
      expect(own).toHaveLength(RECORDS_PER_NODE)
      const others = nodes.filter((n) => n !== origin)
      await until(`one other node to hold ${origin.nodeId}'s records`, async () => {
        const copies = await Promise.all(others.map((holder) => held(holder, origin)))
        return copies.some((copy) => copy.length === own.length)
      })
      // The origin and exactly one follower: the other node holds no copy of this stream.
      const copies = await Promise.all(others.map((holder) => held(holder, origin)))
      expect(copies.filter((copy) => copy.length > 0)).toEqual([own])
    }
    const [first, ...others] = nodes
    if (first === undefined) throw new Error('three nodes expected')
    const peers = await lan.exec(first.host, process.execPath, [
      CLI,
      'peers',
      '--json',
      '--data-dir',
      first.dataDir,
    ])
    expect(peers.code, peers.stderr).toBe(0)
    const listed = peers.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { nodeId: string; state: string })
    expect(listed.map((p) => [p.nodeId, p.state]).sort()).toEqual(
      others.map((n) => [n.nodeId, 'connected']).sort(),
    )
  })

  test('keep a killed node records on the survivor it picked, readable with --origin', async () => {
    const [dead, ...survivors] = nodes
    if (dead === undefined) throw new Error('three nodes expected')
    await publish(dead, 10)
    const own = await held(dead, dead)
    // Acknowledged (ack: replicated) only once its follower held them: that survivor has them all already.
    const holders = []
    for (const holder of survivors) if ((await held(holder, dead)).length > 0) holders.push(holder)
    expect(holders).toHaveLength(1)
    // All three up: a record every node must hold is acknowledged.
    expect(await publishOne(dead, 'strict/x')).toBe('')
    const gone = once(dead.child, 'exit')
    dead.child.kill('SIGKILL')
    await gone
    for (const holder of holders) expect(await held(holder, dead)).toEqual(own)

    // Two of three left: one copy is enough for default; strict waits, then refuses; loose degrades.
    const [survivor] = survivors
    if (survivor === undefined) throw new Error('survivors expected')
    expect(await publishOne(survivor, 'sensors/after/t')).toBe('')
    await until('the survivor to notice the dead node', async () => {
      const warning = await publishOne(survivor, 'strict/x')
      return warning.includes('TRIB_NOT_ENOUGH_REPLICAS')
    })
    expect(await publishOne(survivor, 'loose/x')).toBe('')
  })
})
