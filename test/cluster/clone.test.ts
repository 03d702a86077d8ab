// A node started from a copy of another node's data dir (a cloned SD card),
// on a LAN of network namespaces (test/helpers/netns.ts), with mDNS on and
// static peers: a and b name each other, c runs on a copy of a's data dir
// taken while a was stopped (a then started again and wrote more), with a's
// flags (static peer b). The conflict is seen by all three: a and c find
// their own id announced by another host over mDNS and stop replicating, b
// logs it (mDNS, or its own refusal of a second link with one id from
// another address, whichever comes first). What the clone writes never
// reaches b's copy of a; c begins an incarnation of its own; and across a's
// log, b's copy and c's log no (origin, incarnation, offset) names two
// different records (read from the stored batches once the nodes stopped).
// The static-only refusal itself is tested on 127.0.0.1 in
// test/integration/node-id-conflict.test.ts.

import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { decodeBatch } from '../../src/log/batch-codec.ts'
import { SegmentLogStore } from '../../src/log/segment-log-store.ts'
import { BROKER_NODE_FLAGS, CLI, collectLogLines } from '../helpers/child.ts'
import { until } from '../helpers/cluster-child.ts'
import { Cleanup } from '../helpers/integration.ts'
import { Lan, type LanHost } from '../helpers/netns.ts'
import { runTributary } from '../helpers/run-bounded.ts'

const RECORDS = 10
const CONFLICT = 'TRIB_NODE_ID_CONFLICT'

interface ClusterNode {
  readonly host: LanHost
  readonly dataDir: string
  readonly child: ChildProcess
  readonly log: Array<Record<string, unknown>>
}

const cleanup = new Cleanup()
afterAll(() => cleanup.run())

function startNode(lan: Lan, host: LanHost, dataDir: string, files: Files, peer: LanHost): ClusterNode {
  const child = lan.spawn(host, process.execPath, [
    ...BROKER_NODE_FLAGS,
    CLI,
    'start',
    '--data-dir',
    dataDir,
    '--cluster',
    'plant-9',
    '--cluster-secret-file',
    files.secret,
    '--config',
    files.config,
    '--peer',
    `${peer.address}:7625`,
  ])
  const node: ClusterNode = { host, dataDir, child, log: [] }
  collectLogLines(child.stdout, node.log)
  return node
}

interface Files {
  readonly secret: string
  readonly config: string
}

async function started(node: ClusterNode): Promise<void> {
  // After tail recovery and the new incarnation: MQTT and the admin API listen.
  await until(`${node.host.ns} to start`, () => node.log.some((l) => l.msg === 'admin API listening'))
}

async function stop(node: ClusterNode): Promise<void> {
  if (node.child.exitCode !== null) return
  const exited = once(node.child, 'exit')
  node.child.kill('SIGTERM')
  await exited
}

/** `count` QoS 1 messages `<prefix>-<n>` published inside the node's namespace, as its sensors would. */
async function publish(lan: Lan, node: ClusterNode, prefix: string, count: number): Promise<void> {
  const script = `seq 1 ${count} | sed 's/^/${prefix}-/' | mosquitto_pub -h 127.0.0.1 -p 1883 -q 1 -i sensor-${prefix} -t sensors/x -l`
  const result = await lan.exec(node.host, 'sh', ['-c', script])
  expect(result.code, result.stderr).toBe(0)
}

/** The payloads of `origin`'s stream `default` held in a data dir (its own log, or a copy with --origin). */
async function held(dataDir: string, origin: string, own: boolean): Promise<string[]> {
  const args = ['tail', 'default', '--from-beginning', '--json', '--data-dir', dataDir]
  if (!own) args.push('--origin', origin)
  const result = await runTributary(args)
  if (result.code !== 0) return []
  return result.stdout
    .trim()
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => (JSON.parse(line) as { payload: string }).payload)
}

/** The incarnation the node began this start (its /v1/status, read inside its namespace). */
async function incarnationOf(lan: Lan, node: ClusterNode): Promise<number> {
  const result = await lan.exec(node.host, 'curl', ['-s', 'http://127.0.0.1:8080/v1/status'])
  expect(result.code, result.stderr).toBe(0)
  const status = JSON.parse(result.stdout) as { incarnation: { incarnation: number } | null }
  if (status.incarnation === null) throw new Error(`${node.host.ns} began no incarnation`)
  return status.incarnation.incarnation
}

/** Every record of `origin` stored in a data dir, `partition/incarnation/offset` -> payload (u32 at byte 34). */
async function identities(dataDir: string, origin: string): Promise<Map<string, string>> {
  const ownId = readFileSync(join(dataDir, 'node-id'), 'utf8').trim()
  const store = new SegmentLogStore({ dataDir, origin: ownId, maxPendingAppends: 1, readOnly: true })
  await store.open()
  try {
    const out = new Map<string, string>()
    for (const ref of store.partitions().filter((p) => p.origin === origin && p.stream === 'default')) {
      for (const batch of store.readBatches(ref, store.partition(ref)?.firstOffset ?? 0, 1 << 30)) {
        const incarnation = batch.bytes.readUInt32BE(34)
        for (const record of decodeBatch(batch.bytes))
          out.set(`${ref.partition}/${incarnation}/${record.offset}`, record.payload.toString())
      }
    }
    return out
  } finally {
    await store.close()
  }
}

describe('a node started from a copy of another node data dir', () => {
  test('is detected, its records never reach the original copies, and no record identity names two records', async () => {
    const lan = await Lan.create({ hosts: 3 })
    cleanup.defer('tear down the LAN', () => lan.close())
    const [hostA, hostB, hostC] = lan.hosts
    if (hostA === undefined || hostB === undefined || hostC === undefined) throw new Error('three hosts')
    const dir = await cleanup.dir()
    const files = { secret: join(dir, 'cluster.secret'), config: join(dir, 'tributary.yaml') }
    const init = await runTributary(['cluster', 'init', '--secret-file', files.secret])
    expect(init.code, init.stderr).toBe(0)
    writeFileSync(
      files.config,
      [
        'cluster: { followerTimeoutMs: 2000, tailRecoveryMs: 2000 }',
        'streams:',
        '  - { name: default, match: ["sensors/#"], partitions: 1 }',
        '',
      ].join('\n'),
    )
    const dirs = { a: await cleanup.dir(), b: await cleanup.dir(), c: await cleanup.dir() }

    let a = startNode(lan, hostA, dirs.a, files, hostB)
    const b = startNode(lan, hostB, dirs.b, files, hostA)
    await started(a)
    await started(b)
    const idA = readFileSync(join(dirs.a, 'node-id'), 'utf8').trim()
    await publish(lan, a, 'a1', RECORDS)
    await until(
      "b to copy a's first records",
      async () => (await held(dirs.b, idA, false)).length === RECORDS,
    )

    // The card is copied while a is stopped; a goes on writing after it.
    await stop(a)
    cpSync(dirs.a, dirs.c, { recursive: true })
    a = startNode(lan, hostA, dirs.a, files, hostB)
    await started(a)
    await publish(lan, a, 'a2', RECORDS)
    await until(
      "b to copy a's records the copy lacks",
      async () => (await held(dirs.b, idA, false)).length === 2 * RECORDS,
    )

    const c = startNode(lan, hostC, dirs.c, files, hostB)
    await started(c)
    expect(readFileSync(join(dirs.c, 'node-id'), 'utf8').trim()).toBe(idA)
    await publish(lan, c, 'c', RECORDS)
    const saw = (node: ClusterNode) => node.log.some((l) => l.code === CONFLICT)
    await until('a, b and c to log the node id conflict', () => saw(a) && saw(b) && saw(c))
    // a and c: their own id announced elsewhere; each refuses replication with the fix.
    for (const node of [a, c])
      expect(node.log).toContainEqual(
        expect.objectContaining({
          code: CONFLICT,
          err: expect.stringContaining('delete `<dataDir>/node-id`'),
        }),
      )
    const incarnationA = await incarnationOf(lan, a)
    const incarnationC = await incarnationOf(lan, c)
    expect(incarnationC).not.toBe(incarnationA)

    for (const node of [a, b, c]) await stop(node)
    const ownA = await held(dirs.a, idA, true)
    const ownC = await held(dirs.c, idA, true)
    const copyOnB = await held(dirs.b, idA, false)
    const expected = [
      ...Array.from({ length: RECORDS }, (_, i) => `a1-${i + 1}`),
      ...Array.from({ length: RECORDS }, (_, i) => `a2-${i + 1}`),
    ]
    expect(ownA).toEqual(expected)
    // b holds only what a wrote: none of the clone's records.
    expect(copyOnB).toEqual(expected)
    expect(ownC.filter((p) => p.startsWith('c-'))).toHaveLength(RECORDS)
    expect(ownC.filter((p) => p.startsWith('a2-'))).toEqual([])

    const all = new Map<string, string>()
    for (const dataDir of [dirs.a, dirs.b, dirs.c]) {
      for (const [identity, payload] of await identities(dataDir, idA)) {
        expect(all.get(identity) ?? payload, `(${idA}, ${identity}) names two records`).toBe(payload)
        all.set(identity, payload)
      }
    }
    // Offsets given twice (a2-* on a, c-* on the clone) are told apart by the incarnation.
    expect(all.size).toBe(3 * RECORDS)
  }, 120_000)
})
