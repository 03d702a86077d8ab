// Two nodes whose wall clocks differ by hours (a Pi has no real-time clock:
// one that booted without NTP can be hours off), as broker processes on
// 127.0.0.1 with static peers. b runs under libfaketime (Debian's
// `faketime`, scripts/install-test-deps) five hours ahead; the monotonic
// clock stays true (FAKETIME_DONT_FAKE_MONOTONIC=1), as on a real node whose
// wall clock is wrong. The stream keeps records for one hour, and retention
// runs every 100 ms. To b's clock every record of a is five hours old, yet
// b's copy of a keeps them all: a copy's retention follows its origin's log
// start, never the local clock. Then a restarts three hours ahead: its own
// records are now too old on its own clock, it deletes them, and b's copy
// follows a's new log start; a's copy of b (records that look two hours in
// the future to a) stays whole.

import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { afterEach, describe, expect, it } from 'vitest'
import { writeClusterSecret } from '../../src/cluster/secret.ts'
import { type ClusterChild, startClusterChild, until } from '../helpers/cluster-child.ts'
import { freePort } from '../helpers/free-port.ts'
import { Cleanup } from '../helpers/integration.ts'

const STREAM = 'aged'
const RECORDS = 40
const HOUR_MS = 3600 * 1000
const RETENTION_CHECK_MS = 100

/**
 * libfaketime itself, preloaded into the broker (the `faketime` command forks
 * and would outlive a kill, leaving the broker running); the thread-safe
 * build, as Node runs threads.
 */
const LIBFAKETIME = `/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu/faketime/libfaketimeMT.so.1`

/** The environment that moves a process's wall clock `hours` ahead and leaves its monotonic clock true. */
function fakeClock(hours: number): NodeJS.ProcessEnv {
  // Only the wall clock moves: timers, heartbeats and timeouts run on the true monotonic clock.
  return { LD_PRELOAD: LIBFAKETIME, FAKETIME: `+${hours}h`, FAKETIME_DONT_FAKE_MONOTONIC: '1' }
}

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

interface PartitionRead {
  readonly firstOffset: number
  readonly nextOffset: number
  readonly records: ReadonlyArray<{ readonly offset: number; readonly timestampMs: number; payload: string }>
}

/** `origin`'s partition 0 of the stream as `holder` serves it (its own log or its copy). */
async function partitionOn(holder: ClusterChild, origin: string): Promise<PartitionRead> {
  const url = `${holder.httpUrl}/v1/streams/${STREAM}/partitions/0/records?origin=${origin}&maxRecords=1000`
  const response = await fetch(url)
  if (!response.ok) return { firstOffset: 0, nextOffset: 0, records: [] }
  return (await response.json()) as PartitionRead
}

async function publish(url: string, tag: string): Promise<void> {
  const client = await mqtt.connectAsync(url, { clientId: `sensor-${tag}`, reconnectPeriod: 0 })
  try {
    for (let i = 0; i < RECORDS; i++) await client.publishAsync(`s/${tag}`, `${tag}${i}`, { qos: 1 })
  } finally {
    await client.endAsync()
  }
}

describe('clock skew of hours between nodes', () => {
  it("deletes no copy early on the node whose clock is ahead: copies follow their origin's log start", async () => {
    if (!existsSync(LIBFAKETIME))
      throw new Error(
        `this test needs Debian's libfaketime (${LIBFAKETIME}): scripts/install-test-deps installs faketime (as root)`,
      )
    const dir = await cleanup.dir()
    const secretFile = join(dir, 'cluster.secret')
    writeClusterSecret(secretFile)
    const config = join(dir, 'tributary.yaml')
    writeFileSync(
      config,
      [
        `retentionCheckMs: ${RETENTION_CHECK_MS}`,
        'cluster:',
        '  name: skewed',
        `  secretFile: ${secretFile}`,
        '  mdns: false',
        '  replicationHost: 127.0.0.1',
        '  heartbeatMs: 200',
        'streams:',
        `  - name: ${STREAM}`,
        '    match: ["s/#"]',
        `    retention: { maxAgeMs: ${HOUR_MS}, maxBytes: null }`,
        '',
      ].join('\n'),
    )
    const [portA, portB] = [await freePort(), await freePort()]
    const start = async (
      name: string,
      port: number,
      peer: number,
      aheadHours: number,
    ): Promise<ClusterChild> => {
      const child = await startClusterChild(join(dir, name), {
        args: ['--replication-port', String(port), '--peer', `127.0.0.1:${peer}`],
        env: { TRIBUTARY_CONFIG: config, ...(aheadHours === 0 ? {} : fakeClock(aheadHours)) },
      })
      cleanup.defer(`stop broker ${child.broker.pid}`, () => child.broker.kill('SIGKILL'))
      return child
    }
    const a = await start('a', portA, portB, 0)
    const b = await start('b', portB, portA, 5)
    await publish(a.broker.url, 'a')
    await publish(b.broker.url, 'b')
    await until(
      'each node to copy the other',
      async () =>
        (await partitionOn(b, a.nodeId)).nextOffset === RECORDS &&
        (await partitionOn(a, b.nodeId)).nextOffset === RECORDS,
    )

    // The skew is real: b stamps its records about five hours after a does.
    const ownA = await partitionOn(a, a.nodeId)
    const ownB = await partitionOn(b, b.nodeId)
    const skew = (ownB.records[0]?.timestampMs ?? 0) - (ownA.records[0]?.timestampMs ?? 0)
    expect(skew).toBeGreaterThan(4.9 * HOUR_MS)
    expect(skew).toBeLessThan(5.1 * HOUR_MS)

    // Twenty retention runs on each node later, b still holds every record of a (five hours old to b's clock).
    await new Promise((resolve) => setTimeout(resolve, 20 * RETENTION_CHECK_MS))
    const copyOnB = await partitionOn(b, a.nodeId)
    expect(copyOnB.firstOffset).toBe(0)
    expect(copyOnB.records).toEqual(ownA.records)
    expect((await partitionOn(a, b.nodeId)).records).toEqual(ownB.records)

    // a comes back three hours ahead: on its own clock its records are now older than an hour.
    await a.broker.kill('SIGTERM')
    const later = await start('a', portA, portB, 3)
    await until(
      "a's retention to delete its own old records",
      async () => (await partitionOn(later, a.nodeId)).firstOffset === RECORDS,
    )
    await until(
      "b's copy to follow a's log start",
      async () => (await partitionOn(b, a.nodeId)).firstOffset === RECORDS,
    )
    // b's records look two hours in the future to a: its copy keeps them, as b itself does.
    expect((await partitionOn(later, b.nodeId)).records).toEqual(ownB.records)
    expect((await partitionOn(b, b.nodeId)).records).toEqual(ownB.records)
  })
})
