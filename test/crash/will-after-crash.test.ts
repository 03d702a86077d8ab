// A client connected when the broker died never got its will published by
// that broker. After the restart the will (restored from LMDB with the dead
// broker's id) is published by aedes' will sweep, live and into the log.

import mqtt from 'mqtt'
import { afterEach, describe, expect, it } from 'vitest'
import { type ChildBroker, runCli, spawnBroker } from '../helpers/child.ts'
import { tempDir } from '../helpers/temp-dir.ts'

describe('wills after a crash', () => {
  let broker: ChildBroker | null = null
  let dir: Awaited<ReturnType<typeof tempDir>> | null = null

  afterEach(async () => {
    if (broker !== null) await broker.kill('SIGKILL')
    broker = null
    await dir?.remove()
  })

  it('publishes the will of a client that was connected at the kill', async () => {
    dir = await tempDir()
    broker = await spawnBroker(dir.path)
    const device = await mqtt.connectAsync(broker.url, {
      clientId: 'device-9',
      clean: false,
      reconnectPeriod: 0,
      will: { topic: 'status/device-9', payload: Buffer.from('offline'), qos: 1, retain: false },
    })
    device.on('error', () => undefined)
    await broker.kill('SIGKILL')
    device.end(true)

    broker = await spawnBroker(dir.path)
    const watcher = await mqtt.connectAsync(broker.url, { clientId: 'watcher' })
    const will = new Promise<string>((resolve) =>
      watcher.on('message', (_t, payload) => resolve(payload.toString())),
    )
    await watcher.subscribeAsync('status/#', { qos: 1 })
    const received = await Promise.race([
      will,
      new Promise<string>((_, reject) => setTimeout(() => reject(new Error('no will within 45 s')), 45_000)),
    ])
    expect(received).toBe('offline')
    await watcher.endAsync()

    const tail = await runCli(['tail', 'default', '--json', '--data-dir', dir.path])
    expect(tail.stdout).toContain('"topic":"status/device-9"')
  }, 90_000)
})
