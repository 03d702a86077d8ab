// `tributary cluster init`: writes a private secret file, prints what to do
// next and never the secret, and keeps an existing file unless --force.

import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { runTributary } from '../helpers/run-bounded.ts'
import { tempDir } from '../helpers/temp-dir.ts'

let dir: { path: string; remove: () => Promise<void> }
beforeEach(async () => {
  dir = await tempDir('tributary-cluster-init-')
})
afterEach(() => dir.remove())

describe('tributary cluster init', () => {
  test('writes a 0600 secret file and prints the next steps, not the secret', async () => {
    const file = join(dir.path, 'cluster.secret')
    const run = await runTributary(['cluster', 'init', '--secret-file', file])
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const secret = readFileSync(file, 'utf8').trim()
    expect(secret).toMatch(/^[0-9a-f]{64}$/)
    expect(run.stdout).toContain(file)
    expect(run.stdout).toContain('--cluster-secret-file')
    // Neither the hex text nor any 8-character piece of it (nor its base64) appears.
    const output = run.stdout + run.stderr
    for (let i = 0; i + 8 <= secret.length; i += 4) expect(output).not.toContain(secret.slice(i, i + 8))
    expect(output).not.toContain(Buffer.from(secret, 'hex').toString('base64').slice(0, 12))
  })

  test('keeps an existing file unless --force', async () => {
    const file = join(dir.path, 'cluster.secret')
    expect((await runTributary(['cluster', 'init', '--secret-file', file])).code).toBe(0)
    const first = readFileSync(file, 'utf8')

    const again = await runTributary(['cluster', 'init', '--secret-file', file])
    expect(again.code).toBe(1)
    expect(again.stderr).toContain('TRIB_CLUSTER_SECRET_EXISTS')
    expect(again.stderr).not.toContain(first.trim())
    expect(readFileSync(file, 'utf8')).toBe(first)

    const forced = await runTributary(['cluster', 'init', '--secret-file', file, '--force'])
    expect(forced.code).toBe(0)
    expect(readFileSync(file, 'utf8')).not.toBe(first)
    expect(statSync(file).mode & 0o777).toBe(0o600)
  })
})
