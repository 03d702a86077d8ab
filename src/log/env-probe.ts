// Checks, in a throwaway child process, that the LMDB environment can be
// opened and read before the broker opens it: a damaged file must never keep
// the service from starting, and LMDB may crash on a damaged page instead of
// returning an error.

import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LMDB_FILE } from './node-environment.ts'

const PROBE_TIMEOUT_MS = 30_000

export type ProbeResult = { readonly ok: true } | { readonly ok: false; readonly reason: string }

export function probeEnvironment(dataDir: string): Promise<ProbeResult> {
  if (!existsSync(join(dataDir, LMDB_FILE))) return Promise.resolve({ ok: true })
  // The child module sits beside this one: .ts when run from the sources, .js from dist/.
  const self = fileURLToPath(import.meta.url)
  const child = self.replace(/env-probe\.(ts|js)$/, 'env-probe-child.$1')
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [child, dataDir], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    proc.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < 4096) stderr += chunk.toString()
    })
    const timer = setTimeout(() => proc.kill('SIGKILL'), PROBE_TIMEOUT_MS)
    proc.on('error', (err) => {
      clearTimeout(timer)
      resolve({ ok: false, reason: `probe could not run: ${err.message}` })
    })
    proc.on('exit', (code, signal) => {
      clearTimeout(timer)
      if (code === 0) resolve({ ok: true })
      else
        resolve({
          ok: false,
          reason:
            signal !== null
              ? `reading it crashed the probe (${signal})`
              : stderr.trim() || `probe exit ${code}`,
        })
    })
  })
}
