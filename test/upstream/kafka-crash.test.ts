// Crash during forwarding, exactly-once mode: tributary runs as a child
// process with a transactional Kafka sink, takes publishes and forwards them
// in small transactions, and is killed with SIGKILL at random moments, again
// and again on the same data dir. (Run with a 300 ms request deadline and two
// cores kept busy, which abandons transactions mid-commit, this test found the
// positions read-back bug fixed in src/upstream/kafka-committed.ts; it runs
// with 10 s here so that CI stays steady.) kcat (librdkafka, read_committed) must then
// show every acknowledged message exactly once, and no record twice.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connectAsync, type MqttClient } from 'mqtt'
import { afterEach, describe, expect, inject, it } from 'vitest'
import { type ChildBroker, spawnBroker } from '../helpers/child.ts'
import { Cleanup } from '../helpers/integration.ts'
import { type KcatRecord, kcatRead } from '../helpers/kafka-read.ts'

const ROUNDS = 6
const PER_ROUND = 300
const STREAM = 'crash'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

// The project's shared broker (test/upstream/global-setup.ts): this test never stops it.
const bootstrap = inject('kafkaBootstrap')

function writeConfig(dir: string): string {
  const path = join(dir, 'tributary.yaml')
  writeFileSync(
    path,
    [
      'streams:',
      `  - name: ${STREAM}`,
      `    match: ["${STREAM}/#"]`,
      '    partitions: 3',
      '    key: { from: topic-level, level: 1 }',
      'sinks:',
      '  - name: central',
      '    type: kafka',
      `    brokers: ["${bootstrap}"]`,
      '    exactlyOnce: true',
      '    maxBatchRecords: 20',
      '    lingerMs: 0',
      '    requestTimeoutMs: 10000',
      '    retry: { initialMs: 100, maxMs: 1000 }',
      '',
    ].join('\n'),
  )
  return path
}

/** Publishes until killed or done; returns the payloads whose PUBACK arrived. */
async function publishRound(broker: ChildBroker, round: number): Promise<string[]> {
  const acked: string[] = []
  let client: MqttClient
  try {
    // allowRetries false: a kill before the CONNACK closes the socket without
    // an error, and connectAsync would otherwise never settle.
    client = await connectAsync(broker.url, { reconnectPeriod: 0, clientId: `crash-pub-${round}` }, false)
  } catch {
    // Killed before the connection was up: nothing acked this round.
    return acked
  }
  client.on('error', () => undefined)
  // mqtt.js keeps a QoS 1 publish waiting for a reconnect that never comes: the kill ends the round.
  const closed = new Promise<never>((_, reject) => client.once('close', () => reject(new Error('closed'))))
  closed.catch(() => undefined)
  try {
    for (let i = 0; i < PER_ROUND; i++) {
      const payload = `r${round}-${i}`
      await Promise.race([client.publishAsync(`${STREAM}/dev${i % 5}/t`, payload, { qos: 1 }), closed])
      acked.push(payload)
    }
  } catch {
    // The broker was killed mid-publish: what was acked so far counts.
  } finally {
    await client.endAsync(true).catch(() => undefined)
  }
  return acked
}

async function settle(expected: ReadonlySet<string>, timeoutMs: number): Promise<KcatRecord[]> {
  const deadline = Date.now() + timeoutMs
  let records: KcatRecord[] = []
  while (Date.now() < deadline) {
    records = await kcatRead(bootstrap, STREAM).catch(() => [])
    const seen = new Set(records.map((r) => r.payload))
    if ([...expected].every((p) => seen.has(p))) return records
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
  return records
}

describe('kill -9 while forwarding to Kafka exactly once', () => {
  it(
    `shows every acknowledged message exactly once after ${ROUNDS} kills`,
    { timeout: 240_000 },
    async () => {
      const dir = await cleanup.dir('tributary-kafka-crash-')
      const config = writeConfig(dir)
      const acked = new Set<string>()
      for (let round = 0; round < ROUNDS; round++) {
        const broker = await spawnBroker(join(dir, 'data'), { args: ['--config', config] })
        const killAfterMs = 200 + Math.floor(Math.random() * 1000)
        const publishing = publishRound(broker, round)
        await new Promise((resolve) => setTimeout(resolve, killAfterMs))
        await broker.kill('SIGKILL')
        for (const payload of await publishing) acked.add(payload)
      }
      const last = await spawnBroker(join(dir, 'data'), { args: ['--config', config] })
      cleanup.defer('stop the last broker', () => last.kill('SIGTERM'))
      const records = await settle(acked, 45_000)

      const payloads = records.map((r) => r.payload ?? '')
      const missing = [...acked].filter((p) => !payloads.includes(p))
      const counts = new Map<string, number>()
      for (const p of payloads) counts.set(p, (counts.get(p) ?? 0) + 1)
      const duplicated = [...counts].filter(([, n]) => n > 1).map(([p]) => p)
      const positions = records.map(
        (r) => `${header(r, 'tributary-partition')}@${header(r, 'tributary-offset')}`,
      )
      console.log(
        `${ROUNDS} kills: ${acked.size} acked, ${records.length} records in Kafka, ${missing.length} missing, ${duplicated.length} duplicated`,
      )
      if (missing.length > 0) {
        console.log('missing', missing.slice(0, 10).join(' '))
        for (const l of last.logs) if (Number(l.level) >= 40) console.log(JSON.stringify(l).slice(0, 400))
      }
      expect(acked.size).toBeGreaterThan(0)
      expect(missing).toEqual([])
      expect(duplicated).toEqual([])
      expect(new Set(positions).size).toBe(records.length)
    },
  )
})

function header(record: KcatRecord, name: string): string | undefined {
  return record.headers.find(([n]) => n === name)?.[1]
}
