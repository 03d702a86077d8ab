// A damaged LMDB environment (flash bit-rot, a bad copy) can crash any
// process that reads it. The node must start anyway: the damaged file is
// moved aside for inspection and a new log starts under a new node id.

import { closeSync, existsSync, openSync, readdirSync, readFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { brokerScope } from '../helpers/broker-scope.ts'
import { runCli } from '../helpers/child.ts'

describe('damaged LMDB environment', () => {
  const scope = brokerScope()

  it('moves the environment aside, starts under a new node id and accepts publishes', async () => {
    const dir = await scope.dir()
    let broker = await scope.start(dir)
    const client = await mqtt.connectAsync(broker.url, { clientId: 'c1' })
    await client.publishAsync('sensors/a', 'before', { qos: 1 })
    await client.endAsync()
    expect((await scope.kill('SIGTERM'))?.code).toBe(0)
    const oldNodeId = readFileSync(join(dir, 'node-id'), 'utf8').trim()

    // Overwrite LMDB's meta pages: opening this file crashes a reader outright.
    const fd = openSync(join(dir, 'log.mdb'), 'r+')
    writeSync(fd, Buffer.alloc(256, 0xff), 0, 256, 0)
    closeSync(fd)

    broker = await scope.start(dir)
    const damaged = broker.logs.find((l) => l.code === 'TRIB_STORE_DAMAGED')
    expect(damaged).toMatchObject({ previousNodeId: oldNodeId })
    const newNodeId = readFileSync(join(dir, 'node-id'), 'utf8').trim()
    expect(newNodeId).not.toBe(oldNodeId)
    expect(readdirSync(dir).some((f) => f.startsWith('log.mdb.damaged-'))).toBe(true)
    expect(existsSync(String(damaged?.movedTo))).toBe(true)

    const again = await mqtt.connectAsync(broker.url, { clientId: 'c1' })
    await again.publishAsync('sensors/a', 'after', { qos: 1 })
    await again.endAsync()
    const tail = await runCli(['tail', 'default', '--json', '--data-dir', dir])
    expect(tail.code).toBe(0)
    const records = tail.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { payload: string; offset: number })
    expect(records.map((r) => [r.offset, r.payload])).toEqual([[0, 'after']])
  })
})
