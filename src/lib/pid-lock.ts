// One process per data dir: a pid file taken with O_EXCL. A file left by a
// process that no longer runs (kill -9, power cut) is taken over.

import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { TributaryError } from '../errors.ts'

/** The lock file in a data dir. */
export const PID_FILE = 'tributary.pid'

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  try {
    // A zombie (killed, not yet reaped by its parent) holds nothing any more.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return true
  }
}

/** Takes the lock or returns the pid that holds it. */
function acquirePidLock(path: string): { release: () => void } | { heldBy: number } {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: 'wx' })
      return { release: () => rmSync(path, { force: true }) }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const holder = Number.parseInt(readFileSync(path, 'utf8'), 10)
    if (Number.isInteger(holder) && holder !== process.pid && alive(holder)) return { heldBy: holder }
    rmSync(path, { force: true })
  }
  return { heldBy: Number.NaN }
}

/** The live process holding the lock file, or null (no file, or a stale one). */
export function lockHolder(path: string): number | null {
  let holder: number
  try {
    holder = Number.parseInt(readFileSync(path, 'utf8'), 10)
  } catch {
    return null
  }
  return Number.isInteger(holder) && alive(holder) ? holder : null
}

/**
 * Makes sure the data dir exists and takes its lock (`tributary.pid`);
 * returns the release. TRIB_DATA_DIR_UNUSABLE / TRIB_DATA_DIR_LOCKED otherwise.
 */
export function claimDataDir(dataDir: string): () => void {
  try {
    mkdirSync(dataDir, { recursive: true })
  } catch (err) {
    throw new TributaryError('TRIB_DATA_DIR_UNUSABLE', dataDir, { cause: err })
  }
  const lock = acquirePidLock(join(dataDir, PID_FILE))
  if ('heldBy' in lock) throw new TributaryError('TRIB_DATA_DIR_LOCKED', `${dataDir} (pid ${lock.heldBy})`)
  return lock.release
}
