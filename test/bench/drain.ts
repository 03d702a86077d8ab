// Backlog drain (issue 5): how fast tributary forwards a backlog of stored
// records to a local Kafka while live QoS 1 ingest goes on.
//
// Per variant (a Kafka sink configuration):
// 1. A fresh data dir: tributary starts once with the drain stream (4
//    partitions, no sink) to create its node id and partitions, and stops.
// 2. test/bench/fill-store.ts appends the backlog through the project's own
//    store code: N records of 128 B, each keyed by a client id that the
//    router and Kafka's partitioner map to the partition it is stored in.
//    Meanwhile a fresh Kafka 4.x broker starts (test/helpers/kafka.ts).
// 3. tributary starts on that data dir with the Kafka sink (the real CLI
//    child, as every bench system runs), and as soon as it accepts MQTT
//    connections the load generator offers QoS 1 publishes of 128 B at a
//    fixed rate (open loop) on the same stream.
// 4. Every second the load generator says how many publishes it has had
//    acknowledged (each is stored), then the Kafka end offsets of the topic
//    are read (Admin ListOffsets; read_committed for exactly-once, minus one
//    commit marker per transaction). Noted on the way: when every Kafka
//    partition holds the records stored in it before the start (forwarding
//    is in order per partition, the keys land in the same partition number).
//    Drained: Kafka holds the backlog plus every live record acknowledged
//    before the count but at most 1 s of live ingest, i.e. tributary has
//    caught up with the live load
//    (records published during the drain queue behind the backlog). Stops
//    then, or at the time bound.
// Reported: records/s arriving in Kafka, time to drain, the live rate
// achieved with its PUBACK latency, their ratio, and tributary's CPU and
// memory (and the Kafka JVM's CPU, to tell who is the limit).
// Every process started here is stopped by pid in a finally.

import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Admin } from '@platformatic/kafka'
import { CLI, REPO_ROOT } from '../helpers/child.ts'
import { type KafkaBroker, kafkaVersion, startKafka } from '../helpers/kafka.ts'
import { type ChildBroker, problemSink, runFillStore, startChildBroker } from './children.ts'
import type { FillResult } from './fill-store.ts'
import type { LoadResult } from './load.ts'
import { machineCpu, PeakSampler, readProc } from './proc-metrics.ts'
import { makeTempDir, removeTempDir, sleep, stopChild, track, withDeadline } from './procs.ts'
import { GeneratorProcess } from './runner.ts'
import { type LatencySummary, latencySummary } from './stats.ts'
import { TRIBUTARY_ENTRIES, type TributaryEntry } from './systems.ts'

export const DRAIN_STREAM = 'drain'
const PAYLOAD_BYTES = 128
const POLL_MS = 1000
const POSITIONS_TOPIC = 'tributary-positions'
/** Live load: 8 connections, at most this many unacknowledged messages each (open loop cap). */
const LIVE_CONNECTIONS = 8
const LIVE_WINDOW = 1000
const MAX_SAMPLES = 2_000_000
/**
 * Caught up: at most this many seconds of live ingest not yet in Kafka (a
 * forwarder in step with the live load is still lingerMs, a round trip and,
 * for exactly-once, a commit behind).
 */
const CAUGHT_UP_S = 1
/** How long the no-backlog reference row runs the live load. */
const BASELINE_SECONDS = 20

export interface DrainVariant {
  /** e.g. `idempotent`, `exactly-once`. */
  readonly label: string
  /** Sink fields besides name, type, brokers and streams (config values only). */
  readonly sink: Readonly<Record<string, unknown>>
  /** false: no backlog, the live load alone for BASELINE_SECONDS (the reference for its latency). */
  readonly backlog?: boolean
}

/**
 * The rows of `npm run bench`: the live load alone (the latency reference),
 * both guarantees with the default sink settings, and each with the settings
 * that drained fastest on the 2-core bench machine while starving the live
 * load least before the Kafka sink split batches into requests Kafka accepts
 * (ccd3b32). Smaller batches one at a time still halve the drain's memory
 * and PUBACK latency; see docs/benchmarks/drain-notes.md.
 */
export const DEFAULT_VARIANTS: readonly DrainVariant[] = [
  { label: 'no backlog', sink: {}, backlog: false },
  { label: 'idempotent', sink: {} },
  { label: 'exactly-once', sink: { exactlyOnce: true } },
  { label: 'idempotent, tuned', sink: { maxBatchRecords: 1000, maxInFlight: 1 } },
  { label: 'exactly-once, tuned', sink: { exactlyOnce: true, maxBatchRecords: 2000 } },
]

export interface DrainOptions {
  readonly records: number
  readonly partitions: number
  readonly liveRatePerS: number
  /** Bound on the drain phase of one variant. */
  readonly maxSeconds: number
  readonly fillMaxSeconds: number
  readonly variants: readonly DrainVariant[]
  readonly tributaryEntry: TributaryEntry
}

export interface DrainSample {
  /** Seconds since the live load started. */
  readonly t: number
  /** Records in Kafka (all partitions, markers removed). */
  readonly kafkaRecords: number
  /** Live publishes acknowledged (so stored) by then. */
  readonly liveAcked: number
}

export interface DrainRun {
  readonly variant: string
  /** The sink entry as written to the config file. */
  readonly sink: Readonly<Record<string, unknown>>
  readonly backlogRecords: number
  readonly backlogPerPartition: number[]
  readonly fill: FillResult
  readonly drained: boolean
  /** Seconds from the live load's start until the stored backlog records were all in Kafka (null: not within the bound). */
  readonly loadToBacklogInKafkaS: number | null
  /**
   * Drained: seconds from the live load's start until Kafka held the backlog
   * and every live record acknowledged by then (tributary caught up; records
   * published during the drain queue behind the backlog). Null: not within the bound.
   */
  readonly loadToDrainedS: number | null
  /** The same from spawning tributary. */
  readonly spawnToDrainedS: number | null
  readonly spawnToAcceptingS: number
  /** Records already in Kafka when the live load started (forwarded during start-up). */
  readonly kafkaRecordsAtLoadStart: number
  /** Records that arrived in Kafka per second between the load's start and the drain's end (or the bound). */
  readonly forwardedPerS: number
  /** Backlog records per second: backlog / (spawn -> drained). */
  readonly backlogPerS: number | null
  /** Highest per-second arrival rate in Kafka. */
  readonly peakForwardedPerS: number
  readonly live: {
    readonly offeredPerS: number
    readonly ackedPerS: number
    readonly acked: number
    readonly latencyMs: LatencySummary | null
    readonly deferred: number
    readonly sendLagP99Ms: number | null
    readonly disconnects: number
    readonly errors: string[]
  }
  /** forwardedPerS / live.ackedPerS. */
  readonly ratio: number | null
  readonly tributary: {
    readonly cpuCores: number
    readonly idleRssMB: number
    readonly peakRssMB: number
    readonly peakAnonMB: number
    readonly readMBPerS: number
    readonly writeMBPerS: number
  }
  readonly kafkaCpuCores: number | null
  readonly generatorCpuCores: number
  /** Busy cores of the whole machine (/proc/stat) during the drain, and what is left after tributary, Kafka and the generator: other people's work. */
  readonly machineBusyCores: number | null
  readonly otherCpuCores: number | null
  /** `tributary sinks --json` once the drain ended: lag per partition. */
  readonly lagAtEnd: Array<{ partition: number; lagRecords: number }>
  readonly series: DrainSample[]
  readonly problems: string[]
}

export interface DrainResult {
  readonly records: number
  readonly partitions: number
  readonly payloadBytes: number
  readonly liveRatePerS: number
  readonly maxSeconds: number
  readonly kafka: string
  readonly runs: DrainRun[]
  readonly failures: Array<{ variant: string; error: string }>
}

function writeConfig(dir: string, partitions: number, sink: Record<string, unknown> | null): string {
  const file = join(dir, sink === null ? 'tributary-fill.yaml' : 'tributary.yaml')
  const config = {
    streams: [{ name: DRAIN_STREAM, match: ['bench/#'], partitions, ack: 'durable' }],
    sinks: sink === null ? [] : [sink],
  }
  // JSON is YAML.
  writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`)
  return file
}

/** Records per Kafka partition of the drain topic, commit markers removed (exactly-once). */
class KafkaCounter {
  readonly #admin: Admin
  readonly #partitions: number
  readonly #exactlyOnce: boolean

  constructor(bootstrap: string, partitions: number, exactlyOnce: boolean) {
    this.#admin = new Admin({
      clientId: 'tributary-bench-drain',
      bootstrapBrokers: [bootstrap],
      connectTimeout: 2000,
      requestTimeout: 5000,
      retries: 1,
    })
    this.#partitions = partitions
    this.#exactlyOnce = exactlyOnce
  }

  async #ends(topic: string, partitions: number): Promise<number[]> {
    const listed = await this.#admin.listOffsets({
      topics: [
        {
          name: topic,
          partitions: Array.from({ length: partitions }, (_, i) => ({ partitionIndex: i, timestamp: -1n })),
        },
      ],
      // read_committed: the last stable offset, so an open transaction does not count.
      isolationLevel: this.#exactlyOnce ? 1 : 0,
    })
    const out = new Array<number>(partitions).fill(0)
    for (const p of listed[0]?.partitions ?? []) out[p.partitionIndex] = Number(p.offset)
    return out
  }

  /**
   * Per partition: the end offset, less the transaction markers it may hold.
   * Each exactly-once batch is one transaction writing one record to the
   * positions topic and records to one data partition; each commit adds a
   * marker to both. So the transactions so far are positionsEnd / 2, and a
   * data partition holds at most that many markers: subtracting them all
   * from every partition never over-counts (the drained test stays honest);
   * the total subtracts each marker once.
   */
  async count(): Promise<{ perPartition: number[]; total: number } | null> {
    try {
      const ends = await this.#ends(DRAIN_STREAM, this.#partitions)
      if (!this.#exactlyOnce) return { perPartition: ends, total: ends.reduce((a, b) => a + b, 0) }
      const [positionsEnd = 0] = await this.#ends(POSITIONS_TOPIC, 1)
      const transactions = Math.ceil(positionsEnd / 2)
      return {
        perPartition: ends.map((e) => e - transactions),
        total: ends.reduce((a, b) => a + b, 0) - transactions,
      }
    } catch {
      // The topic does not exist before the first batch.
      return null
    }
  }

  close(): Promise<void> {
    return this.#admin.close().catch(() => undefined)
  }
}

/**
 * startKafka, tried twice: the helper's random cluster id is base64url, and
 * one that starts with "-" is taken for an option by kafka-storage format
 * (about 1 start in 64), which a second id does not repeat.
 */
async function startKafkaRetrying(): Promise<KafkaBroker> {
  try {
    return await startKafka()
  } catch (err) {
    if (!(err instanceof Error && err.message.startsWith('kafka-storage format failed'))) throw err
    return startKafka()
  }
}

async function lagAtEnd(dataDir: string, configFile: string): Promise<DrainRun['lagAtEnd']> {
  const child = track(
    spawn(process.execPath, [CLI, 'sinks', '--json', '--data-dir', dataDir, '--config', configFile], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'ignore'],
    }),
  )
  let out = ''
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString()
  })
  try {
    await withDeadline(
      new Promise<void>((resolve) => child.once('exit', () => resolve())),
      30_000,
      'tributary sinks',
    )
  } finally {
    if (child.pid !== undefined) await stopChild(child, child.pid, 'SIGKILL', 5000)
  }
  return out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { stream: string; partition: number; lagRecords: number })
    .filter((r) => r.stream === DRAIN_STREAM)
    .map((r) => ({ partition: r.partition, lagRecords: r.lagRecords }))
}

async function runVariant(
  options: DrainOptions,
  variant: DrainVariant,
  log: (line: string) => void,
): Promise<DrainRun> {
  const dir = makeTempDir(`drain-${variant.label}`)
  const dataDir = join(dir, 'data')
  const problems = problemSink()
  const records = variant.backlog === false ? 0 : options.records
  let kafkaStarting: Promise<KafkaBroker> | null = null
  let node: ChildBroker | null = null
  let generator: GeneratorProcess | null = null
  let counter: KafkaCounter | null = null
  try {
    const startBroker = (configFile: string): Promise<ChildBroker> =>
      startChildBroker({
        entry: TRIBUTARY_ENTRIES[options.tributaryEntry],
        dataDir,
        configFile,
        dir,
        problems,
        until: 'log',
      })
    await (await startBroker(writeConfig(dir, options.partitions, null))).stop('SIGTERM')

    log(
      `  drain ${variant.label}: filling ${records.toLocaleString('en')} records into ${options.partitions} partitions; starting Kafka`,
    )
    kafkaStarting = startKafkaRetrying()
    kafkaStarting.catch(() => undefined)
    const fill = await runFillStore<FillResult>(
      [
        'fill',
        '--data-dir',
        dataDir,
        '--stream',
        DRAIN_STREAM,
        '--partitions',
        String(options.partitions),
        '--records',
        String(records),
        '--payload-bytes',
        String(PAYLOAD_BYTES),
        '--batch',
        '128',
        '--max-seconds',
        String(options.fillMaxSeconds),
      ],
      options.fillMaxSeconds,
      'fill',
    )
    const kafka = await kafkaStarting
    if (fill.stoppedEarly) throw new Error(`fill stopped early at ${fill.records} records`)
    // The fill goes round-robin, 128 records per append, over the partitions.
    const appends = Math.ceil(fill.records / 128)
    const backlog = Array.from({ length: options.partitions }, (_, p) => {
      let n = 0
      for (let a = p; a < appends; a += options.partitions) n += Math.min(128, fill.records - a * 128)
      return n
    })
    log(
      `  drain ${variant.label}: filled in ${fill.seconds.toFixed(1)} s; Kafka ${kafka.bootstrap} up in ${(kafka.lastStartMs / 1000).toFixed(1)} s`,
    )

    const sink = {
      name: 'central',
      type: 'kafka',
      brokers: [kafka.bootstrap],
      streams: [DRAIN_STREAM],
      ...variant.sink,
    }
    const configFile = writeConfig(dir, options.partitions, sink)
    counter = new KafkaCounter(kafka.bootstrap, options.partitions, variant.sink.exactlyOnce === true)
    node = await startBroker(configFile)
    const idle = readProc(node.pid)
    generator = new GeneratorProcess({
      port: node.port,
      connections: LIVE_CONNECTIONS,
      window: LIVE_WINDOW,
      qos: 1,
      payloadBytes: PAYLOAD_BYTES,
      clientIdPrefix: 'bench-live',
      topicPrefix: 'bench/live',
      ratePerS: options.liveRatePerS,
      maxSamples: MAX_SAMPLES,
      maxSeconds: options.maxSeconds + 120,
      drainMs: 3000,
      connectTimeoutMs: 20_000,
      probe: null,
    })
    await withDeadline(generator.ready, 30_000, 'live load connecting')
    const sampler = new PeakSampler(node.pid)
    const kafkaStart = kafka.pid === undefined ? null : readProc(kafka.pid)
    const start = readProc(node.pid)
    const machineStart = machineCpu()
    const atStart = (await counter.count())?.total ?? 0
    const loadT0 = performance.now()
    generator.send({ type: 'go' })
    generator.send({ type: 'measure' })

    const series: DrainSample[] = []
    let drainedAt: number | null = null
    let peak = 0
    let last = { t: 0, n: atStart }
    const deadline =
      loadT0 + (records === 0 ? Math.min(options.maxSeconds, BASELINE_SECONDS) : options.maxSeconds) * 1000
    let backlogInKafkaAt: number | null = null
    const live0 = generator
    while (performance.now() < deadline) {
      await sleep(POLL_MS)
      // Acked before the count is read: each of them is stored, so Kafka holding
      // backlog + acked records means tributary has caught up with that moment
      // (less CAUGHT_UP_S of live records: the steady distance behind a live load).
      const { acked } = await withDeadline(live0.progress(), 10_000, 'live load progress')
      const counted = await counter.count()
      const t = (performance.now() - loadT0) / 1000
      if (counted === null) continue
      series.push({ t, kafkaRecords: counted.total, liveAcked: acked })
      if (t > last.t) peak = Math.max(peak, (counted.total - last.n) / (t - last.t))
      last = { t, n: counted.total }
      if (records === 0) continue
      if (backlogInKafkaAt === null && counted.perPartition.every((n, p) => n >= (backlog[p] ?? 0)))
        backlogInKafkaAt = performance.now()
      if (counted.total >= records + acked - options.liveRatePerS * CAUGHT_UP_S) {
        drainedAt = performance.now()
        break
      }
    }
    const end = readProc(node.pid)
    const machineEnd = machineCpu()
    const kafkaEnd = kafka.pid === undefined ? null : readProc(kafka.pid)
    const endT = drainedAt ?? performance.now()
    generator.send({ type: 'stop' })
    const live: LoadResult = await withDeadline(generator.result, 30_000, 'live load reporting')
    const peaks = sampler.stop()
    const lag = await lagAtEnd(dataDir, configFile)
    if (start === null || end === null || idle === null) throw new Error('tributary died during the drain')
    const windowS = (end.atMs - start.atMs) / 1000
    const loadS = (endT - loadT0) / 1000
    const ackedPerS = live.measuredMs > 0 ? (live.acked * 1000) / live.measuredMs : 0
    const forwardedPerS = (last.n - atStart) / loadS
    const total = backlog.reduce((a, b) => a + b, 0)
    const mb = (b: number): number => b / 2 ** 20
    const tributaryCores = windowS > 0 ? (end.cpuS - start.cpuS) / windowS : 0
    const kafkaCores =
      kafkaStart === null || kafkaEnd === null
        ? null
        : (kafkaEnd.cpuS - kafkaStart.cpuS) / ((kafkaEnd.atMs - kafkaStart.atMs) / 1000)
    const generatorCores = live.measuredMs > 0 ? live.cpuMs / live.measuredMs : 0
    const machineCores =
      machineStart === null || machineEnd === null
        ? null
        : (machineEnd.busyS - machineStart.busyS) / ((machineEnd.atMs - machineStart.atMs) / 1000)
    return {
      variant: variant.label,
      sink: { ...sink, brokers: ['127.0.0.1:PORT'] },
      backlogRecords: total,
      backlogPerPartition: backlog,
      fill,
      drained: drainedAt !== null,
      loadToBacklogInKafkaS: backlogInKafkaAt === null ? null : (backlogInKafkaAt - loadT0) / 1000,
      loadToDrainedS: drainedAt === null ? null : loadS,
      spawnToDrainedS: drainedAt === null ? null : (drainedAt - node.t0) / 1000,
      spawnToAcceptingS: node.spawnToLogMs / 1000,
      kafkaRecordsAtLoadStart: atStart,
      forwardedPerS,
      backlogPerS: drainedAt === null ? null : total / ((drainedAt - node.t0) / 1000),
      peakForwardedPerS: peak,
      live: {
        offeredPerS: options.liveRatePerS,
        ackedPerS,
        acked: live.acked,
        latencyMs: live.samples.length > 0 ? latencySummary(live.samples) : null,
        deferred: live.deferred,
        sendLagP99Ms: live.sendLagP99Ms,
        disconnects: live.disconnects,
        errors: live.errors,
      },
      ratio: ackedPerS > 0 ? forwardedPerS / ackedPerS : null,
      tributary: {
        cpuCores: tributaryCores,
        idleRssMB: mb(idle.rssBytes),
        peakRssMB: mb(Math.max(peaks.rssBytes, end.rssBytes)),
        peakAnonMB: mb(Math.max(peaks.rssAnonBytes, end.rssAnonBytes)),
        readMBPerS: windowS > 0 ? (end.readBytes - start.readBytes) / 1e6 / windowS : 0,
        writeMBPerS: windowS > 0 ? (end.writeBytes - start.writeBytes) / 1e6 / windowS : 0,
      },
      kafkaCpuCores: kafkaCores,
      generatorCpuCores: generatorCores,
      machineBusyCores: machineCores,
      otherCpuCores:
        machineCores === null
          ? null
          : Math.max(0, machineCores - tributaryCores - (kafkaCores ?? 0) - generatorCores),
      lagAtEnd: lag,
      series,
      problems: problems.list,
    }
  } finally {
    await counter?.close()
    await generator?.stop()
    await node?.stop('SIGTERM')
    // Started alongside the fill: stopped however far it got.
    await kafkaStarting?.then((k) => k.stop()).catch(() => undefined)
    removeTempDir(dir)
  }
}

export async function runDrain(options: DrainOptions, log: (line: string) => void): Promise<DrainResult> {
  const runs: DrainRun[] = []
  const failures: DrainResult['failures'] = []
  for (const variant of options.variants) {
    try {
      const run = await withDeadline(
        runVariant(options, variant, log),
        (options.fillMaxSeconds + options.maxSeconds + 300) * 1000,
        `drain ${variant.label}`,
      )
      runs.push(run)
      log(
        `  drain ${variant.label}: ${run.backlogRecords === 0 ? 'no backlog' : run.drained ? `backlog in Kafka after ${run.loadToBacklogInKafkaS?.toFixed(1)} s, drained (caught up) in ${run.loadToDrainedS?.toFixed(1)} s` : `NOT drained within ${options.maxSeconds} s`}, ${Math.round(run.forwardedPerS).toLocaleString('en')} records/s to Kafka, live ${Math.round(run.live.ackedPerS).toLocaleString('en')} msgs/s (PUBACK p50 ${run.live.latencyMs?.p50.toFixed(1) ?? '-'} p99 ${run.live.latencyMs?.p99.toFixed(1) ?? '-'} ms), ratio ${run.ratio?.toFixed(2) ?? '-'}x, tributary ${run.tributary.cpuCores.toFixed(2)} cores, Kafka ${run.kafkaCpuCores?.toFixed(2) ?? '-'} cores, others ${run.otherCpuCores?.toFixed(2) ?? '-'} cores`,
      )
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err)
      failures.push({ variant: variant.label, error })
      log(`  drain ${variant.label}: FAILED: ${error}`)
    }
  }
  return {
    records: options.records,
    partitions: options.partitions,
    payloadBytes: PAYLOAD_BYTES,
    liveRatePerS: options.liveRatePerS,
    maxSeconds: options.maxSeconds,
    kafka: await kafkaVersion(),
    runs,
    failures,
  }
}
