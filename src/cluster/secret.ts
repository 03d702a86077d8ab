// The cluster secret: 256 random bits, written by `tributary cluster init`
// as 64 hex digits on one line in a file of mode 0600, the same file on every
// node of the cluster. Replication keys its TLS from it (replication/transport.ts).
// The secret never appears in a log line or an error message.

import { randomBytes } from 'node:crypto'
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs'
import { TributaryError } from '../errors.ts'

export const SECRET_BYTES = 32
const HEX = /^[0-9a-f]+$/i

/** Reads and checks the secret; TRIB_CLUSTER_SECRET_INVALID says what is wrong and what to do. */
export function readClusterSecret(file: string): Buffer {
  let mode: number
  let text: string
  try {
    mode = statSync(file).mode
    text = readFileSync(file, 'utf8').trim()
  } catch (err) {
    throw new TributaryError(
      'TRIB_CLUSTER_SECRET_INVALID',
      `${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}; write one with tributary cluster init --secret-file ${file}`,
    )
  }
  if ((mode & 0o077) !== 0)
    throw new TributaryError(
      'TRIB_CLUSTER_SECRET_INVALID',
      `${file} can be read by others (mode ${(mode & 0o777).toString(8)}): chmod 600 ${file}`,
    )
  if (!HEX.test(text) || text.length % 2 !== 0 || text.length < SECRET_BYTES * 2)
    throw new TributaryError(
      'TRIB_CLUSTER_SECRET_INVALID',
      `${file} does not hold a secret of at least ${SECRET_BYTES * 8} bits in hex; write one with tributary cluster init --secret-file ${file}`,
    )
  return Buffer.from(text, 'hex')
}

/** Writes a fresh secret (mode 0600, atomically); refuses to replace an existing file unless `force`. */
export function writeClusterSecret(file: string, force = false): void {
  const tmp = `${file}.tmp-${process.pid}`
  let fd: number
  try {
    fd = openSync(force ? tmp : file, 'wx', 0o600)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new TributaryError(
      'TRIB_CLUSTER_SECRET_INVALID',
      code === 'EEXIST'
        ? `${file} exists: every node must share one secret; copy that file, or pass --force to replace it`
        : `${file}: ${code ?? 'cannot be written'}`,
    )
  }
  try {
    writeSync(fd, `${randomBytes(SECRET_BYTES).toString('hex')}\n`)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  if (force) renameSync(tmp, file)
}
