// What a benchmark result came from: the machine (CPU, cores, memory,
// kernel, the disk under the temp dir and how long its fdatasync takes) and
// the versions of everything measured.

import { execFileSync } from 'node:child_process'
import { closeSync, fdatasyncSync, openSync, readFileSync, writeSync } from 'node:fs'
import { availableParallelism, cpus, release, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { REPO_ROOT } from '../helpers/child.ts'
import { makeTempDir, removeTempDir } from './procs.ts'
import { median } from './stats.ts'

export interface Machine {
  readonly cpu: string
  readonly cores: number
  readonly memoryGiB: number
  readonly kernel: string
  readonly disk: string
  /** 4 KiB write + fdatasync on the temp dir's file system, ms. */
  readonly fdatasyncMs: { readonly median: number; readonly p99: number }
}

export interface Versions {
  readonly node: string
  readonly tributary: string
  readonly tributaryDirty: boolean
  readonly mosquitto: string
  readonly natsServer: string
  readonly strace: string
  readonly aedes: string
  readonly lmdb: string
}

function run(program: string, args: readonly string[]): string {
  try {
    return execFileSync(program, args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: REPO_ROOT,
    })
  } catch (err) {
    // `mosquitto -h` prints its version and exits 3.
    const out = (err as { stdout?: string }).stdout
    return typeof out === 'string' ? out : ''
  }
}

function packageVersion(name: string): string {
  try {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8')) as {
      version?: string
    }
    return pkg.version ?? 'unknown'
  } catch {
    return 'unknown'
  }
}

function diskDescription(path: string): string {
  let best: { mount: string; device: string; type: string } | null = null
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [device, mount, type] = line.split(' ')
    if (device === undefined || mount === undefined || type === undefined) continue
    if (
      (path === mount || path.startsWith(mount === '/' ? '/' : `${mount}/`)) &&
      (best === null || mount.length > best.mount.length)
    )
      best = { mount, device, type }
  }
  if (best === null) return 'unknown'
  const name = best.device.replace(/^\/dev\//, '')
  const sys = (file: string): string | null => {
    try {
      return readFileSync(`/sys/class/block/${name}/${file}`, 'utf8').trim()
    } catch {
      return null
    }
  }
  const sizeSectors = Number(sys('size') ?? 0)
  const rotational = sys('queue/rotational')
  const model = sys('device/model')
  const parts = [`${best.device} (${best.type}) on ${best.mount}`]
  if (sizeSectors > 0) parts.push(`${Math.round((sizeSectors * 512) / 2 ** 30)} GiB`)
  if (model !== null && model !== '') parts.push(model)
  if (rotational !== null) parts.push(rotational === '1' ? 'rotational' : 'non-rotational')
  return parts.join(', ')
}

function fdatasyncLatency(): Machine['fdatasyncMs'] {
  const dir = makeTempDir('fsync')
  try {
    const fd = openSync(join(dir, 'probe'), 'w')
    const block = Buffer.alloc(4096, 1)
    const times: number[] = []
    try {
      for (let i = 0; i < 200; i++) {
        writeSync(fd, block, 0, block.length, (i % 16) * 4096)
        const t0 = performance.now()
        fdatasyncSync(fd)
        times.push(performance.now() - t0)
      }
    } finally {
      closeSync(fd)
    }
    times.sort((a, b) => a - b)
    return { median: median(times), p99: times[Math.ceil(times.length * 0.99) - 1] ?? Number.NaN }
  } finally {
    removeTempDir(dir)
  }
}

export function describeMachine(): Machine {
  const memoryGiB = totalmem() / 2 ** 30
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: availableParallelism(),
    memoryGiB: Math.round(memoryGiB * 10) / 10,
    kernel: `Linux ${release()}`,
    disk: diskDescription(tmpdir()),
    fdatasyncMs: fdatasyncLatency(),
  }
}

export function describeVersions(): Versions {
  const sha = run('git', ['rev-parse', '--short', 'HEAD']).trim() || 'unknown'
  const dirty = run('git', ['status', '--porcelain', '--', 'src']).trim() !== ''
  const firstLine = (text: string): string => text.split('\n')[0]?.trim() ?? ''
  return {
    node: process.version,
    tributary: sha,
    tributaryDirty: dirty,
    mosquitto: firstLine(run('mosquitto', ['-h'])).replace(/^mosquitto version /, '') || 'not installed',
    natsServer: firstLine(run('nats-server', ['--version'])).replace(/^nats-server: /, '') || 'not installed',
    strace: firstLine(run('strace', ['-V'])).replace(/^strace -- version /, '') || 'not installed',
    aedes: packageVersion('aedes'),
    lmdb: packageVersion('lmdb'),
  }
}
