// Debian's mosquitto_pub and mosquitto_sub (libmosquitto, MQTT 3.1.1) against
// tributary: an independent client implementation on both directions.

import { afterEach, describe, expect, test } from 'vitest'
import { Cleanup, readAll } from '../helpers/integration.ts'
import { runBounded } from '../helpers/run-bounded.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

const TOOL_TIMEOUT_MS = 20_000

function target(port: number): string[] {
  return ['-h', '127.0.0.1', '-p', String(port)]
}

describe('mosquitto_pub', () => {
  test('-q 1 and -q 2 publishes with -i land as records with that client id and key', async () => {
    const { node, port } = await cleanup.node()
    for (const qos of [1, 2]) {
      const result = await runBounded(
        'mosquitto_pub',
        [
          ...target(port),
          '-q',
          String(qos),
          '-i',
          `mosq-q${qos}`,
          '-t',
          `debian/q${qos}`,
          '-m',
          `hello q${qos}`,
        ],
        { timeoutMs: TOOL_TIMEOUT_MS },
      )
      expect(result.code, result.stderr).toBe(0)
    }
    const records = readAll(node.store, 'default')
    expect(
      records.map((r) => ({
        offset: r.offset,
        key: r.key?.toString(),
        clientId: r.clientId,
        topic: r.topic,
        qos: r.qos,
        payload: r.payload.toString(),
      })),
    ).toEqual([
      { offset: 0, key: 'mosq-q1', clientId: 'mosq-q1', topic: 'debian/q1', qos: 1, payload: 'hello q1' },
      { offset: 1, key: 'mosq-q2', clientId: 'mosq-q2', topic: 'debian/q2', qos: 2, payload: 'hello q2' },
    ])
  })
})

describe('mosquitto_sub', () => {
  test('-C 1 receives a message published by mqtt.js', async () => {
    const { url, port } = await cleanup.node()
    // -d prints "received SUBACK" once subscribed: the publish is made only after that.
    // stdbuf -oL: line-buffered stdout, or the line would only show up at exit.
    let subscribed: () => void = () => undefined
    const ready = new Promise<void>((resolve) => {
      subscribed = resolve
    })
    const sub = runBounded(
      'stdbuf',
      [
        '-oL',
        'mosquitto_sub',
        ...target(port),
        '-d',
        '-q',
        '1',
        '-i',
        'mosq-sub',
        '-t',
        'debian/live',
        '-C',
        '1',
        '-W',
        '15',
      ],
      {
        timeoutMs: TOOL_TIMEOUT_MS,
        onStdout: (text) => {
          if (text.includes('received SUBACK')) subscribed()
        },
      },
    )
    // A failed start must not leave the test waiting for SUBACK until its timeout.
    const first = await Promise.race([ready.then(() => 'subscribed'), sub.then((r) => `exited: ${r.stderr}`)])
    expect(first).toBe('subscribed')
    const publisher = await cleanup.mqtt(url, { clientId: 'mqttjs-pub' })
    await publisher.publishAsync('debian/live', 'from mqtt.js', { qos: 1 })

    const result = await sub
    expect(result.code, result.stderr).toBe(0)
    expect(result.stdout.split('\n')).toContain('from mqtt.js')
  })

  test('a message retained with mosquitto_pub -r is received by a later mosquitto_sub', async () => {
    const { port } = await cleanup.node()
    const pub = await runBounded(
      'mosquitto_pub',
      [...target(port), '-q', '1', '-r', '-i', 'mosq-retain', '-t', 'debian/state', '-m', 'retained state'],
      { timeoutMs: TOOL_TIMEOUT_MS },
    )
    expect(pub.code, pub.stderr).toBe(0)
    const sub = await runBounded(
      'mosquitto_sub',
      [...target(port), '-q', '1', '-i', 'mosq-late', '-t', 'debian/#', '-C', '1', '-W', '15', '-v'],
      { timeoutMs: TOOL_TIMEOUT_MS },
    )
    expect(sub.code, sub.stderr).toBe(0)
    expect(sub.stdout).toBe('debian/state retained state\n')
  })
})
