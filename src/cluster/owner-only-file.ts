// Reading a file that holds key material (the cluster secret, a node's TLS
// key): a regular file, readable by its owner only (mode & 0o077 == 0), not
// larger than the caller allows. Out flows its text; a reason for refusing
// it goes to the caller's error (which names the file and the fix), never
// the content.

import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs'
import type { TributaryError } from '../errors.ts'

/** Turns a reason into the caller's error (its code, its file). */
export type FileRefusal = (reason: string, cause?: unknown) => TributaryError

export function readOwnerOnlyFile(file: string, maxBytes: number, refuse: FileRefusal): string {
  let fd: number
  try {
    fd = openSync(file, 'r')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw refuse(code === 'ENOENT' ? 'no such file' : `cannot be opened (${code ?? 'error'})`, err)
  }
  try {
    const stat = fstatSync(fd)
    if (!stat.isFile()) throw refuse('not a regular file')
    // The check is on the open file, so a chmod between the check and the read cannot slip by.
    if ((stat.mode & 0o077) !== 0)
      throw refuse(
        `its mode is ${(stat.mode & 0o777).toString(8).padStart(4, '0')}: other users can read it; run \`chmod 600 ${file}\``,
      )
    if (stat.size > maxBytes) throw refuse(`it is ${stat.size} bytes, more than ${maxBytes}`)
    try {
      return readFileSync(fd, 'utf8')
    } catch (err) {
      throw refuse(`cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, err)
    }
  } finally {
    closeSync(fd)
  }
}
