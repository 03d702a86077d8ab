// Runs a program to completion with a time limit (the child is killed by its
// pid when it overruns), for the CLI and Debian's mosquitto clients.
// child.ts's runCli has no time limit; this one does, and it drops the
// test-only TRIBUTARY_TEST_* variables, which the CLI would reject as
// unknown settings.

import { spawn } from 'node:child_process'
import { CLI, REPO_ROOT } from './child.ts'

export interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export interface RunOptions {
  readonly timeoutMs?: number
  readonly env?: NodeJS.ProcessEnv
  /** Called with everything printed on stdout so far, each time more arrives. */
  readonly onStdout?: (text: string) => void
  /** Written to the program's stdin, which is then closed (left open when not given). */
  readonly input?: string
}

function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('TRIBUTARY_')) env[name] = value
  }
  return { ...env, ...extra }
}

export function runBounded(
  program: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<Finished> {
  const timeoutMs = options.timeoutMs ?? 30_000
  const child = spawn(program, args, { cwd: REPO_ROOT, env: cleanEnv(options.env) })
  let stdout = ''
  let stderr = ''
  if (options.input !== undefined) child.stdin.end(options.input)
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
    options.onStdout?.(stdout)
  })
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  return new Promise<Finished>((resolve, reject) => {
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
      reject(new Error(`${program} ${args.join(' ')} did not finish within ${timeoutMs} ms: ${stderr}`))
    }, timeoutMs)
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/** `tributary ARGS` from the sources on this Node runtime. */
export function runTributary(args: readonly string[], options: RunOptions = {}): Promise<Finished> {
  return runBounded(process.execPath, [CLI, ...args], options)
}
