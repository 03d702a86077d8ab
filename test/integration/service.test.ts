// `tributary start` as systemd runs it: readiness, watchdog pings and stopping
// reach the unit's NOTIFY_SOCKET (here a socket the test listens on, through
// Debian's systemd-notify as in production), and SIGHUP re-reads the config
// file: the log level changes at once, other fields are named as needing a
// restart, a broken file keeps the running config. And since systemd cannot
// run here (not PID 1), the unit's SystemCallFilter is checked against the
// syscalls a working broker makes, traced with strace.

import { readFile, writeFile } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { type ChildBroker, REPO_ROOT, spawnBroker } from '../helpers/child.ts'
import { freePort } from '../helpers/free-port.ts'
import { Cleanup, waitFor } from '../helpers/integration.ts'
import { listenNotifySocket, type NotifyMessage } from '../helpers/notify-socket.ts'
import { runBounded } from '../helpers/run-bounded.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

async function startChild(dataDir: string, options: Parameters<typeof spawnBroker>[1]): Promise<ChildBroker> {
  const broker = await spawnBroker(dataDir, options)
  cleanup.defer(`kill child broker ${broker.pid}`, async () => {
    if (broker.child.exitCode !== null || broker.child.signalCode !== null) return
    process.kill(broker.pid, 'SIGKILL')
    await broker.exited
  })
  return broker
}

/** Resolves true when a TCP connection to the port is accepted, false when refused. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

describe('systemd notifications', () => {
  test('READY=1 once MQTT accepts connections, WATCHDOG=1 every WATCHDOG_USEC/2, STOPPING=1 on SIGTERM', async () => {
    const dir = await cleanup.dir('tributary-notify-')
    const notify = await listenNotifySocket(dir)
    cleanup.defer('close notify socket', () => notify.close())
    const port = await freePort()
    // Checked the moment READY=1 arrives: the port must already take connections.
    const acceptedAtReady: Promise<boolean>[] = []
    notify.onMessage = (message: NotifyMessage) => {
      if (message.fields.get('READY') === '1') acceptedAtReady.push(accepts(port))
    }
    const broker = await startChild(join(dir, 'data'), {
      args: ['--mqtt-port', String(port)],
      env: { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '1000000' },
    })

    await waitFor(
      () => notify.messages.filter((m) => m.fields.has('WATCHDOG')).length >= 3,
      'three WATCHDOG=1',
    )
    expect(notify.messages[0]?.fields.get('STATUS')).toBe('starting: opening the log store')
    const first = notify.messages.find((m) => m.fields.has('READY'))
    expect(first?.fields.get('READY')).toBe('1')
    expect(first?.fields.get('MAINPID')).toBe(String(broker.pid))
    expect(first?.fields.get('STATUS')).toBe(`accepting MQTT connections on 127.0.0.1:${port}`)
    expect(await Promise.all(acceptedAtReady)).toEqual([true])
    // One ping per 500 ms (half of WATCHDOG_USEC), not more: counted over the span they
    // arrived in, with slack for a late one that arrives right before the next.
    const pings = notify.messages.filter((m) => m.fields.get('WATCHDOG') === '1')
    const spanMs = (pings.at(-1)?.receivedAt ?? 0) - (pings[0]?.receivedAt ?? 0)
    expect(pings.length - 1).toBeLessThanOrEqual(Math.floor(spanMs / 500) + 1)

    const { code } = await broker.kill('SIGTERM')
    expect(code).toBe(0)
    const stopping = notify.messages.findIndex((m) => m.fields.get('STOPPING') === '1')
    expect(stopping).toBeGreaterThan(0)
    expect(notify.messages[stopping]?.fields.get('STATUS')).toMatch(/^stopping \(SIGTERM\)/)
  })

  test('no watchdog pings when WATCHDOG_PID names another process', async () => {
    const dir = await cleanup.dir('tributary-notify-')
    const notify = await listenNotifySocket(dir)
    cleanup.defer('close notify socket', () => notify.close())
    const broker = await startChild(join(dir, 'data'), {
      env: { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '200000', WATCHDOG_PID: '1' },
    })
    await waitFor(() => notify.messages.length >= 1, 'READY=1')
    await new Promise((resolve) => setTimeout(resolve, 1000))
    expect(await broker.kill('SIGTERM')).toEqual({ code: 0, signal: null })
    const kinds = notify.messages.map((m) => [...m.fields.keys()].sort().join(','))
    expect(kinds).toEqual(['STATUS', 'MAINPID,READY,STATUS', 'STATUS,STOPPING'])
  })
})

describe('systemd notifications when the start fails', () => {
  test('STATUS says why (port in use), no READY=1, exit 1', async () => {
    const dir = await cleanup.dir('tributary-notify-fail-')
    const notify = await listenNotifySocket(dir)
    cleanup.defer('close notify socket', () => notify.close())
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    cleanup.defer('close the port holder', () => new Promise((resolve) => taken.close(resolve)))
    const address = taken.address()
    const port = typeof address === 'object' && address !== null ? address.port : 0
    await expect(
      spawnBroker(join(dir, 'data'), {
        args: ['--mqtt-port', String(port)],
        env: { NOTIFY_SOCKET: notify.path },
      }),
    ).rejects.toThrow(/exited \(code 1/)
    const statuses = notify.messages.map((m) => m.fields.get('STATUS'))
    expect(statuses.at(-1)).toMatch(/^start failed: TRIB_LISTEN_FAILED: /)
    expect(notify.messages.some((m) => m.fields.has('READY'))).toBe(false)
  })
})

describe('SIGHUP', () => {
  test('changes the log level now, applies retention, names what needs a restart, survives a broken file', async () => {
    const dir = await cleanup.dir('tributary-hup-')
    const configFile = join(dir, 'tributary.yaml')
    await writeFile(configFile, 'logLevel: info\n')
    const broker = await startChild(join(dir, 'data'), { args: ['--config', configFile] })
    const loggedSince = (index: number, msg: string) => () =>
      broker.logs.slice(index).some((l) => l.msg === msg)
    const lineAfter = (index: number, msg: string) => broker.logs.slice(index).find((l) => l.msg === msg)

    let mark = broker.logs.length
    await writeFile(
      configFile,
      'logLevel: info\nstreams:\n  - name: default\n    retention: { maxAgeMs: 3600000 }\n',
    )
    process.kill(broker.pid, 'SIGHUP')
    await waitFor(loggedSince(mark, 'SIGHUP: configuration reloaded'), 'the reload line')
    expect(lineAfter(mark, 'SIGHUP: configuration reloaded')).toMatchObject({
      applied: ['streams.default.retention.maxAgeMs'],
      needsRestart: [],
    })

    mark = broker.logs.length
    await writeFile(configFile, 'logLevel: [not a level\n')
    process.kill(broker.pid, 'SIGHUP')
    const notReloaded = 'SIGHUP: configuration not reloaded; the running configuration stays'
    await waitFor(loggedSince(mark, notReloaded), 'the refusal')
    expect(lineAfter(mark, notReloaded)).toMatchObject({ level: 50, code: 'TRIB_CONFIG_UNREADABLE' })

    mark = broker.logs.length
    await writeFile(
      configFile,
      'logLevel: warn\nunmatched: live-only\nstreams:\n  - name: default\n    retention: { maxAgeMs: 3600000 }\n',
    )
    process.kill(broker.pid, 'SIGHUP')
    const restart = 'SIGHUP: configuration reloaded; some changes need a restart'
    await waitFor(loggedSince(mark, restart), 'the needs-a-restart line')
    expect(lineAfter(mark, restart)).toMatchObject({
      level: 40,
      applied: ['logLevel'],
      needsRestart: ['unmatched'],
    })

    // At warn, the info lines of the shutdown ("shutting down", "tributary stopped") are not written.
    mark = broker.logs.length
    expect(await broker.kill('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(broker.logs.slice(mark).filter((l) => l.level === 30)).toEqual([])
  })
})

describe('SIGHUP retention', () => {
  test('a shorter maxAgeMs applies at the next retention run, without a restart', async () => {
    const dir = await cleanup.dir('tributary-hup-retention-')
    const configFile = join(dir, 'tributary.yaml')
    const withAge = (ms: number) =>
      `retentionCheckMs: 200\nstreams:\n  - name: default\n    retention: { maxAgeMs: ${ms} }\n`
    await writeFile(configFile, withAge(3_600_000))
    const broker = await startChild(join(dir, 'data'), { args: ['--config', configFile] })
    const client = await cleanup.mqtt(broker.url, { clientId: 'retention' })
    for (let i = 0; i < 5; i++) await client.publishAsync('r/x', `m${i}`, { qos: 1 })
    // Several retention runs pass with the hour-long limit: nothing is deleted.
    await new Promise((resolve) => setTimeout(resolve, 1000))
    expect(broker.logs.filter((l) => l.msg === 'retention deleted old records')).toEqual([])

    await writeFile(configFile, withAge(1))
    process.kill(broker.pid, 'SIGHUP')
    await waitFor(
      () => broker.logs.some((l) => l.msg === 'retention deleted old records'),
      'a retention deletion',
    )
    expect(broker.logs.find((l) => l.msg === 'SIGHUP: configuration reloaded')).toMatchObject({
      applied: ['streams.default.retention.maxAgeMs'],
      needsRestart: [],
    })
  })
})

/** The syscalls a systemd syscall set (e.g. @system-service) allows, its nested sets expanded. */
async function expandSyscallSet(name: string, seen = new Set<string>()): Promise<Set<string>> {
  const out = new Set<string>()
  if (seen.has(name)) return out
  seen.add(name)
  const result = await runBounded('systemd-analyze', ['syscall-filter', name])
  expect(result.code, result.stderr).toBe(0)
  const entries = result.stdout
    .split('\n')
    .slice(1)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
  for (const entry of entries) {
    if (entry.startsWith('@')) for (const call of await expandSyscallSet(entry, seen)) out.add(call)
    else out.add(entry)
  }
  return out
}

describe("the unit's SystemCallFilter", () => {
  test('allows every syscall the broker makes while it starts, takes publishes, delivers and stops', async () => {
    const unit = await readFile(join(REPO_ROOT, 'systemd', 'tributary.service'), 'utf8')
    const filter = /^SystemCallFilter=(.+)$/m.exec(unit)?.[1]?.trim().split(/\s+/) ?? []
    expect(filter).toEqual(['@system-service'])
    const allowed = await expandSyscallSet('@system-service')
    expect(allowed.has('fdatasync')).toBe(true)

    const dir = await cleanup.dir('tributary-syscalls-')
    const notify = await listenNotifySocket(dir)
    cleanup.defer('close notify socket', () => notify.close())
    const summary = join(dir, 'strace.txt')
    const dataDir = join(dir, 'data')
    const broker = await startChild(dataDir, {
      wrapper: ['strace', '-f', '-qq', '-c', '-o', summary],
      env: { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '400000' },
      timeoutMs: 60_000,
    })
    const client = await cleanup.mqtt(broker.url, { clientId: 'syscalls' })
    await client.subscribeAsync('s/#', { qos: 1 })
    const delivered = new Promise((resolve) => client.once('message', resolve))
    for (let i = 0; i < 20; i++)
      await client.publishAsync(`s/${i % 3}`, `m${i}`, { qos: (i % 3) as 0 | 1 | 2 })
    await delivered
    await waitFor(() => notify.messages.some((m) => m.fields.has('WATCHDOG')), 'a watchdog ping')
    // Signals go to the traced node process itself (its pid is in the data dir), not to strace.
    const pid = Number((await readFile(join(dataDir, 'tributary.pid'), 'utf8')).trim())
    process.kill(pid, 'SIGHUP')
    await waitFor(() => broker.logs.some((l) => l.msg === 'SIGHUP: configuration reloaded'), 'the reload')
    await waitFor(
      () => notify.messages.some((m) => m.fields.get('STATUS')?.includes('SIGHUP at') === true),
      'STATUS',
    )
    expect(
      notify.messages.find((m) => m.fields.get('STATUS')?.includes('SIGHUP at'))?.fields.get('STATUS'),
    ).toMatch(
      /^accepting MQTT connections on 127\.0\.0\.1:\d+; SIGHUP at .*: 0 change\(s\) applied, 0 need a restart$/,
    )
    await client.endAsync()
    process.kill(pid, 'SIGTERM')
    expect((await broker.exited).code).toBe(0)

    const used = (await readFile(summary, 'utf8'))
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .filter((cols) => cols.length >= 5 && /^[\d.]+$/.test(cols[0] ?? ''))
      .map((cols) => cols.at(-1) ?? '')
      .filter((name) => name !== 'total')
    expect(used).toContain('fdatasync')
    expect(used).toContain('execve')
    expect(used.filter((name) => !allowed.has(name))).toEqual([])
  })
})
