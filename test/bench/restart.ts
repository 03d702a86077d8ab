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

import { spawn } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { CLI, REPO_ROOT } from '../helpers/child.ts'
import { type ChildBroker, problemSink, runFillStore, startChildBroker } from './children.ts'
import type { FillResult, ReadResult } from './fill-store.ts'
import { PeakSampler } from './proc-metrics.ts'
import { makeTempDir, removeTempDir, sleep, stopChild, track, withDeadline } from './procs.ts'
import { GeneratorProcess } from './runner.ts'
import { median } from './stats.ts'
import { TRIBUTARY_ENTRIES, tributaryConfig } from './systems.ts'

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

/** Loads the broker for ~1 s (8 x 16 QoS 1) and kills it with SIGKILL mid-load. */
async function killUnderLoad(started: ChildBroker): Promise<void> {
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
    await started.stop('SIGKILL')
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
    const start = (entry: string): Promise<ChildBroker> =>
      startChildBroker({ entry, dataDir, configFile, dir, problems, until: 'connack' })
    log('  restart: first start (creates the node id and the stream)')
    await (await start(CLI)).stop('SIGTERM')

    log(`  restart: filling ${options.records.toLocaleString('en')} records through SegmentLogStore`)
    const fill = await runFillStore<FillResult>(
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
    await killUnderLoad(await start(CLI))
    const restarts: RestartTiming[] = []
    for (let round = 1; round <= options.rounds; round++) {
      for (const [name, entry] of entries) {
        const started = await start(entry)
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
    const readInProcess = await runFillStore<ReadResult>(
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
