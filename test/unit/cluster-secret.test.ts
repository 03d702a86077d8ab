// The cluster secret file: written 0600 with 256 random bits, read back only
// when it is private and long enough, never overwritten without force, and
// never quoted in an error.

import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { readClusterSecret, writeClusterSecret } from '../../src/cluster/secret.ts'
import { isTributaryError, TributaryError } from '../../src/errors.ts'
import { tempDir } from '../helpers/temp-dir.ts'

let dir: { path: string; remove: () => Promise<void> }
beforeEach(async () => {
  dir = await tempDir('tributary-secret-')
})
afterEach(() => dir.remove())

function refusal(fn: () => unknown): TributaryError {
  try {
    fn()
  } catch (err) {
    if (err instanceof TributaryError) return err
    throw err
  }
  throw new Error('expected a TributaryError')
}

describe('cluster secret file', () => {
  it('is written with mode 0600 as 64 hex characters, and read back as 32 bytes', () => {
    const file = join(dir.path, 'cluster.secret')
    writeClusterSecret(file)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const text = readFileSync(file, 'utf8')
    expect(text).toMatch(/^[0-9a-f]{64}\n$/)
    const secret = readClusterSecret(file)
    expect(secret.length).toBe(32)
    expect(secret.toString('hex')).toBe(text.trim())
    // No temporary file is left beside it.
    expect(readdirSync(dir.path)).toEqual(['cluster.secret'])
  })

  it('is fresh each time (two writes differ)', () => {
    const a = join(dir.path, 'a')
    const b = join(dir.path, 'b')
    writeClusterSecret(a)
    writeClusterSecret(b)
    expect(readClusterSecret(a).equals(readClusterSecret(b))).toBe(false)
  })

  it('is never overwritten without force, and replaced with force', () => {
    const file = join(dir.path, 'cluster.secret')
    writeClusterSecret(file)
    const before = readFileSync(file, 'utf8')
    const err = refusal(() => writeClusterSecret(file))
    expect(err.code).toBe('TRIB_CLUSTER_SECRET_EXISTS')
    expect(readFileSync(file, 'utf8')).toBe(before)
    expect(readdirSync(dir.path)).toEqual(['cluster.secret'])

    writeClusterSecret(file, { force: true })
    expect(readFileSync(file, 'utf8')).not.toBe(before)
    expect(statSync(file).mode & 0o777).toBe(0o600)
  })

  it('creates a missing parent directory', () => {
    const file = join(dir.path, 'etc', 'tributary', 'cluster.secret')
    writeClusterSecret(file)
    expect(readClusterSecret(file).length).toBe(32)
  })

  it('is refused when other users can read it, with the chmod that fixes it and without its content', () => {
    const file = join(dir.path, 'cluster.secret')
    writeClusterSecret(file)
    const content = readFileSync(file, 'utf8').trim()
    chmodSync(file, 0o644)
    const err = refusal(() => readClusterSecret(file))
    expect(err.code).toBe('TRIB_CLUSTER_SECRET_INVALID')
    expect(err.retriable).toBe(false)
    expect(err.message).toContain(`chmod 600 ${file}`)
    expect(err.message).toContain('0644')
    expect(err.message).not.toContain(content)
    chmodSync(file, 0o640)
    expect(
      isTributaryError(
        captured(() => readClusterSecret(file)),
        'TRIB_CLUSTER_SECRET_INVALID',
      ),
    ).toBe(true)
    chmodSync(file, 0o600)
    expect(readClusterSecret(file).length).toBe(32)
  })

  it('is refused when shorter than 256 bits, without quoting it', () => {
    const file = join(dir.path, 'short.secret')
    const short = 'ab'.repeat(31) // 248 bits
    writeFileSync(file, `${short}\n`, { mode: 0o600 })
    const err = refusal(() => readClusterSecret(file))
    expect(err.code).toBe('TRIB_CLUSTER_SECRET_INVALID')
    expect(err.message).toContain('248 bits')
    expect(err.message).toContain('tributary cluster init --secret-file')
    expect(err.message).not.toContain(short)
  })

  it('is refused when it is not hex, or empty, without quoting it', () => {
    const file = join(dir.path, 'bad.secret')
    const notHex = 'this is not a secret but it is long enough to be one, if it were hex'
    writeFileSync(file, notHex, { mode: 0o600 })
    const err = refusal(() => readClusterSecret(file))
    expect(err.code).toBe('TRIB_CLUSTER_SECRET_INVALID')
    expect(err.message).not.toContain(notHex)
    writeFileSync(file, '', { mode: 0o600 })
    expect(refusal(() => readClusterSecret(file)).code).toBe('TRIB_CLUSTER_SECRET_INVALID')
  })

  it('accepts a longer hex secret (more than 256 bits)', () => {
    const file = join(dir.path, 'long.secret')
    writeFileSync(file, `${'0123456789abcdef'.repeat(8)}\n`, { mode: 0o600 })
    expect(readClusterSecret(file).length).toBe(64)
  })

  it('is refused when missing or not a file', () => {
    const missing = refusal(() => readClusterSecret(join(dir.path, 'nope')))
    expect(missing.code).toBe('TRIB_CLUSTER_SECRET_INVALID')
    expect(missing.message).toContain('no such file')
    expect(refusal(() => readClusterSecret(dir.path)).code).toBe('TRIB_CLUSTER_SECRET_INVALID')
  })
})

function captured(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  return undefined
}
