// `tributary status` and `tributary produce` against a broker running as a
// child process: produce publishes stdin lines over MQTT into the stream (and
// the partition asked for), status reads the live node's admin API, and
// falls back to the store, saying so, when the API is off or the node is gone.

import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { spawnBroker } from '../helpers/child.ts'
import { freePort } from '../helpers/free-port.ts'
import { Cleanup } from '../helpers/integration.ts'
import { runTributary } from '../helpers/run-bounded.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

const CONFIG = [
  'streams:',
  '  - name: temps',
  '    match: ["sensors/+/temperature"]',
  '    partitions: 4',
  '    key: { from: topic-level, level: 1 }',
  '',
].join('\n')

describe('tributary status and produce', () => {
  test('produce lines into a partition, then status live from the API and from the store', async () => {
    const dir = await cleanup.dir()
    const config = join(dir, 'tributary.yaml')
    await writeFile(config, CONFIG)
    const dataDir = join(dir, 'data')
    const httpPort = await freePort()
    const env = { TRIBUTARY_HTTP_PORT: String(httpPort) }
    const broker = await spawnBroker(dataDir, { args: ['--config', config], env })
    cleanup.defer(`kill child broker ${broker.pid}`, async () => {
      if (broker.child.exitCode !== null || broker.child.signalCode !== null) return
      process.kill(broker.pid, 'SIGKILL')
      await broker.exited
    })
    const where = ['--config', config, '--data-dir', dataDir, '--mqtt-port', String(broker.port)]

    const produced = await runTributary(['produce', 'temps', ...where, '--partition', '3', '--json'], {
      input: 'one\ntwo\nthree\n',
    })
    expect(produced.stderr).toBe('')
    expect(produced.code).toBe(0)
    expect(JSON.parse(produced.stdout)).toMatchObject({ stream: 'temps', produced: 3, refused: [] })
    const keyed = await runTributary(['produce', 'temps', ...where, '--key', 'dev-7'], { input: 'x\n' })
    expect(keyed.code).toBe(0)
    expect(keyed.stdout).toMatch(/^produced 1 records to temps \(topic sensors\/dev-7\/temperature/)
    const unknown = await runTributary(['produce', 'nope', ...where], { input: 'x\n' })
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain('TRIB_STREAM_UNKNOWN')

    const records = (await (
      await fetch(`http://127.0.0.1:${httpPort}/v1/streams/temps/partitions/3/records`)
    ).json()) as { records: Array<{ payload: string }> }
    // dev-7 happens to land in partition 3 as well, after the three lines.
    expect(records.records.map((r) => r.payload).slice(0, 3)).toEqual(['one', 'two', 'three'])

    const statusArgs = ['status', '--config', config, '--data-dir', dataDir]
    const live = await runTributary([...statusArgs, '--json'], { env })
    expect(live.code).toBe(0)
    const report = JSON.parse(live.stdout) as {
      source: string
      health: { ready: boolean }
      streams: Array<{ name: string; records: number }>
    }
    expect(report.source).toBe('api')
    expect(report.health.ready).toBe(true)
    expect(report.streams.find((s) => s.name === 'temps')?.records).toBe(4)
    const screen = await runTributary(statusArgs, { env })
    expect(screen.stdout).toMatch(/READY/)
    expect(screen.stdout).toMatch(/temps\s+4\s+4/)

    const offline = await runTributary([...statusArgs, '--http-port', 'off', '--json'])
    const fromStore = JSON.parse(offline.stdout) as { source: string; runningPid: number; health: null }
    expect(fromStore).toMatchObject({ source: 'store', runningPid: broker.pid, health: null })

    await broker.kill('SIGTERM')
    const gone = await runTributary(statusArgs, { env })
    expect(gone.code).toBe(0)
    expect(gone.stdout).toMatch(/health unknown: no answer from http:\/\/127\.0\.0\.1:\d+; no node runs/)
    expect(gone.stdout).toMatch(/temps\s+4\s+4/)
  })
})
