// `tributary start` as systemd runs it: readiness, watchdog pings and stopping
// reach the unit's NOTIFY_SOCKET (here a socket the test listens on, through
// Debian's systemd-notify as in production), and SIGHUP re-reads the config
// file: the log level changes at once, other fields are named as needing a
// restart, a broken file keeps the running config.

import { writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { type ChildBroker, spawnBroker } from '../helpers/child.ts'
import { freePort } from '../helpers/free-port.ts'
import { Cleanup, waitFor } from '../helpers/integration.ts'
import { listenNotifySocket, type NotifyMessage } from '../helpers/notify-socket.ts'

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
    const first = notify.messages[0]
    expect(first?.fields.get('READY')).toBe('1')
    expect(first?.fields.get('MAINPID')).toBe(String(broker.pid))
    expect(first?.fields.get('STATUS')).toBe(`accepting MQTT connections on 127.0.0.1:${port}`)
    expect(await Promise.all(acceptedAtReady)).toEqual([true])
    const pings = notify.messages.filter((m) => m.fields.get('WATCHDOG') === '1')
    const gaps = pings.slice(1).map((m, i) => m.receivedAt - (pings[i]?.receivedAt ?? 0))
    // Every 500 ms (half of WATCHDOG_USEC); generous bounds, this is not a benchmark.
    for (const gap of gaps) expect(gap).toBeGreaterThan(200)

    const { code } = await broker.kill('SIGTERM')
    expect(code).toBe(0)
    const stopping = notify.messages.findIndex((m) => m.fields.get('STOPPING') === '1')
    expect(stopping).toBeGreaterThan(0)
    expect(notify.messages[stopping]?.fields.get('STATUS')).toMatch(/^stopping \(SIGTERM\)/)
  })

  test('no watchdog pings without WATCHDOG_USEC, and none when WATCHDOG_PID names another process', async () => {
    const dir = await cleanup.dir('tributary-notify-')
    const notify = await listenNotifySocket(dir)
    cleanup.defer('close notify socket', () => notify.close())
    const broker = await startChild(join(dir, 'data'), {
      env: { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '200000', WATCHDOG_PID: '1' },
    })
    await waitFor(() => notify.messages.length >= 1, 'READY=1')
    await new Promise((resolve) => setTimeout(resolve, 1000))
    expect(await broker.kill('SIGTERM')).toEqual({ code: 0, signal: null })
    const kinds = notify.messages.map((m) =>
      [...m.fields.keys()]
        .filter((k) => k !== 'STATUS')
        .sort()
        .join(','),
    )
    expect(kinds).toEqual(['MAINPID,READY', 'STOPPING'])
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
