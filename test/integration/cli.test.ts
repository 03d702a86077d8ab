// The `tributary` command against a broker running as a child process:
// tail, streams, log verify and config check print what a user reads, and
// SIGTERM stops the broker cleanly without losing data.

import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { type ChildBroker, spawnBroker } from '../helpers/child.ts'
import { Cleanup, withTimeout } from '../helpers/integration.ts'
import { type Finished, runTributary } from '../helpers/run-bounded.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

/** Starts `tributary start` as a child; killed by its pid after the test unless it has exited. */
async function startChild(dataDir: string, owner: Cleanup): Promise<ChildBroker> {
  const broker = await spawnBroker(dataDir)
  owner.defer(`kill child broker ${broker.pid}`, async () => {
    if (broker.child.exitCode !== null || broker.child.signalCode !== null) return
    process.kill(broker.pid, 'SIGKILL')
    await broker.exited
  })
  return broker
}

interface TailLine {
  stream: string
  partition: number
  offset: number
  timestamp: string
  timestampMs: number
  deviceTimeMs: number | null
  key: string | null
  keyEncoding: string
  topic: string
  clientId: string
  qos: number
  headers: Array<[string, string]>
  payload: string
  payloadEncoding: string
}

function jsonLines<T>(result: Finished): T[] {
  return result.stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as T)
}

function ok(result: Finished): Finished {
  expect(result.code, `stderr: ${result.stderr}`).toBe(0)
  return result
}

describe('reading a running broker', () => {
  const shared = new Cleanup()
  let dataDir = ''
  let broker: ChildBroker
  /** Ingest time between the first three records and the last three. */
  let boundaryMs = 0
  const binary = Buffer.from([0xff, 0xfe, 0x00, 0x01])

  beforeAll(async () => {
    dataDir = await shared.dir('tributary-cli-')
    broker = await startChild(dataDir, shared)
    const client = await shared.mqtt(broker.url, { clientId: 'cli-pub' })
    for (const n of [0, 1, 2]) await client.publishAsync('cli/data', `m${n}`, { qos: 1 })
    const first = jsonLines<TailLine>(ok(await runTributary(['tail', 'default', '--json', '-d', dataDir])))
    const lastOfFirst = first.at(-1)?.timestampMs ?? Number.NaN
    boundaryMs = lastOfFirst + 1
    // The clock must move past the boundary before the second batch: a wait of a few ms at most.
    await withTimeout(
      (async () => {
        while (Date.now() <= boundaryMs) await new Promise((resolve) => setTimeout(resolve, 2))
      })(),
      5_000,
      'the clock to pass the boundary',
    )
    for (const n of [3, 4]) await client.publishAsync('cli/data', `m${n}`, { qos: 1 })
    await client.publishAsync('cli/bin', binary, { qos: 2 })
  })
  afterAll(() => shared.run())

  test('tail default --json prints one JSON object per record with offset, key, partition and payload', async () => {
    const lines = jsonLines<TailLine>(ok(await runTributary(['tail', 'default', '--json', '-d', dataDir])))
    expect(lines.map((l) => [l.stream, l.partition, l.offset, l.key, l.topic, l.payload])).toEqual([
      ['default', 0, 0, 'cli-pub', 'cli/data', 'm0'],
      ['default', 0, 1, 'cli-pub', 'cli/data', 'm1'],
      ['default', 0, 2, 'cli-pub', 'cli/data', 'm2'],
      ['default', 0, 3, 'cli-pub', 'cli/data', 'm3'],
      ['default', 0, 4, 'cli-pub', 'cli/data', 'm4'],
      ['default', 0, 5, 'cli-pub', 'cli/bin', binary.toString('base64')],
    ])
    expect(lines.map((l) => l.payloadEncoding)).toEqual(['utf8', 'utf8', 'utf8', 'utf8', 'utf8', 'base64'])
    expect(lines.map((l) => l.qos)).toEqual([1, 1, 1, 1, 1, 2])
    for (const line of lines) {
      expect(line.clientId).toBe('cli-pub')
      expect(new Date(line.timestamp).getTime()).toBe(line.timestampMs)
    }
  })

  test('tail default --limit 2 prints the last two records', async () => {
    const lines = jsonLines<TailLine>(
      ok(await runTributary(['tail', 'default', '--json', '--limit', '2', '-d', dataDir])),
    )
    expect(lines.map((l) => l.offset)).toEqual([4, 5])
  })

  test('tail default --from-offset 1 --limit 1 prints exactly offset 1 (JSON and text)', async () => {
    const args = ['tail', 'default', '--from-offset', '1', '--limit', '1', '-d', dataDir]
    const lines = jsonLines<TailLine>(ok(await runTributary([...args, '--json'])))
    expect(lines.map((l) => [l.offset, l.payload])).toEqual([[1, 'm1']])

    const text = ok(await runTributary(args))
      .stdout.trimEnd()
      .split('\n')
    expect(text).toHaveLength(1)
    expect(text[0]).toMatch(/^default\/0@1 \S+ key=cli-pub topic=cli\/data qos=1 client=cli-pub m1$/)
  })

  test('tail default --from-time prints the records ingested at or after that time', async () => {
    const from = new Date(boundaryMs).toISOString()
    const lines = jsonLines<TailLine>(
      ok(await runTributary(['tail', 'default', '--from-time', from, '--json', '-d', dataDir])),
    )
    expect(lines.map((l) => l.offset)).toEqual([3, 4, 5])
    expect(lines.every((l) => l.timestampMs >= boundaryMs)).toBe(true)
  })

  test('tail of an unknown stream fails with TRIB_STREAM_UNKNOWN', async () => {
    const result = await runTributary(['tail', 'no-such-stream', '-d', dataDir])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('TRIB_STREAM_UNKNOWN')
  })

  test('streams --json prints one object per partition with offsets, records and bytes', async () => {
    const rows = jsonLines<Record<string, unknown>>(
      ok(await runTributary(['streams', '--json', '-d', dataDir])),
    )
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({
      stream: 'default',
      partition: 0,
      firstOffset: 0,
      nextOffset: 6,
      records: 6,
    })
    expect(rows[0]?.bytes).toBeGreaterThan(0)
    expect(Date.parse(String(rows[0]?.lastWrite))).toBeGreaterThanOrEqual(boundaryMs)
  })

  test('log verify exits 0 and reports every record, no damage, no gaps', async () => {
    const text = ok(await runTributary(['log', 'verify', '-d', dataDir]))
    expect(text.stdout).toMatch(
      /^checked \d+ batches, 6 records; 0 damaged, 0 gaps, 0 quarantined earlier\n$/,
    )
    const [report] = jsonLines<Record<string, unknown>>(
      ok(await runTributary(['log', 'verify', '--json', '-d', dataDir])),
    )
    expect(report).toMatchObject({ records: 6, corrupt: [], gaps: [], quarantined: 0 })
  })
})

describe('tail over a longer partition (in-process node, CLI beside it)', () => {
  test('--limit 12 without a --from option prints the last 12 records', async () => {
    const running = await cleanup.node()
    const client = await cleanup.mqtt(running.url, { clientId: 'many' })
    for (let n = 0; n < 15; n++) await client.publishAsync('many/x', `r${n}`, { qos: 1 })
    const lines = jsonLines<TailLine>(
      ok(await runTributary(['tail', 'default', '--json', '--limit', '12', '-d', running.dataDir])),
    )
    expect(lines.map((l) => l.offset)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14])
  })

  test('--follow prints records committed after it started, and stops at --limit', async () => {
    const running = await cleanup.node()
    const client = await cleanup.mqtt(running.url, { clientId: 'follow' })
    await client.publishAsync('follow/x', 'f0', { qos: 1 })
    let firstLine: () => void = () => undefined
    const printedFirst = new Promise<void>((resolve) => {
      firstLine = resolve
    })
    const tail = runTributary(
      ['tail', 'default', '--follow', '--from-offset', '0', '--limit', '3', '--json', '-d', running.dataDir],
      {
        onStdout: (text) => {
          if (text.includes('\n')) firstLine()
        },
      },
    )
    const started = await Promise.race([
      printedFirst.then(() => 'printed'),
      tail.then((r) => `exited: ${r.stderr}`),
    ])
    expect(started).toBe('printed')
    await client.publishAsync('follow/x', 'f1', { qos: 1 })
    await client.publishAsync('follow/x', 'f2', { qos: 1 })
    const lines = jsonLines<TailLine>(ok(await tail))
    expect(lines.map((l) => `${l.offset}:${l.payload}`)).toEqual(['0:f0', '1:f1', '2:f2'])
  })
})

describe('config check', () => {
  test('a bad file: exit 1 and every problem with its path', async () => {
    const dir = await cleanup.dir()
    const file = join(dir, 'bad.yaml')
    await writeFile(
      file,
      [
        'bogusSetting: 1',
        'streams:',
        '  - name: temps',
        "    match: ['sensors/#/temp']",
        '    partitions: 0',
        '    colour: blue',
        '',
      ].join('\n'),
    )
    const result = await runTributary(['config', 'check', file])
    expect(result.code).toBe(1)
    const lines = result.stdout.trimEnd().split('\n')
    expect(lines[0]).toBe(`${file}: 4 problem(s) [TRIB_CONFIG_INVALID]`)
    expect(lines.slice(1).sort()).toEqual(
      [
        '  (top level): Unrecognized key: "bogusSetting"',
        '  streams.0: Unrecognized key: "colour"',
        '  streams.0.match.0: a valid MQTT topic filter',
        '  streams.0.partitions: Too small: expected number to be >=1',
      ].sort(),
    )

    const json = jsonLines<{ code: string; path: string }>(
      await runTributary(['config', 'check', '--json', file]),
    )
    expect(json.map((p) => p.path).sort()).toEqual(
      ['(top level)', 'streams.0', 'streams.0.match.0', 'streams.0.partitions'].sort(),
    )
    expect(json.every((p) => p.code === 'TRIB_CONFIG_INVALID')).toBe(true)
  })

  test('an unknown field does not hide the cross-field problems (duplicate name, missing match)', async () => {
    const dir = await cleanup.dir()
    const file = join(dir, 'bad-cross.yaml')
    await writeFile(
      file,
      [
        'streams:',
        "  - { name: temps, match: ['a/#'], colour: blue }",
        "  - { name: temps, match: ['b/#'] }",
        '  - { name: nomatch }',
        '',
      ].join('\n'),
    )
    const result = await runTributary(['config', 'check', '--json', file])
    expect(result.code).toBe(1)
    const paths = jsonLines<{ path: string }>(result).map((p) => p.path)
    expect(paths.sort()).toEqual(['streams.0', 'streams.1.name', 'streams.2.match'])
  })

  test('a good file: exit 0 and "ok"', async () => {
    const dir = await cleanup.dir()
    const file = join(dir, 'good.yaml')
    await writeFile(
      file,
      [
        'limits:',
        '  maxPayloadBytes: 4096',
        'unmatched: live-only',
        'streams:',
        '  - name: temps',
        "    match: ['sensors/+/temp']",
        '    partitions: 4',
        '    key: { from: topic-level, level: 1 }',
        '',
      ].join('\n'),
    )
    const result = ok(await runTributary(['config', 'check', file]))
    expect(result.stdout).toBe(`${file}: ok\n`)
  })
})

describe('--help', () => {
  const commands = [
    [],
    ['start'],
    ['streams'],
    ['tail'],
    ['config'],
    ['config', 'check'],
    ['log'],
    ['log', 'verify'],
  ]
  test.each(
    commands.map((c) => [c.join(' ') || '(none)', c] as const),
  )('tributary %s --help exits 0', async (_, args) => {
    const result = ok(await runTributary([...args, '--help']))
    expect(result.stdout).toContain(`Usage: tributary${args.length > 0 ? ` ${args.join(' ')}` : ''} `)
  })
})

describe('lifecycle', () => {
  test('SIGTERM: exit code 0 and "tributary stopped"; a restart on the same dir keeps the data', async () => {
    const dataDir = await cleanup.dir('tributary-cli-life-')
    const first = await startChild(dataDir, cleanup)
    const client = await cleanup.mqtt(first.url, { clientId: 'life' })
    for (const n of [0, 1, 2]) await client.publishAsync('life/x', `before-${n}`, { qos: 1 })
    await client.endAsync()

    const exit = await withTimeout(first.kill('SIGTERM'), 20_000, 'the broker to exit after SIGTERM')
    expect(exit).toEqual({ code: 0, signal: null })
    expect(first.logs.map((l) => l.msg)).toContain('tributary stopped')

    const second = await startChild(dataDir, cleanup)
    const again = await cleanup.mqtt(second.url, { clientId: 'life' })
    await again.publishAsync('life/x', 'after-0', { qos: 1 })
    const lines = jsonLines<TailLine>(ok(await runTributary(['tail', 'default', '--json', '-d', dataDir])))
    expect(lines.map((l) => `${l.offset}:${l.payload}`)).toEqual([
      '0:before-0',
      '1:before-1',
      '2:before-2',
      '3:after-0',
    ])
    const stopped = await withTimeout(second.kill('SIGTERM'), 20_000, 'the second broker to exit')
    expect(stopped.code).toBe(0)
  })
})
