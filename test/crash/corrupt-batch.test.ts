// Damaged record bytes on disk (bit rot inside one batch's payload in its
// segment file, everything around it intact): the broker still starts and accepts publishes;
// damage among the tail batches checked at start is logged as
// TRIB_BATCH_CORRUPT and quarantined; older damage is found by
// `tributary log verify` (exit 1, naming the batch) and skipped with a
// warning by `tributary tail`, and every other record reads back intact.

import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { afterEach, describe, expect, it } from 'vitest'
import { DEFAULT_TAIL_BATCHES_CHECKED } from '../../src/log/segment-log-store.ts'
import { type ChildBroker, spawnBroker } from '../helpers/child.ts'
import { invertAfterMarker } from '../helpers/damage-file.ts'
import { runTributary } from '../helpers/run-bounded.ts'
import { tempDir } from '../helpers/temp-dir.ts'

const STREAM = 'sensors'
const TOPIC = 'sensors/dev-7/temp'
const CLIENT_ID = 'corrupt-writer'
/** Payload bytes after the marker: the damage goes here, inside the payload. */
const FILLER = 'reading=21.5C;humidity=40%;battery=3.1V;'.repeat(3)

interface TailRecord {
  stream: string
  partition: number
  offset: number
  topic: string
  clientId: string
  qos: number
  payload: string
  payloadEncoding: string
}

function marker(tag: string, i: number): string {
  return `<<rec ${tag} ${String(i).padStart(3, '0')}>>`
}

function payloadOf(tag: string, i: number): string {
  return `${marker(tag, i)}${FILLER}`
}

function writeConfig(dir: string): string {
  const path = join(dir, 'corrupt.yaml')
  writeFileSync(
    path,
    [
      'unmatched: live-only',
      'streams:',
      `  - name: ${STREAM}`,
      '    match: ["sensors/#"]',
      '    partitions: 1',
      '',
    ].join('\n'),
  )
  return path
}

/** Publishes each record on its own, waiting for its PUBACK: one group commit, so one batch, per record. */
async function publishEach(url: string, payloads: readonly string[]): Promise<void> {
  const client = await mqtt.connectAsync(url, { clientId: CLIENT_ID, clean: true, reconnectPeriod: 0 })
  try {
    for (const payload of payloads) await client.publishAsync(TOPIC, payload, { qos: 1 })
  } finally {
    await client.endAsync()
  }
}

function parseTail(stdout: string): TailRecord[] {
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as TailRecord)
}

describe('a damaged batch on disk', () => {
  let broker: ChildBroker | null = null
  let dir: Awaited<ReturnType<typeof tempDir>> | null = null

  afterEach(async () => {
    // Only the child this test started, by its pid.
    if (broker !== null) await broker.kill('SIGKILL')
    broker = null
    await dir?.remove()
    dir = null
  })

  async function start(dataDir: string, config: string): Promise<ChildBroker> {
    broker = await spawnBroker(dataDir, { args: ['--config', config] })
    return broker
  }

  async function stop(): Promise<void> {
    const exit = await broker?.kill('SIGTERM')
    broker = null
    expect(exit?.code, 'clean shutdown exit code').toBe(0)
  }

  /** Writes `count` records, one batch each, stops the broker and damages record `victim` on disk. */
  async function writeAndDamage(count: number, victim: number): Promise<{ config: string; tag: string }> {
    dir = await tempDir('tributary-crash-corrupt-')
    const config = writeConfig(dir.path)
    const tag = Date.now().toString(36)
    const first = await start(dir.path, config)
    await publishEach(
      first.url,
      Array.from({ length: count }, (_, i) => payloadOf(tag, i)),
    )
    await stop()
    const segments = join(dir.path, 'segments')
    const files = readdirSync(segments).filter((f) => f.endsWith('.seg'))
    const damage = {
      offsets: files.flatMap((f) => invertAfterMarker(join(segments, f), marker(tag, victim), 8, 6).offsets),
    }
    console.log(
      `damaged record ${victim} of ${count}: marker found at file offsets ${damage.offsets.join(', ')}`,
    )
    expect(damage.offsets.length, 'the victim record is in a segment file').toBeGreaterThan(0)
    return { config, tag }
  }

  it('in the last batch of its partition: logged and quarantined at start, the rest intact', async () => {
    const count = 12
    const victim = count - 1
    const { config, tag } = await writeAndDamage(count, victim)
    const dataDir = dir?.path ?? ''

    const second = await start(dataDir, config)
    const corrupt = second.logs.filter((l) => l.code === 'TRIB_BATCH_CORRUPT')
    expect(corrupt.map((l) => l.damage)).toEqual([
      expect.objectContaining({ stream: STREAM, partition: 0, baseOffset: victim, recordCount: 1 }),
    ])
    expect(String((corrupt[0]?.damage as { error?: unknown }).error)).toMatch(/CRC32C mismatch/)
    // It accepts connections and publishes after the damage.
    await publishEach(second.url, [payloadOf(tag, count)])
    await stop()

    const verify = await runTributary(['log', 'verify', '--json', '--data-dir', dataDir, '--config', config])
    expect(verify.code, verify.stdout + verify.stderr).toBe(0)
    const report = JSON.parse(verify.stdout) as {
      corrupt: unknown[]
      quarantined: number
      gaps: Array<{ stream: string; origin: string; partition: number; from: number; to: number }>
    }
    expect(report.corrupt).toEqual([])
    expect(report.quarantined).toBe(1)
    const origin = readFileSync(join(dataDir, 'node-id'), 'utf8').trim()
    expect(report.gaps).toEqual([{ stream: STREAM, origin, partition: 0, from: victim, to: victim }])

    const tail = await runTributary([
      'tail',
      STREAM,
      '--from-beginning',
      '--json',
      '--data-dir',
      dataDir,
      '--config',
      config,
    ])
    expect(tail.code, tail.stderr).toBe(0)
    expect(tail.stderr).toContain(`${STREAM}/0 offsets ${victim}-${victim} are missing`)
    // The quarantine left a gap record in the partition (offset `count`), so upstream learns of it.
    const rows = parseTail(tail.stdout)
    const gapRow = rows.find((r) => r.offset === count)
    expect(gapRow?.topic).toBe(`$tributary/gap/${STREAM}/0`)
    expect(JSON.parse(gapRow?.payload ?? '{}')).toMatchObject({
      stream: STREAM,
      partition: 0,
      from: victim,
      to: victim,
      count: 1,
      reason: expect.stringContaining('damaged batch quarantined'),
    })
    const expected = [...Array.from({ length: count }, (_, i) => i).filter((i) => i !== victim), count + 1]
    expect(
      rows.filter((r) => r !== gapRow).map((r) => [r.offset, r.payload, r.topic, r.clientId, r.qos]),
    ).toEqual(expected.map((i) => [i, payloadOf(tag, i === count + 1 ? count : i), TOPIC, CLIENT_ID, 1]))
  })

  it('in an older batch: start still works, `log verify` exits 1 naming it, `tail` warns and prints the rest', async () => {
    const count = 20
    const victim = 3
    expect(count - victim, 'the victim is older than the tail checked at start').toBeGreaterThan(
      DEFAULT_TAIL_BATCHES_CHECKED,
    )
    const { config, tag } = await writeAndDamage(count, victim)
    const dataDir = dir?.path ?? ''

    const second = await start(dataDir, config)
    expect(second.logs.filter((l) => l.code === 'TRIB_BATCH_CORRUPT')).toEqual([])
    const opened = second.logs.find((l) => l.msg === 'log store open') as
      | { recovery?: { quarantined?: unknown[] } }
      | undefined
    expect(opened?.recovery?.quarantined).toEqual([])
    await publishEach(second.url, [payloadOf(tag, count)])
    await stop()

    const verify = await runTributary(['log', 'verify', '--data-dir', dataDir, '--config', config])
    expect(verify.code, verify.stdout + verify.stderr).toBe(1)
    const named = verify.stdout.split('\n').filter((l) => l.includes('TRIB_BATCH_CORRUPT'))
    expect(named).toHaveLength(1)
    expect(named[0]).toContain(`TRIB_BATCH_CORRUPT ${STREAM}/0@${victim} (1 records): `)
    expect(named[0]).toContain('CRC32C mismatch')
    expect(verify.stdout).toMatch(/checked 21 batches, 20 records; 1 damaged, 0 gaps/)

    const tail = await runTributary([
      'tail',
      STREAM,
      '--from-beginning',
      '--json',
      '--data-dir',
      dataDir,
      '--config',
      config,
    ])
    expect(tail.code, tail.stderr).toBe(0)
    const warnings = tail.stderr.split('\n').filter((l) => l.startsWith('warning: TRIB_BATCH_CORRUPT'))
    expect(warnings).toHaveLength(1)
    expect(JSON.parse(warnings[0]?.slice('warning: TRIB_BATCH_CORRUPT '.length) ?? '{}')).toMatchObject({
      stream: STREAM,
      partition: 0,
      baseOffset: victim,
      recordCount: 1,
    })
    const expected = Array.from({ length: count + 1 }, (_, i) => i).filter((i) => i !== victim)
    expect(parseTail(tail.stdout).map((r) => [r.offset, r.payload, r.topic, r.clientId, r.qos])).toEqual(
      expected.map((i) => [i, payloadOf(tag, i), TOPIC, CLIENT_ID, 1]),
    )
  })
})
