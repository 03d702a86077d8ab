// Restart time after `kill -9` with a large store, and read throughput over
// the big partition.
//
// 1. Start tributary once on a fresh data dir (creates its node id and the
//    `default` stream, with retention off), stop it.
// 2. Fill: test/bench/fill-store.ts appends N records of 128 B through
//    SegmentLogStore (the project's own store code and on-disk format; batches of
//    128 records, like the broker's group commits under the 8 x 16 load; no
//    MQTT and no dedupe markers, so it is fast).
// 3. Rounds: start the broker, put it under a short 8 x 16 QoS 1 load, kill -9
//    it mid-load, then time the next start from spawn to the first CONNACK
//    (and to its "accepting" log line). Both entry points are timed: src/
//    (Node type stripping, as the rest of the benchmark runs it) and dist/
//    (what bin/tributary runs).
// 4. Read: SegmentLogStore.read in a helper process, then
//    `tributary tail default --from-beginning --json --partition 0`, each
//    bounded in time (page cache warm: the data was just written).

import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { CLI, REPO_ROOT } from '../helpers/child.ts'
import { freePort } from '../helpers/free-port.ts'
import type { FillResult, ReadResult } from './fill-store.ts'
import { waitForConnack } from './mqtt-conn.ts'
import { PeakSampler } from './proc-metrics.ts'
import { makeTempDir, removeTempDir, sleep, stopChild, track, withDeadline } from './procs.ts'
import { GeneratorProcess } from './runner.ts'
import { median } from './stats.ts'
import { launchTributary, TRIBUTARY_ENTRIES, tributaryConfig, watchTributaryLog } from './systems.ts'

const FILL_SCRIPT = join(import.meta.dirname, 'fill-store.ts')

/** The store on disk: log.mdb and every segment file. */
function storeSize(dataDir: string): { fileBytes: number; diskBytes: number } {
  const segments = join(dataDir, 'segments')
  const files = [join(dataDir, 'log.mdb')]
  if (existsSync(segments)) for (const name of readdirSync(segments)) files.push(join(segments, name))
  let fileBytes = 0
  let diskBytes = 0
  for (const file of files) {
    if (!existsSync(file)) continue
    const stat = statSync(file)
    fileBytes += stat.size
    diskBytes += stat.blocks * 512
  }
  return { fileBytes, diskBytes }
}

export interface RestartOptions {
  readonly records: number
  readonly rounds: number
  readonly fillMaxSeconds: number
  readonly readMaxSeconds: number
  /** Also time starts of dist/ (only when it is built from the current src/). */
  readonly withDist: boolean
}

export interface RestartTiming {
  readonly entry: 'src' | 'dist'
  readonly round: number
  readonly spawnToConnackMs: number
  readonly spawnToLogMs: number
}

export interface RestartResult {
  readonly records: number
  readonly fill: FillResult & { readonly method: string }
  readonly storeFileBytes: number
  readonly storeDiskBytes: number
  readonly restarts: RestartTiming[]
  readonly medianMs: { readonly src: number | null; readonly dist: number | null }
  readonly readInProcess: ReadResult
  readonly readTail: {
    readonly records: number
    readonly seconds: number
    readonly recordsPerS: number
    readonly complete: boolean
    /** How the tail process ended. */
    readonly exit: string
    /** The first error line it printed, if any. */
    readonly error: string | null
    readonly peakRssMB: number | null
  }
  readonly problems: string[]
}

function problemSink(): { add: (line: string) => void; list: string[] } {
  const list: string[] = []
  return { list, add: (line) => list.length < 50 && list.push(line.slice(0, 400)) }
}

/** Runs a node script to completion (bounded) and returns its last `{"result": ...}` line. */
async function runHelper<T>(args: readonly string[], maxSeconds: number, what: string): Promise<T> {
  const child = track(
    spawn(process.execPath, [FILL_SCRIPT, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] }),
  )
  let result: T | null = null
  if (child.stdout !== null) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as { result?: T; progress?: { records: number; seconds: number } }
        if (parsed.result !== undefined) result = parsed.result
        if (parsed.progress !== undefined)
          process.stdout.write(
            `  ${what}: ${parsed.progress.records.toLocaleString('en')} records in ${parsed.progress.seconds.toFixed(0)} s\n`,
          )
      } catch {
        // Not ours.
      }
    })
  }
  try {
    await withDeadline(
      new Promise<void>((resolve, reject) =>
        child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${what} exited ${code}`)))),
      ),
      (maxSeconds + 120) * 1000,
      what,
    )
  } finally {
    if (child.pid !== undefined) await stopChild(child, child.pid, 'SIGKILL', 5000)
  }
  if (result === null) throw new Error(`${what} printed no result`)
  return result
}

interface Started {
  readonly child: ChildProcess
  readonly port: number
  readonly spawnToConnackMs: number
  readonly spawnToLogMs: number
}

async function startTimed(
  entry: string,
  dataDir: string,
  configFile: string,
  dir: string,
  problems: { add: (line: string) => void },
): Promise<Started> {
  const port = await freePort()
  const t0 = performance.now()
  const child = launchTributary(
    entry,
    dataDir,
    configFile,
    port,
    { syncDelayUs: null, timeoutMs: 60_000 },
    dir,
  )
  let loggedAt = Number.NaN
  watchTributaryLog(child, problems).then(() => {
    loggedAt = performance.now()
  })
  try {
    const connackAt = await waitForConnack(port, 'bench-restart', 60_000, 2)
    // The log line and the CONNACK race; give the line a moment to arrive.
    for (let i = 0; i < 100 && Number.isNaN(loggedAt); i++) await sleep(10)
    return { child, port, spawnToConnackMs: connackAt - t0, spawnToLogMs: loggedAt - t0 }
  } catch (err) {
    if (child.pid !== undefined) await stopChild(child, child.pid, 'SIGKILL', 5000)
    throw err
  }
}

/** Loads the broker for ~1 s (8 x 16 QoS 1) and kills it with SIGKILL mid-load. */
async function killUnderLoad(started: Started): Promise<void> {
  const generator = new GeneratorProcess({
    port: started.port,
    connections: 8,
    window: 16,
    qos: 1,
    payloadBytes: 128,
    clientIdPrefix: 'bench-kill',
    topicPrefix: 'bench/kill',
    ratePerS: null,
    maxSamples: 1,
    maxSeconds: 30,
    drainMs: 500,
    connectTimeoutMs: 20_000,
    probe: null,
  })
  try {
    await withDeadline(generator.ready, 30_000, 'load before kill -9')
    generator.send({ type: 'go' })
    await sleep(1000)
  } finally {
    const pid = started.child.pid
    if (pid !== undefined) await stopChild(started.child, pid, 'SIGKILL', 5000)
    generator.send({ type: 'stop' })
    await generator.result.catch(() => undefined)
    await generator.stop()
  }
}

async function tailRate(
  dataDir: string,
  configFile: string,
  maxSeconds: number,
): Promise<RestartResult['readTail']> {
  const args = [CLI, 'tail', 'default', '--from-beginning', '--json', '--partition', '0']
  const child = track(
    spawn(process.execPath, [...args, '--data-dir', dataDir, '--config', configFile], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  )
  const t0 = performance.now()
  const sampler = child.pid === undefined ? null : new PeakSampler(child.pid)
  let lines = 0
  let stderr = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000)
  })
  const exit = await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve(`still running after ${maxSeconds} s, killed`), maxSeconds * 1000)
    child.once('exit', (code, sig) => {
      clearTimeout(timer)
      resolve(sig === null ? `exit ${code}` : `signal ${sig}`)
    })
  })
  const seconds = (performance.now() - t0) / 1000
  const peaks = sampler?.stop()
  if (child.pid !== undefined) await stopChild(child, child.pid, 'SIGKILL', 5000)
  const firstError = stderr.split('\n').find((l) => /Error|error:/.test(l))
  return {
    records: lines,
    seconds,
    recordsPerS: lines / seconds,
    complete: exit === 'exit 0',
    exit,
    error: firstError?.trim().slice(0, 300) ?? null,
    peakRssMB: peaks === undefined ? null : peaks.rssBytes / 2 ** 20,
  }
}

export async function runRestart(
  options: RestartOptions,
  log: (line: string) => void,
): Promise<RestartResult> {
  const dir = makeTempDir('restart')
  const dataDir = join(dir, 'data')
  const configFile = tributaryConfig(dir, { ack: 'durable', noRetention: true })
  const problems = problemSink()
  try {
    log('  restart: first start (creates the node id and the stream)')
    const first = await startTimed(CLI, dataDir, configFile, dir, problems)
    if (first.child.pid !== undefined) await stopChild(first.child, first.child.pid, 'SIGTERM', 15_000)

    log(`  restart: filling ${options.records.toLocaleString('en')} records through SegmentLogStore`)
    const fill = await runHelper<FillResult>(
      [
        'fill',
        '--data-dir',
        dataDir,
        '--records',
        String(options.records),
        '--payload-bytes',
        '128',
        '--batch',
        '128',
        '--max-seconds',
        String(options.fillMaxSeconds),
      ],
      options.fillMaxSeconds,
      'fill',
    )
    log(`  restart: filled ${fill.records.toLocaleString('en')} records in ${fill.seconds.toFixed(1)} s`)
    const store = storeSize(dataDir)

    const entries: Array<['src' | 'dist', string]> = [['src', CLI]]
    if (options.withDist) entries.push(['dist', TRIBUTARY_ENTRIES.dist])
    // A first kill -9, so every timed start below follows one.
    await killUnderLoad(await startTimed(CLI, dataDir, configFile, dir, problems))
    const restarts: RestartTiming[] = []
    for (let round = 1; round <= options.rounds; round++) {
      for (const [name, entry] of entries) {
        const started = await startTimed(entry, dataDir, configFile, dir, problems)
        restarts.push({
          entry: name,
          round,
          spawnToConnackMs: started.spawnToConnackMs,
          spawnToLogMs: started.spawnToLogMs,
        })
        log(
          `  restart ${name} #${round}: CONNACK ${started.spawnToConnackMs.toFixed(0)} ms after spawn (log line ${started.spawnToLogMs.toFixed(0)} ms)`,
        )
        await killUnderLoad(started)
      }
    }

    log('  read: SegmentLogStore.read in-process')
    const readInProcess = await runHelper<ReadResult>(
      ['read', '--data-dir', dataDir, '--max-seconds', String(options.readMaxSeconds)],
      options.readMaxSeconds,
      'read',
    )
    log('  read: tributary tail --from-beginning --json')
    const readTail = await tailRate(dataDir, configFile, options.readMaxSeconds)
    const of = (entry: 'src' | 'dist'): number | null => {
      const values = restarts.filter((r) => r.entry === entry).map((r) => r.spawnToConnackMs)
      return values.length === 0 ? null : median(values)
    }
    return {
      records: fill.records,
      fill: {
        ...fill,
        method: `SegmentLogStore.append from a helper process (test/bench/fill-store.ts), ${fill.batchRecords} records per append, relaxed`,
      },
      storeFileBytes: store.fileBytes,
      storeDiskBytes: store.diskBytes,
      restarts,
      medianMs: { src: of('src'), dist: of('dist') },
      readInProcess,
      readTail,
      problems: problems.list,
    }
  } finally {
    removeTempDir(dir)
  }
}
