// A follower's copy survives what a follower's life brings, with two broker
// processes on 127.0.0.1 (static peers, no mDNS): killed with SIGKILL while
// it catches up with a backlog (its syncs slowed to an SD card's 200 ms
// under strace, so the catch-up takes a while), it goes on from what it holds durably and
// ends with every record of the origin once, at the origin's offsets; with
// its data dir wiped (a new card), it starts again as a new node and copies
// everything anew.

import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { afterEach, describe, expect, it } from 'vitest'
import { writeClusterSecret } from '../../src/cluster/secret.ts'
import { lockHolder } from '../../src/lib/pid-lock.ts'
import { slowSyncWrapper } from '../bench/systems.ts'
import { type ChildBroker, spawnBroker } from '../helpers/child.ts'
import { freePort } from '../helpers/free-port.ts'
import { Cleanup } from '../helpers/integration.ts'
import { runTributary } from '../helpers/run-bounded.ts'

const RECORDS = 20_000
/** About 20 MB of backlog: five fetches of 4 MiB. */
const PAYLOAD = 'x'.repeat(1000)
const WAIT_MS = 60_000

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_MS
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

/** The payloads of `origin`'s partition 0 of `default` as held in `dataDir`, in offset order, with offsets. */
async function held(dataDir: string, origin?: string): Promise<Array<[number, string]>> {
  const args = ['tail', 'default', '--from-beginning', '--json', '--data-dir', dataDir]
  if (origin !== undefined) args.push('--origin', origin)
  const result = await runTributary(args, { timeoutMs: 60_000 })
  if (result.code !== 0) return []
  return result.stdout
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      const r = JSON.parse(line) as { offset: number; payload: string }
      return [r.offset, r.payload]
    })
}

/** SIGKILL to the broker that holds `dataDir` (ours: every broker here is started by this test). */
function killLockHolder(dataDir: string): void {
  const holder = lockHolder(join(dataDir, 'tributary.pid'))
  if (holder !== null) process.kill(holder, 'SIGKILL')
}

async function publishBacklog(url: string, count: number): Promise<void> {
  const client = await mqtt.connectAsync(url, { clientId: 'backlog', reconnectPeriod: 0 })
  try {
    for (let sent = 0; sent < count; sent += 200) {
      const window = Array.from({ length: Math.min(200, count - sent) }, (_, i) =>
        client.publishAsync('sensors/s1/t', `r${sent + i}-${PAYLOAD}`, { qos: 1 }),
      )
      await Promise.all(window)
    }
  } finally {
    await client.endAsync()
  }
}

describe('a follower', () => {
  it('killed mid catch-up goes on from its durable copy; wiped, it copies everything anew', async () => {
    const dir = await cleanup.dir()
    const secretFile = join(dir, 'cluster.secret')
    writeClusterSecret(secretFile)
    const [portA, portB] = [await freePort(), await freePort()]
    const clusterArgs = (port: number, peer: number) => [
      '--cluster',
      'kill-test',
      '--cluster-secret-file',
      secretFile,
      '--replication-port',
      String(port),
      '--peer',
      `127.0.0.1:${peer}`,
    ]
    // mDNS off: only static peers on 127.0.0.1 (the network rule).
    const env = { TRIBUTARY_CONFIG: join(dir, 'tributary.yaml') }
    writeFileSync(
      env.TRIBUTARY_CONFIG,
      `cluster:\n  name: kill-test\n  secretFile: ${secretFile}\n  mdns: false\n  replicationHost: 127.0.0.1\n`,
    )
    const dataA = join(dir, 'a')
    const dataB = join(dir, 'b')
    const start = async (
      data: string,
      port: number,
      peer: number,
      wrapper: readonly string[] = [],
    ): Promise<ChildBroker> => {
      const broker = await spawnBroker(data, {
        args: clusterArgs(port, peer),
        env,
        wrapper,
        timeoutMs: 60_000,
      })
      cleanup.defer(`stop broker ${broker.pid}`, async () => {
        // Under strace, the broker is strace's child and outlives a kill of strace: its pid is in the lock file.
        if (wrapper.length > 0) killLockHolder(data)
        await broker.kill('SIGKILL')
      })
      return broker
    }
    const a = await start(dataA, portA, portB)
    await publishBacklog(a.url, RECORDS)
    const originId = readFileSync(join(dataA, 'node-id'), 'utf8').trim()
    const own = await held(dataA)
    expect(own).toHaveLength(RECORDS)

    // The follower starts with the whole backlog to copy and is killed while it does.
    const b = await start(dataB, portB, portA, slowSyncWrapper(200_000, join(dir, 'strace.log')))
    await until('the follower to start copying', async () => b.logs.some((l) => l.msg === 'following peer'))
    await new Promise((resolve) => setTimeout(resolve, 500))
    // b's pid is strace's; the broker under it is the pid in its lock file (strace would detach from it).
    killLockHolder(dataB)
    await b.exited
    const partial = await held(dataB, originId)
    expect(partial).toEqual(own.slice(0, partial.length))
    console.log(`follower killed holding ${partial.length} of ${RECORDS} records`)

    const again = await start(dataB, portB, portA)
    await until(
      'the follower to finish copying',
      async () => (await held(dataB, originId)).length === RECORDS,
    )
    expect(await held(dataB, originId)).toEqual(own)

    // A new card: the data dir is gone; the node comes back as a new node and copies it all again.
    await again.kill('SIGKILL')
    rmSync(dataB, { recursive: true, force: true })
    await start(dataB, portB, portA)
    await until(
      'the new follower to copy everything',
      async () => (await held(dataB, originId)).length === RECORDS,
    )
    expect(await held(dataB, originId)).toEqual(own)
  })
})

describe('ack: replicated with a slow follower', () => {
  it("holds the PUBACK until the follower's own fdatasync is done", async () => {
    const dir = await cleanup.dir()
    const secretFile = join(dir, 'cluster.secret')
    writeClusterSecret(secretFile)
    const [portA, portB] = [await freePort(), await freePort()]
    const config = join(dir, 'tributary.yaml')
    writeFileSync(
      config,
      [
        'cluster:',
        '  name: slow-follower',
        `  secretFile: ${secretFile}`,
        '  mdns: false',
        '  replicationHost: 127.0.0.1',
        'streams:',
        '  - name: safe',
        '    match: ["safe/#"]',
        '    ack: replicated',
        '    replicatedTimeoutMs: 30000',
        '',
      ].join('\n'),
    )
    const env = { TRIBUTARY_CONFIG: config }
    const args = (port: number, peer: number) => [
      '--replication-port',
      String(port),
      '--peer',
      `127.0.0.1:${peer}`,
    ]
    const dataA = join(dir, 'a')
    const dataB = join(dir, 'b')
    const a = await spawnBroker(dataA, { args: args(portA, portB), env })
    cleanup.defer('stop the origin', () => a.kill('SIGKILL'))
    // Every sync of the follower takes half a second (strace delays the syscall's return).
    const b = await spawnBroker(dataB, {
      args: args(portB, portA),
      env,
      wrapper: slowSyncWrapper(500_000, join(dir, 'strace.log')),
      timeoutMs: 120_000,
    })
    cleanup.defer('stop the follower', async () => {
      killLockHolder(dataB)
      await b.kill('SIGKILL')
    })
    await until('the follower to follow', async () => b.logs.some((l) => l.msg === 'following peer'))
    const client = await mqtt.connectAsync(a.url, { clientId: 'sensor-slow', reconnectPeriod: 0 })
    cleanup.defer('close the sensor', () => client.endAsync(true))
    const originId = readFileSync(join(dataA, 'node-id'), 'utf8').trim()
    for (let i = 0; i < 3; i++) {
      const sent = performance.now()
      await client.publishAsync('safe/x', `m${i}`, { qos: 1 })
      // Not a benchmark: the injected half second is a floor no run can beat if the ack waits for it.
      expect(performance.now() - sent).toBeGreaterThanOrEqual(450)
    }
    const copy = await runTributary([
      'tail',
      'safe',
      '--origin',
      originId,
      '--from-beginning',
      '--json',
      '--data-dir',
      dataB,
    ])
    expect(
      copy.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { payload: string }).payload),
    ).toEqual(['m0', 'm1', 'm2'])
  })
})
