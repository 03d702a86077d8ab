// The child processes of the benchmarks that work on a data dir of their own
// (restart.ts, drain.ts): a tributary broker started on a free loopback port
// and stopped by its pid, and the store helper test/bench/fill-store.ts run to
// its result. Every child is tracked (procs.ts), bounded in time, and killed
// if its start fails.

import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { REPO_ROOT } from '../helpers/child.ts'
import { freePort } from '../helpers/free-port.ts'
import { waitForConnack } from './mqtt-conn.ts'
import { sleep, stopChild, track, withDeadline } from './procs.ts'
import { launchTributary, watchTributaryLog } from './systems.ts'

const FILL_SCRIPT = join(import.meta.dirname, 'fill-store.ts')
const START_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = { SIGTERM: 15_000, SIGKILL: 5000 } as const
/** Lines kept of a broker's warnings and errors, and how much of each. */
const MAX_PROBLEMS = 50
const MAX_PROBLEM_CHARS = 400

/** A broker's warnings and errors, the first MAX_PROBLEMS of them, each cut to MAX_PROBLEM_CHARS. */
export interface Problems {
  readonly list: string[]
  add(line: string): void
}

export function problemSink(): Problems {
  const list: string[] = []
  return { list, add: (line) => list.length < MAX_PROBLEMS && list.push(line.slice(0, MAX_PROBLEM_CHARS)) }
}

export interface ChildBrokerOptions {
  /** The CLI entry to run (src/cli/main.ts or dist/cli/main.js). */
  readonly entry: string
  readonly dataDir: string
  readonly configFile: string
  /** Scratch dir of the phase (launchTributary's strace dir). */
  readonly dir: string
  readonly problems: Problems
  /**
   * Started once `log`: it logs that it accepts MQTT connections; `connack`: a
   * client got a CONNACK (the restart time a device sees).
   */
  readonly until: 'log' | 'connack'
}

export interface ChildBroker {
  readonly child: ChildProcess
  readonly pid: number
  readonly port: number
  /** performance.now() at the spawn. */
  readonly t0: number
  /** From the spawn to the log line (NaN when started `until: 'connack'` and the line came more than 1 s later). */
  readonly spawnToLogMs: number
  /** From the spawn to the first CONNACK (NaN when started `until: 'log'`). */
  readonly spawnToConnackMs: number
  /** SIGTERM (clean shutdown) or SIGKILL, then SIGKILL if it has not exited in time. */
  stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<void>
}

export async function startChildBroker(options: ChildBrokerOptions): Promise<ChildBroker> {
  const port = await freePort()
  const t0 = performance.now()
  const child = launchTributary(
    options.entry,
    options.dataDir,
    options.configFile,
    port,
    { syncDelayUs: null, timeoutMs: START_TIMEOUT_MS },
    options.dir,
  )
  const pid = child.pid
  if (pid === undefined) throw new Error('tributary has no pid')
  const stop = (signal: 'SIGTERM' | 'SIGKILL'): Promise<void> =>
    stopChild(child, pid, signal, STOP_TIMEOUT_MS[signal])
  let loggedAt = Number.NaN
  const logged = watchTributaryLog(child, options.problems).then(() => {
    loggedAt = performance.now()
  })
  try {
    let connackAt = Number.NaN
    if (options.until === 'connack') {
      connackAt = await waitForConnack(port, 'bench-start', START_TIMEOUT_MS, 2)
      // The log line and the CONNACK race; give the line a moment to arrive.
      for (let i = 0; i < 100 && Number.isNaN(loggedAt); i++) await sleep(10)
    } else {
      await withDeadline(logged, START_TIMEOUT_MS, 'tributary start')
    }
    return {
      child,
      pid,
      port,
      t0,
      spawnToLogMs: loggedAt - t0,
      spawnToConnackMs: connackAt - t0,
      stop,
    }
  } catch (err) {
    await stop('SIGKILL')
    throw err
  }
}

/**
 * Runs test/bench/fill-store.ts with `args` to completion, bounded by its own
 * --max-seconds plus a margin, prints its progress lines, and returns its
 * `{"result": ...}` line.
 */
export async function runFillStore<T>(args: readonly string[], maxSeconds: number, what: string): Promise<T> {
  const child = track(
    spawn(process.execPath, [FILL_SCRIPT, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] }),
  )
  let result: T | null = null
  if (child.stdout !== null) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as { result?: T; progress?: { records: number; seconds: number } }
        if (parsed.result !== undefined) result = parsed.result
        if (parsed.progress !== undefined)
          process.stdout.write(
            `  ${what}: ${parsed.progress.records.toLocaleString('en')} records in ${parsed.progress.seconds.toFixed(0)} s\n`,
          )
      } catch {
        // Not a JSON line.
      }
    })
  }
  try {
    await withDeadline(
      new Promise<void>((resolve, reject) =>
        child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${what} exited ${code}`)))),
      ),
      (maxSeconds + 120) * 1000,
      what,
    )
  } finally {
    if (child.pid !== undefined) await stopChild(child, child.pid, 'SIGKILL', 5000)
  }
  if (result === null) throw new Error(`${what} printed no result`)
  return result
}
