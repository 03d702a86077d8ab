// Bookkeeping that lets every phase of the benchmark end cleanly: every child
// process started is registered and killed by its pid at the end (even after
// a failure), every temp dir is removed, and each phase runs under a deadline.

import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const children = new Set<ChildProcess>()
const extraPids = new Set<number>()
const tempDirs = new Set<string>()

export function track(child: ChildProcess): ChildProcess {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

/** A process we did not spawn directly (e.g. the broker under strace) that must die with the run. */
export function trackPid(pid: number): void {
  extraPids.add(pid)
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch {
    // Already gone.
  }
}

/** Resolves with the exit of a child, or false when it is still running after `timeoutMs`. */
export async function exitWithin(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true
  const timeout = new Promise<false>((resolve) => setTimeout(() => resolve(false), timeoutMs).unref())
  return Promise.race([once(child, 'exit').then(() => true), timeout])
}

/**
 * Stops a child: `sig` to `pid` (the process that matters, e.g. the broker
 * under strace), then SIGKILL to both if the child has not exited in time.
 */
export async function stopChild(
  child: ChildProcess,
  pid: number,
  sig: NodeJS.Signals,
  timeoutMs: number,
): Promise<void> {
  signal(pid, sig)
  if (!(await exitWithin(child, timeoutMs))) {
    signal(pid, 'SIGKILL')
    if (child.pid !== undefined) signal(child.pid, 'SIGKILL')
    await exitWithin(child, 5000)
  }
  extraPids.delete(pid)
}

/** Kills every child still registered and removes every temp dir: the run's finally. */
export function cleanUp(): void {
  for (const pid of extraPids) signal(pid, 'SIGKILL')
  extraPids.clear()
  for (const child of children) if (child.pid !== undefined) signal(child.pid, 'SIGKILL')
  children.clear()
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
  tempDirs.clear()
}

export function makeTempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `tributary-bench-${label}-`))
  tempDirs.add(dir)
  return dir
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true })
  tempDirs.delete(dir)
}

/** Rejects when `promise` has not settled within `ms`; `what` names the phase in the error. */
export function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not finish within ${Math.round(ms / 1000)} s`)),
      ms,
    )
  })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
