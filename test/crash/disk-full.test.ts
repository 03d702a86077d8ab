// A full disk: publishes that cannot be stored are refused (never
// acknowledged), the broker keeps running and serving, and every publish it
// did acknowledge is still there. The data dir is a 3 MB tmpfs mounted by the
// test (CI runs as root).

import { execFileSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { afterEach, describe, expect, it } from 'vitest'
import { brokerScope } from '../helpers/broker-scope.ts'
import { runCli } from '../helpers/child.ts'

describe('disk full', () => {
  const scope = brokerScope()
  let mounted: string | null = null

  afterEach(async () => {
    // Runs before the scope's own cleanup (vitest runs afterEach hooks in reverse
    // order): the broker must be gone before its disk is unmounted.
    await scope.kill('SIGKILL')
    if (mounted !== null) execFileSync('umount', [mounted])
    mounted = null
  })

  it('refuses what it cannot store, keeps serving and keeps every acknowledged record', async () => {
    const mountPoint = join(await scope.dir(), 'small-disk')
    mkdirSync(mountPoint)
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mountPoint])
    mounted = mountPoint
    const dataDir = join(mountPoint, 'data')
    const broker = await scope.start(dataDir)

    const acked: number[] = []
    let refused = 0
    for (let i = 0; i < 60 && refused === 0; i++) {
      const client = await mqtt.connectAsync(broker.url, { clientId: 'filler', reconnectPeriod: 0 })
      client.on('error', () => undefined)
      const payload = Buffer.alloc(100_000, i % 256)
      try {
        await Promise.race([
          client.publishAsync('bulk/data', payload, { qos: 1 }),
          new Promise((_, reject) => client.once('close', () => reject(new Error('closed')))),
        ])
        acked.push(i)
      } catch {
        refused++
      }
      client.end(true)
    }
    expect(refused, 'the disk never filled up').toBe(1)
    expect(acked.length).toBeGreaterThan(5)
    const logs = broker.logs
    for (
      let waited = 0;
      waited < 5000 && !logs.some((l) => l.code === 'TRIB_STORE_WRITE_FAILED');
      waited += 50
    ) {
      await new Promise((r) => setTimeout(r, 50))
    }
    expect(logs.filter((l) => typeof l.code === 'string').map((l) => l.code)).toContain(
      'TRIB_STORE_WRITE_FAILED',
    )

    // Still serving: a new client connects and a small record still fits.
    const small = await mqtt.connectAsync(broker.url, { clientId: 'small', reconnectPeriod: 0 })
    await small.publishAsync('status/x', 'ok', { qos: 1 })
    await small.endAsync()

    const tail = await runCli(['tail', 'default', '--from-beginning', '--json', '--data-dir', dataDir])
    expect(tail.code, tail.stderr).toBe(0)
    const records = tail.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { topic: string; payload: string; payloadEncoding: string })
    const bulk = records.filter((r) => r.topic === 'bulk/data')
    expect(
      bulk.map((r) => Buffer.from(r.payload, r.payloadEncoding === 'base64' ? 'base64' : 'utf8')[0]),
    ).toEqual(acked.map((i) => i % 256))
    expect(records.at(-1)?.topic).toBe('status/x')
  })
})
