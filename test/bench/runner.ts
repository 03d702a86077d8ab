// One measured run: start a system on a fresh temp dir, read its idle
// memory, fork the load generator process(es) (and the QoS 0 probe), warm
// up, measure a fixed window while sampling the broker's /proc figures, stop,
// stop the system, and turn everything into one RunResult. Every step has a
// deadline; every process started here is killed by pid in a finally.

import { type ChildProcess, fork, spawn } from 'node:child_process'
import { join } from 'node:path'
import { HealthProbe, type HealthProbeResult } from './health-probe.ts'
import type { FromGenerator, LoadConfig, LoadResult, ToGenerator } from './load.ts'
import { PeakSampler, type Peaks, type ProcSnapshot, readProc } from './proc-metrics.ts'
import { exitWithin, sleep, stopChild, track, withDeadline } from './procs.ts'
import { type LatencySummary, latencySummary } from './stats.ts'
import { type StartedSystem, type SystemName, startSystem, type TributaryEntry } from './systems.ts'

const LOAD_SCRIPT = join(import.meta.dirname, 'load.ts')
const MAX_SAMPLES_PER_GENERATOR = 4_000_000
const DRAIN_MS = 5000
const PROBE_TOPIC = 'probe/latency'
/** GET /healthz per second, where the system serves it (test/bench/health-probe.ts). */
const HEALTH_PROBE_RATE_PER_S = 20
const MB = 1e6

export interface LoadSpec {
  /** e.g. `qos1-128b-8x16`. */
  readonly label: string
  readonly qos: 0 | 1 | 2
  readonly payloadBytes: number
  readonly connections: number
  readonly window: number
  /** Open loop: total offered messages per second; null: closed loop. */
  readonly ratePerS: number | null
  /** Also run a QoS 0 probe (publisher + subscriber) at this rate, in its own process. */
  readonly probeRatePerS: number | null
}

export interface Timing {
  readonly warmupS: number
  readonly durationS: number
  /** Seconds between start and the idle memory reading. */
  readonly idleS: number
  readonly generators: number
  readonly tributaryEntry: TributaryEntry
}

export interface RunResult {
  readonly scenario: string
  readonly system: SystemName
  readonly description: string
  readonly load: LoadSpec
  readonly syncDelayMs: number | null
  readonly measuredS: number
  readonly acked: number
  readonly msgsPerS: number
  /** Payload megabytes (10^6 B) acknowledged per second. */
  readonly payloadMBPerS: number
  /** Write -> ack, ms; null for QoS 0 (no ack). */
  readonly latencyMs: LatencySummary | null
  readonly slowestSecond: { readonly index: number; readonly msgs: number } | null
  readonly memoryMB: {
    readonly idleRss: number
    readonly idleAnon: number
    readonly peakRss: number
    readonly peakAnon: number
  }
  readonly cpuUsPerMsg: number | null
  readonly cpuCores: number | null
  /** Bytes the broker caused to be written to storage, per payload byte acknowledged. */
  readonly writeBytesPerPayloadByte: number | null
  readonly writeMBPerS: number | null
  readonly syncsPerS: number | null
  readonly generator: {
    readonly processes: number
    readonly elu: number[]
    readonly cpuCores: number[]
    readonly deferred: number
    readonly sendLagP99Ms: number | null
    readonly disconnects: number
    readonly unackedAtEnd: number
    readonly errors: string[]
  }
  readonly probe: {
    readonly sent: number
    readonly received: number
    readonly latencyMs: LatencySummary | null
  } | null
  /** GET /healthz during the measured window (tributary under slow syncs). */
  readonly health?: {
    readonly sent: number
    readonly ok: number
    readonly latencyMs: LatencySummary | null
  } | null
  /** Warnings and errors in the system's own log. */
  readonly problems: string[]
}

/**
 * A forked load generator and the promises of its two answers. With `netns`
 * it runs inside that network namespace (`ip netns exec` execs node, so the
 * pid is the generator's and the IPC channel passes through), where
 * 127.0.0.1 is the namespace's own loopback (the cluster benchmark).
 */
export class GeneratorProcess {
  readonly child: ChildProcess
  readonly ready: Promise<void>
  readonly result: Promise<LoadResult>

  constructor(config: LoadConfig, netns: string | null = null) {
    const stdio: ['ignore', 'inherit', 'inherit', 'ipc'] = ['ignore', 'inherit', 'inherit', 'ipc']
    this.child = track(
      netns === null
        ? fork(LOAD_SCRIPT, [], { serialization: 'advanced', stdio })
        : spawn('ip', ['netns', 'exec', netns, process.execPath, LOAD_SCRIPT], {
            serialization: 'advanced',
            stdio,
          }),
    )
    const failed = new Promise<never>((_, reject) => {
      this.child.on('message', (m: FromGenerator) => {
        if (m.type === 'failed') reject(new Error(`load generator: ${m.error}`))
      })
      this.child.once('exit', (code, sig) =>
        reject(new Error(`load generator exited (code ${code}, signal ${sig})`)),
      )
    })
    failed.catch(() => undefined)
    const answer = <T extends FromGenerator['type']>(type: T): Promise<Extract<FromGenerator, { type: T }>> =>
      Promise.race([
        new Promise<Extract<FromGenerator, { type: T }>>((resolve) => {
          this.child.on('message', (m: FromGenerator) => {
            if (m.type === type) resolve(m as Extract<FromGenerator, { type: T }>)
          })
        }),
        failed,
      ])
    this.ready = answer('ready').then(() => undefined)
    this.result = answer('result').then((m) => m.result)
    this.ready.catch(() => undefined)
    this.result.catch(() => undefined)
    this.send({ type: 'start', config })
  }

  /** The acks counted so far (the generator answers between its sends). */
  progress(): Promise<{ acked: number; sent: number }> {
    return new Promise((resolve) => {
      const onMessage = (m: FromGenerator): void => {
        if (m.type !== 'progress') return
        this.child.off('message', onMessage)
        resolve({ acked: m.acked, sent: m.sent })
      }
      this.child.on('message', onMessage)
      this.send({ type: 'progress' })
    })
  }

  send(message: ToGenerator): void {
    if (this.child.connected) this.child.send(message)
  }

  async stop(): Promise<void> {
    if (this.child.pid === undefined) return
    if (!(await exitWithin(this.child, 3000))) await stopChild(this.child, this.child.pid, 'SIGTERM', 3000)
  }
}

function split(total: number, parts: number, i: number): number {
  return Math.floor(total / parts) + (i < total % parts ? 1 : 0)
}

function mb(bytes: number): number {
  return bytes / 1024 / 1024
}

function generatorConfigs(port: number, spec: LoadSpec, timing: Timing): LoadConfig[] {
  const processes = Math.max(1, Math.min(timing.generators, spec.connections))
  const maxSeconds = timing.warmupS + timing.durationS + DRAIN_MS / 1000 + 60
  const configs: LoadConfig[] = []
  for (let i = 0; i < processes; i++) {
    const connections = split(spec.connections, processes, i)
    configs.push({
      port,
      connections,
      window: spec.window,
      qos: spec.qos,
      payloadBytes: spec.payloadBytes,
      clientIdPrefix: `bench-g${i}`,
      topicPrefix: `bench/g${i}`,
      ratePerS: spec.ratePerS === null ? null : (spec.ratePerS * connections) / spec.connections,
      maxSamples: MAX_SAMPLES_PER_GENERATOR,
      maxSeconds,
      drainMs: DRAIN_MS,
      connectTimeoutMs: 20_000,
      probe: null,
    })
  }
  if (spec.probeRatePerS !== null) {
    configs.push({
      port,
      connections: 0,
      window: 1,
      qos: 0,
      payloadBytes: 16,
      clientIdPrefix: 'bench-probe',
      topicPrefix: 'probe',
      ratePerS: null,
      maxSamples: 1,
      maxSeconds,
      drainMs: 0,
      connectTimeoutMs: 20_000,
      probe: { ratePerS: spec.probeRatePerS, topic: PROBE_TOPIC },
    })
  }
  return configs
}

function concat(arrays: readonly Uint32Array[]): Uint32Array {
  const out = new Uint32Array(arrays.reduce((n, a) => n + a.length, 0))
  let at = 0
  for (const a of arrays) {
    out.set(a, at)
    at += a.length
  }
  return out
}

export async function runScenario(
  scenario: string,
  systemName: SystemName,
  spec: LoadSpec,
  timing: Timing,
  syncDelayUs: number | null,
): Promise<RunResult> {
  const system = await startSystem(systemName, {
    syncDelayUs,
    timeoutMs: 60_000,
    tributaryEntry: timing.tributaryEntry,
    // The admin API's responsiveness is measured where the disk is slow.
    adminApi: syncDelayUs !== null,
  })
  const generators: GeneratorProcess[] = []
  try {
    return await withDeadline(
      measure(scenario, system, spec, timing, syncDelayUs, generators),
      (timing.idleS + timing.warmupS + timing.durationS) * 1000 + DRAIN_MS + 90_000,
      `${scenario} on ${systemName}`,
    )
  } finally {
    await Promise.all(generators.map((g) => g.stop()))
    await system.stop()
  }
}

async function measure(
  scenario: string,
  system: StartedSystem,
  spec: LoadSpec,
  timing: Timing,
  syncDelayUs: number | null,
  generators: GeneratorProcess[],
): Promise<RunResult> {
  await sleep(timing.idleS * 1000)
  const idle = readProc(system.pid)
  if (idle === null) throw new Error(`${system.name} (pid ${system.pid}) is gone`)

  for (const config of generatorConfigs(system.port, spec, timing))
    generators.push(new GeneratorProcess(config))
  await withDeadline(Promise.all(generators.map((g) => g.ready)), 60_000, 'load generators connecting')
  const sampler = new PeakSampler(system.pid)
  let start: ProcSnapshot | null = null
  let end: ProcSnapshot | null = null
  let syncs0: number | null = null
  let syncs1: number | null = null
  let results: LoadResult[]
  let peaks: Peaks
  let health: HealthProbe | null = null
  let healthResult: HealthProbeResult | null = null
  try {
    for (const g of generators) g.send({ type: 'go' })
    await sleep(timing.warmupS * 1000)
    for (const g of generators) g.send({ type: 'measure' })
    start = readProc(system.pid)
    syncs0 = system.syncCount()
    if (system.healthUrl !== null) health = new HealthProbe(system.healthUrl, HEALTH_PROBE_RATE_PER_S)
    await sleep(timing.durationS * 1000)
    end = readProc(system.pid)
    syncs1 = system.syncCount()
    healthResult = (await health?.stop()) ?? null
    health = null
    for (const g of generators) g.send({ type: 'stop' })
    results = await withDeadline(
      Promise.all(generators.map((g) => g.result)),
      DRAIN_MS + 30_000,
      'load generators reporting',
    )
  } finally {
    // The sampler and the probe stop whether or not the load finished.
    peaks = sampler.stop()
    await health?.stop()
  }
  if (start === null || end === null) throw new Error(`${system.name} died during the run`)

  const load = spec.probeRatePerS === null ? results : results.slice(0, -1)
  const probeResult = spec.probeRatePerS === null ? null : (results.at(-1)?.probe ?? null)
  const acked = load.reduce((n, r) => n + r.acked, 0)
  const msgsPerS = load.reduce((n, r) => n + (r.measuredMs > 0 ? (r.acked * 1000) / r.measuredMs : 0), 0)
  const windowS = (end.atMs - start.atMs) / 1000
  const seconds = Math.min(...load.map((r) => r.perSecond.length))
  const perSecond = Array.from({ length: seconds }, (_, i) =>
    load.reduce((n, r) => n + (r.perSecond[i] ?? 0), 0),
  )
  let slowest: RunResult['slowestSecond'] = null
  perSecond.forEach((msgs, index) => {
    if (slowest === null || msgs < slowest.msgs) slowest = { index, msgs }
  })
  const payloadBytes = acked * spec.payloadBytes
  const cpuS = end.cpuS - start.cpuS
  const written = end.writeBytes - start.writeBytes
  return {
    scenario,
    system: system.name,
    description: system.description,
    load: spec,
    syncDelayMs: syncDelayUs === null ? null : syncDelayUs / 1000,
    measuredS: windowS,
    acked,
    msgsPerS,
    payloadMBPerS: (msgsPerS * spec.payloadBytes) / MB,
    latencyMs: spec.qos === 0 ? null : latencySummary(concat(load.map((r) => r.samples))),
    slowestSecond: slowest,
    memoryMB: {
      idleRss: mb(idle.rssBytes),
      idleAnon: mb(idle.rssAnonBytes),
      peakRss: mb(Math.max(peaks.rssBytes, end.rssBytes)),
      peakAnon: mb(Math.max(peaks.rssAnonBytes, end.rssAnonBytes)),
    },
    cpuUsPerMsg: acked > 0 ? (cpuS * 1e6) / acked : null,
    cpuCores: windowS > 0 ? cpuS / windowS : null,
    writeBytesPerPayloadByte: payloadBytes > 0 ? written / payloadBytes : null,
    writeMBPerS: windowS > 0 ? written / MB / windowS : null,
    syncsPerS: syncs0 === null || syncs1 === null || windowS <= 0 ? null : (syncs1 - syncs0) / windowS,
    generator: {
      processes: load.length,
      elu: load.map((r) => r.elu),
      cpuCores: load.map((r) => (r.measuredMs > 0 ? r.cpuMs / r.measuredMs : 0)),
      deferred: load.reduce((n, r) => n + r.deferred, 0),
      sendLagP99Ms: load.reduce<number | null>(
        (n, r) => (r.sendLagP99Ms === null ? n : Math.max(n ?? 0, r.sendLagP99Ms)),
        null,
      ),
      disconnects: results.reduce((n, r) => n + r.disconnects, 0),
      unackedAtEnd: load.reduce((n, r) => n + r.unackedAtEnd, 0),
      errors: results.flatMap((r) => r.errors).slice(0, 20),
    },
    probe:
      probeResult === null
        ? null
        : {
            sent: probeResult.sent,
            received: probeResult.received,
            latencyMs: probeResult.samples.length > 0 ? latencySummary(probeResult.samples) : null,
          },
    health:
      healthResult === null
        ? null
        : {
            sent: healthResult.sent,
            ok: healthResult.ok,
            latencyMs: healthResult.samplesUs.length > 0 ? latencySummary(healthResult.samplesUs) : null,
          },
    problems: system.problems(),
  }
}
