// The cluster secret: the file every node of a cluster shares, from which the
// peer transport derives its TLS pre-shared keys. It holds 32 random bytes
// (256 bits) as 64 lowercase hex characters on one line. Out flows a Buffer
// for the composition root to hand to the transport; nothing here ever puts
// the secret's bytes into a message, an error or a log line.

import { randomBytes } from 'node:crypto'
import {
  closeSync,
  fchmodSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs'
import { dirname } from 'node:path'
import { TributaryError } from '../errors.ts'
import { readOwnerOnlyFile } from './owner-only-file.ts'

/** 256 bits: the least a secret file may hold, and what `writeClusterSecret` writes. */
export const CLUSTER_SECRET_BYTES = 32
export const CLUSTER_SECRET_FILE_MODE = 0o600
const HEX = /^(?:[0-9a-fA-F]{2})+$/
/** What the file holds, for help texts and error messages. */
export const CLUSTER_SECRET_FORMAT = `${CLUSTER_SECRET_BYTES * 2} hex characters on one line`
/** Far more than any valid file; a larger one is not a secret file (and is not read whole). */
const MAX_FILE_BYTES = 4096

/**
 * Reads and checks the secret file: a regular file, readable by its owner
 * only (mode & 0o077 == 0), holding at least 256 bits as hex. Anything else
 * is refused with TRIB_CLUSTER_SECRET_INVALID, naming the file and the fix.
 */
export function readClusterSecret(file: string): Buffer {
  const text = readOwnerOnlyFile(file, MAX_FILE_BYTES, (reason, cause) => invalid(file, reason, cause)).trim()
  // The reasons below name lengths and formats only, never the content.
  if (!HEX.test(text)) throw invalid(file, 'it does not hold one line of hex digits')
  const secret = Buffer.from(text, 'hex')
  if (secret.length < CLUSTER_SECRET_BYTES)
    throw invalid(file, `it holds ${secret.length * 8} bits, at least ${CLUSTER_SECRET_BYTES * 8} are needed`)
  return secret
}

/**
 * Writes a fresh 256-bit secret to `file`, mode 0600, atomically: a temporary
 * file beside it is written and fsync'd, then put in place, and the directory
 * is fsync'd, so a power cut leaves the old state or the whole new file.
 * An existing file is kept (TRIB_CLUSTER_SECRET_EXISTS) unless `force`.
 */
export function writeClusterSecret(file: string, options: { force?: boolean } = {}): void {
  const dir = dirname(file)
  mkdirSync(dir, { recursive: true })
  const tmp = `${file}.${process.pid}.tmp`
  const fd = openSync(tmp, 'wx', CLUSTER_SECRET_FILE_MODE)
  try {
    try {
      fchmodSync(fd, CLUSTER_SECRET_FILE_MODE)
      writeSync(fd, `${randomBytes(CLUSTER_SECRET_BYTES).toString('hex')}\n`)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    if (options.force === true) renameSync(tmp, file)
    else placeWithoutOverwrite(tmp, file)
  } finally {
    unlinkQuietly(tmp)
  }
  const dirFd = openSync(dir, 'r')
  try {
    fsyncSync(dirFd)
  } finally {
    closeSync(dirFd)
  }
}

/** link(2) fails with EEXIST instead of replacing: no window in which another file could be overwritten. */
function placeWithoutOverwrite(tmp: string, file: string): void {
  try {
    linkSync(tmp, file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST')
      throw new TributaryError('TRIB_CLUSTER_SECRET_EXISTS', file, { cause: err })
    throw err
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

function invalid(file: string, reason: string, cause?: unknown): TributaryError {
  return new TributaryError('TRIB_CLUSTER_SECRET_INVALID', `${file}: ${reason}`, { cause })
}
