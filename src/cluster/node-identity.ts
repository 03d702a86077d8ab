// Node identity: a stable id generated on first start and kept in the data
// dir (`node-id`), written atomically so a power cut never leaves half an id.

import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileDurably } from '../lib/durable-file.ts'

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
  const id = randomUUID()
  writeFileDurably(dataDir, NODE_ID_FILE, `${id}\n`)
  return id
}
