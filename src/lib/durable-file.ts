// Small state files in the data dir, written so that a power cut leaves
// either the old content or the new, never half of it: write a temporary
// file, fdatasync it, rename it over the old one, fsync the directory.

import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs'
import { join } from 'node:path'

export function writeFileDurably(dir: string, name: string, content: string): void {
  const path = join(dir, name)
  const tmp = `${path}.tmp`
  const fd = openSync(tmp, 'w')
  try {
    writeSync(fd, content)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, path)
  const dirFd = openSync(dir, 'r')
  try {
    fsyncSync(dirFd)
  } finally {
    closeSync(dirFd)
  }
}
