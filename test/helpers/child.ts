// Runs `tributary start` as a child process (from the TypeScript sources, on
// the project's Node runtime) so tests can SIGKILL it mid-load and start it
// again on the same data dir. Only 127.0.0.1 is used.

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'

export const REPO_ROOT = join(import.meta.dirname, '..', '..')
export const CLI = join(REPO_ROOT, 'src', 'cli', 'main.ts')
/** The V8 flags bin/tributary runs the broker with (keep the two in step). */
export const BROKER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--heap-growing-percent=100']

/** The test runner's environment without TRIBUTARY_* settings, so ambient config never leaks into a child. */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('TRIBUTARY_')),
  )
  return { ...env, ...extra }
}

export interface ChildBroker {
  readonly child: ChildProcess
  readonly pid: number
  readonly port: number
  readonly url: string
  /** Every log line the child printed (JSON objects), for assertions. */
  readonly logs: Array<Record<string, unknown>>
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

export interface SpawnOptions {
  readonly args?: readonly string[]
  /** Run under another program, e.g. ['strace', '-f', ...]: the command line is appended. */
  readonly wrapper?: readonly string[]
  readonly env?: NodeJS.ProcessEnv
  readonly timeoutMs?: number
}

/** Starts the broker on a free loopback port; resolves once it accepts MQTT connections. */
export async function spawnBroker(dataDir: string, options: SpawnOptions = {}): Promise<ChildBroker> {
  const command = [
    process.execPath,
    ...BROKER_NODE_FLAGS,
    CLI,
    'start',
    '--data-dir',
    dataDir,
    '--mqtt-host',
    '127.0.0.1',
    '--mqtt-port',
    '0',
    ...(options.args ?? []),
  ]
  const full = [...(options.wrapper ?? []), ...command]
  const [program, ...rest] = full
  if (program === undefined) throw new Error('empty command')
  const child = spawn(program, rest, {
    cwd: REPO_ROOT,
    // The admin API on a free port: children of parallel tests never race for the default one.
    env: cleanEnv({ TRIBUTARY_HTTP_PORT: '0', ...options.env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: Array<Record<string, unknown>> = []
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }))
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`broker did not start within ${options.timeoutMs ?? 20_000} ms: ${stderr}`)),
      options.timeoutMs ?? 20_000,
    )
    exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(new Error(`broker exited (code ${code}, signal ${signal}) before listening: ${stderr}`))
    })
    if (child.stdout === null) return
    createInterface({ input: child.stdout }).on('line', (line) => {
      let entry: Record<string, unknown>
      try {
        entry = JSON.parse(line) as Record<string, unknown>
      } catch {
        return
      }
      logs.push(entry)
      if (typeof entry.mqtt === 'string' && entry.msg === 'tributary accepting MQTT connections') {
        clearTimeout(timer)
        resolve(Number(entry.mqtt.split(':').pop()))
      }
    })
  })
  const pid = child.pid ?? -1
  return {
    child,
    pid,
    port,
    url: `mqtt://127.0.0.1:${port}`,
    logs,
    exited,
    kill: (signal) => {
      child.kill(signal)
      return exited
    },
  }
}

/** Runs the CLI to completion and returns its output. */
export async function runCli(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, env: cleanEnv(env) })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString()
  })
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString()
  })
  const [code] = await once(child, 'exit')
  return { code: code as number | null, stdout, stderr }
}

/** Collects a child's log lines (JSON, or `{ msg: line }` when a line is not JSON) from one of its streams. */
export function collectLogLines(
  stream: Readable | null,
  into: Array<Record<string, unknown>>,
  onLine?: () => void,
): void {
  if (stream === null) throw new Error('child without a pipe')
  createInterface({ input: stream }).on('line', (line) => {
    try {
      into.push(JSON.parse(line) as Record<string, unknown>)
    } catch {
      into.push({ msg: line })
    }
    onLine?.()
  })
}
