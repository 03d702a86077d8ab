// Node identity: a stable id generated on first start and kept in the data
// dir (`node-id`), written atomically so a power cut never leaves half an id.

import { randomUUID } from 'node:crypto'
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs'
import { join } from 'node:path'

const NODE_ID_FILE = 'node-id'
const NODE_ID = /^[A-Za-z0-9-]{1,64}$/

export function loadOrCreateNodeId(dataDir: string): string {
  const path = join(dataDir, NODE_ID_FILE)
  try {
    const id = readFileSync(path, 'utf8').trim()
    if (NODE_ID.test(id)) return id
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  return createNodeId(dataDir)
}

/**
 * Writes a new node id. Also used when the store had to be started anew: the
 * new log is a new origin, so its offsets can never be confused with the old ones.
 */
export function createNodeId(dataDir: string): string {
  const path = join(dataDir, NODE_ID_FILE)
  const id = randomUUID()
  const tmp = `${path}.tmp`
  const fd = openSync(tmp, 'w')
  try {
    writeSync(fd, `${id}\n`)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, path)
  const dir = openSync(dataDir, 'r')
  try {
    fsyncSync(dir)
  } finally {
    closeSync(dir)
  }
  return id
}
