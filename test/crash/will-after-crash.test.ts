// A client connected when the broker died never got its will published by
// that broker. After the restart the will (restored from LMDB with the dead
// broker's id) is published by aedes' will sweep, live and into the log.

import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { brokerScope } from '../helpers/broker-scope.ts'
import { runCli } from '../helpers/child.ts'

describe('wills after a crash', () => {
  const scope = brokerScope()

  it('publishes the will of a client that was connected at the kill', async () => {
    const dir = await scope.dir()
    let broker = await scope.start(dir)
    const device = await mqtt.connectAsync(broker.url, {
      clientId: 'device-9',
      clean: false,
      reconnectPeriod: 0,
      will: { topic: 'status/device-9', payload: Buffer.from('offline'), qos: 1, retain: false },
    })
    device.on('error', () => undefined)
    await scope.kill('SIGKILL')
    device.end(true)

    broker = await scope.start(dir)
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

    const tail = await runCli(['tail', 'default', '--json', '--data-dir', dir])
    expect(tail.stdout).toContain('"topic":"status/device-9"')
  }, 90_000)
})
