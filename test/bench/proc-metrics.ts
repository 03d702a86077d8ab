// Process figures from /proc for the system under test: resident memory
// (VmRSS and RssAnon: LMDB's map is file-backed, so anonymous memory is the
// heap's share), CPU time (utime + stime of the whole thread group, in clock
// ticks) and bytes the process caused to be written to storage (`write_bytes`
// of /proc/<pid>/io: the flash-wear figure). A sampler keeps the peaks while
// a load runs. Linux only.

import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { basename } from 'node:path'

export interface ProcSnapshot {
  readonly atMs: number
  readonly rssBytes: number
  readonly rssAnonBytes: number
  /** utime + stime of every thread, seconds. */
  readonly cpuS: number
  readonly writeBytes: number
  readonly readBytes: number
}

let clockTicks: number | null = null

function ticksPerSecond(): number {
  if (clockTicks === null) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      clockTicks = 100
    }
  }
  return clockTicks
}

function statusKb(status: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)
  return m === null ? 0 : Number(m[1]) * 1024
}

/** One reading of a live process; null when it has gone. */
export function readProc(pid: number): ProcSnapshot | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const io = readFileSync(`/proc/${pid}/io`, 'utf8')
    // Fields after the command name (which may hold spaces) start at field 3; utime is 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ticks = Number(fields[11]) + Number(fields[12])
    const ioField = (name: string): number => Number(new RegExp(`^${name}: (\\d+)`, 'm').exec(io)?.[1] ?? 0)
    return {
      atMs: performance.now(),
      rssBytes: statusKb(status, 'VmRSS'),
      rssAnonBytes: statusKb(status, 'RssAnon'),
      cpuS: ticks / ticksPerSecond(),
      writeBytes: ioField('write_bytes'),
      readBytes: ioField('read_bytes'),
    }
  } catch {
    return null
  }
}

/** Busy CPU time of the whole machine, seconds (/proc/stat, USER_HZ 100): with the processes' own figures, what others ran meanwhile. */
export function machineCpu(): { busyS: number; atMs: number } | null {
  try {
    const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '')
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number)
    const total = fields.slice(0, 8).reduce((a, b) => a + b, 0)
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0)
    return { busyS: (total - idle) / 100, atMs: performance.now() }
  } catch {
    return null
  }
}

/** The process's direct children (e.g. the broker that strace started). */
export function childrenOf(pid: number): number[] {
  const found = new Set<number>()
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim()
      for (const child of text.split(/\s+/)) if (child !== '') found.add(Number(child))
    }
  } catch {
    // No such process, or a kernel without /proc/<pid>/task/<tid>/children: scan below.
  }
  if (found.size > 0) return [...found]
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) found.add(Number(entry))
    } catch {
      // The process ended while we looked.
    }
  }
  return [...found]
}

/** The file name of the program a process runs (its comm may be a thread name, e.g. Node's MainThread). */
export function executableName(pid: number): string | null {
  try {
    return basename(readlinkSync(`/proc/${pid}/exe`))
  } catch {
    return null
  }
}

export interface Peaks {
  readonly rssBytes: number
  readonly rssAnonBytes: number
  readonly samples: number
}

/** Polls a process every `intervalMs` and keeps its highest RSS and RssAnon. */
export class PeakSampler {
  readonly #pid: number
  readonly #timer: NodeJS.Timeout
  #rss = 0
  #anon = 0
  #samples = 0

  constructor(pid: number, intervalMs = 200) {
    this.#pid = pid
    this.#sample()
    this.#timer = setInterval(() => this.#sample(), intervalMs)
  }

  #sample(): void {
    const s = readProc(this.#pid)
    if (s === null) return
    this.#samples++
    if (s.rssBytes > this.#rss) this.#rss = s.rssBytes
    if (s.rssAnonBytes > this.#anon) this.#anon = s.rssAnonBytes
  }

  stop(): Peaks {
    clearInterval(this.#timer)
    this.#sample()
    return { rssBytes: this.#rss, rssAnonBytes: this.#anon, samples: this.#samples }
  }
}
