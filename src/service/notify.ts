// systemd's service notification protocol (sd_notify(3)) for `Type=notify`
// units: READY=1 once the listeners are up, STATUS= lines, WATCHDOG=1 pings
// from the event loop, STOPPING=1 at shutdown. Owns the ping timer and the
// queue of messages; in: lifecycle calls from `tributary start`; out: one
// `systemd-notify` process per message, on the unit's NOTIFY_SOCKET.
//
// Why a spawned `systemd-notify` and not an npm package: Node has no unix
// datagram sockets, and the npm packages that send on one (`sd-notify`) are
// native addons built with node-gyp against libsystemd-dev, i.e. a compiler
// on every Pi. Debian's `systemd-notify` is on every host that runs systemd,
// and a spawn every WatchdogSec/2 (15 s) costs nothing that matters. Since
// systemd 246 it waits (BARRIER=1) until the manager has read the message,
// so a message is not lost because the short-lived sender already exited;
// the unit still needs NotifyAccess=all, because the sender is a child.
//
// Without NOTIFY_SOCKET (a shell, pm2, a test) every call is a no-op.

import { spawn } from 'node:child_process'
import type { Logger } from '../observability/logger.ts'

/** A message that does not reach systemd within this time is given up (the child is killed). */
const SEND_TIMEOUT_MS = 10_000
/** Bound on queued messages; beyond it a new WATCHDOG=1 ping is dropped (the next one follows). */
const MAX_QUEUED = 8
const NOTIFY_BINARY = 'systemd-notify'

/** The variables systemd sets for the service: NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID. */
export type NotifyEnv = Readonly<Record<string, string | undefined>>

/** The ping interval systemd asked for (half of WatchdogSec), or null when the watchdog is off or meant for another process. */
export function watchdogIntervalMs(env: NotifyEnv, pid: number = process.pid): number | null {
  const usec = Number(env.WATCHDOG_USEC)
  if (!Number.isInteger(usec) || usec <= 0) return null
  // sd_watchdog_enabled(3): WATCHDOG_PID, when set, names the process the watchdog is for.
  if (env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== '' && Number(env.WATCHDOG_PID) !== pid)
    return null
  return Math.max(1, Math.floor(usec / 1000 / 2))
}

export class ServiceNotifier {
  readonly #socket: string | null
  readonly #intervalMs: number | null
  readonly #log: Logger
  #queue: Promise<void> = Promise.resolve()
  #queued = 0
  #timer: NodeJS.Timeout | null = null
  #failedOnce = false

  constructor(log: Logger, env: NotifyEnv = process.env) {
    this.#socket = env.NOTIFY_SOCKET !== undefined && env.NOTIFY_SOCKET !== '' ? env.NOTIFY_SOCKET : null
    this.#intervalMs = this.#socket === null ? null : watchdogIntervalMs(env)
    this.#log = log
  }

  /** True when running under a service manager that listens (NOTIFY_SOCKET set). */
  get enabled(): boolean {
    return this.#socket !== null
  }

  /** READY=1 with this process as the main PID. */
  ready(status: string): void {
    this.#send([`--pid=${process.pid}`, 'READY=1', `STATUS=${status}`])
  }

  /**
   * Starts the WATCHDOG=1 pings, when systemd asked for them. Called before the
   * node starts: systemd may run the watchdog during start-up too, and a long
   * recovery must not look like a hung process.
   */
  startWatchdog(): void {
    if (this.#intervalMs !== null && this.#timer === null) {
      // The ping runs on the event loop itself: a loop that stalls stops pinging,
      // and systemd restarts the service after WatchdogSec.
      this.#timer = setInterval(() => this.#send(['WATCHDOG=1'], { droppable: true }), this.#intervalMs)
      this.#timer.unref()
      this.#log.info({ intervalMs: this.#intervalMs }, 'systemd watchdog pings started')
    }
  }

  status(text: string): void {
    this.#send([`STATUS=${text}`])
  }

  /** STOPPING=1. The watchdog keeps pinging while the node drains. */
  stopping(status: string): void {
    this.#send(['STOPPING=1', `STATUS=${status}`])
  }

  /** Stops the pings; resolves once every queued message was handed over (or given up). */
  async close(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    await this.#queue
  }

  #send(args: readonly string[], { droppable = false } = {}): void {
    const socket = this.#socket
    if (socket === null) return
    if (droppable && this.#queued >= MAX_QUEUED) {
      this.#log.warn({ queued: this.#queued }, 'systemd-notify is behind; watchdog ping dropped')
      return
    }
    this.#queued++
    // Messages go out one at a time, in order (READY before WATCHDOG before STOPPING).
    // #run never rejects: a failure is logged once and the service goes on.
    this.#queue = this.#queue.then(() => this.#run(socket, args)).finally(() => this.#queued--)
  }

  #run(socket: string, args: readonly string[]): Promise<void> {
    return new Promise((resolve) => {
      const child = spawn(NOTIFY_BINARY, args, {
        env: { ...process.env, NOTIFY_SOCKET: socket },
        stdio: ['ignore', 'ignore', 'pipe'],
      })
      let stderr = ''
      child.stderr?.on('data', (chunk: Buffer) => {
        if (stderr.length < 4096) stderr += chunk.toString()
      })
      const timer = setTimeout(() => child.kill('SIGKILL'), SEND_TIMEOUT_MS)
      const done = (problem: string | null): void => {
        clearTimeout(timer)
        if (problem !== null && !this.#failedOnce) {
          this.#failedOnce = true
          this.#log.warn(
            { args, problem, stderr: stderr.trim() },
            'systemd-notify failed (logged once); install the systemd package or unset NOTIFY_SOCKET',
          )
        }
        resolve()
      }
      child.once('error', (err) => done(err.message))
      child.once('exit', (code, signal) =>
        done(code === 0 ? null : `exit ${code ?? ''}${signal === null ? '' : ` signal ${signal}`}`),
      )
    })
  }
}
