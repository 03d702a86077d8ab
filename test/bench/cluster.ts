// `npm run bench -- --only cluster`: issue 12's bench list, on a LAN of
// network namespaces the benchmark makes itself (test/bench/cluster-nodes.ts;
// needs root; no traffic leaves those namespaces, mDNS included). Phases:
// 1. discovery: three nodes started at once with only a cluster name and a
//    secret; time from the spawn to the first record published on node 1
//    being readable (durable) on nodes 2 and 3;
// 2. throughput: the throughput group's closed-loop load (QoS 1, 128 B,
//    8 connections x 16 in flight) on node 1 of a single node, and of 2- and
//    3-node clusters with `ack: durable` and `ack: replicated` (minInsync 2);
//    per node CPU per message and disk bytes written per payload byte
//    (/proc/<pid>/io write_bytes);
// 3. follower lag at half the cluster's `durable` maximum: an open-loop load
//    plus a QoS 1 probe on its own stream; each follower's agent polls its
//    copy of the probe partition; lag = first readable on the follower -
//    PUBACK on node 1, per probe record;
// 4. catch-up: three nodes under a live open-loop load; node 2 is stopped,
//    node 1 loaded for the outage, node 2 restarted: its copy's progress
//    (its own /v1/peers) against the live rate, and the live
//    PUBACK p99 during the catch-up against the p99 before the outage.
// Every load is bounded in count of connections and in time; every process
// is killed by its pid and the namespaces deleted at the end.

import { monoMs } from './cluster-agent.ts'
import { type BenchLan, type ClusterNode, MQTT_PORT, type StreamSettings } from './cluster-nodes.ts'
import type { LoadConfig, LoadResult } from './load.ts'
import { machineCpu, type ProcSnapshot, readProc } from './proc-metrics.ts'
import { sleep, withDeadline } from './procs.ts'
import { GeneratorProcess } from './runner.ts'
import { type LatencySummary, latencySummary, median } from './stats.ts'

const PAYLOAD_BYTES = 128
const CONNECTIONS = 8
const WINDOW = 16
/** Open loop: the cap of unacknowledged messages per connection. */
const OPEN_LOOP_CAP = 1000
const MAX_SAMPLES = 2_000_000
const DRAIN_MS = 5000
const PROBE_TOPIC = 'probe/lag'
const PROBE_RATE_PER_S = 100
/** How often a follower's agent reads its copy of the probe partition. */
const LAG_POLL_MS = 5
/** How often the catch-up phase reads the origin's /v1/peers. */
const CATCH_UP_POLL_MS = 200
/** Caught up: the copy is behind the origin by at most this much live ingest. */
const CAUGHT_UP_WITHIN_S = 0.1
const DISCOVERY_TIMEOUT_S = 30
const STREAM = 'default'

export interface ClusterOptions {
  readonly quick: boolean
  readonly warmupS: number
  readonly durationS: number
  readonly idleS: number
  /** Live msgs/s of the catch-up phase. */
  readonly liveRatePerS: number
  readonly outageS: number
  readonly catchUpMaxS: number
  readonly discoveryRounds: number
  /** Rows of the throughput phase: cluster size, ack mode, messages in flight per connection. */
  readonly throughputRows: ReadonlyArray<ThroughputPlan>
  /** Each row is run this many times, in reverse order every other round (the machine is shared: other work comes and goes). */
  readonly throughputRounds: number
  /** Cluster sizes the lag phase runs at (each needs its durable throughput row). */
  readonly lagNodes: readonly number[]
  readonly catchUpNodes: number
}

export interface ThroughputPlan {
  readonly nodes: number
  readonly ack: StreamSettings['ack']
  readonly window: number
}

/** Busy cores of the machine during a window, and what is left after the nodes and the load generator. */
export interface MachineLoad {
  readonly busyCores: number
  readonly otherCores: number
}

export interface NodeFigures {
  readonly role: 'origin' | 'follower'
  readonly cpuCores: number
  readonly cpuUsPerMsg: number | null
  readonly writeBytesPerPayloadByte: number | null
  readonly writeMBPerS: number
}

export interface ThroughputRow {
  readonly nodes: number
  readonly ack: StreamSettings['ack']
  readonly window: number
  /** 1-based. */
  readonly round: number
  readonly label: string
  readonly msgsPerS: number
  readonly latencyMs: LatencySummary
  readonly perNode: NodeFigures[]
  readonly generatorElu: number
  readonly generatorCores: number
  readonly machine: MachineLoad | null
  readonly errors: string[]
  readonly problems: string[]
}

export interface LagRow {
  readonly nodes: number
  readonly offeredPerS: number
  readonly ackedPerS: number
  readonly publishLatencyMs: LatencySummary
  readonly probeSent: number
  readonly probeAcked: number
  /** Probe PUBLISH written -> PUBACK on node 1. */
  readonly probeAckMs: LatencySummary | null
  /** Per follower: probe records seen, lag summary, records seen before their PUBACK (lag <= 0). */
  readonly followers: Array<{
    readonly seen: number
    readonly missing: number
    readonly beforeAck: number
    readonly lagMs: LatencySummary | null
    /** Probe PUBLISH written -> readable on the follower. */
    readonly endToEndMs: LatencySummary | null
    readonly polls: number
  }>
  readonly perNode: NodeFigures[]
  readonly generatorCores: number
  readonly machine: MachineLoad | null
  readonly pollMs: number
  readonly problems: string[]
}

export interface CatchUpResult {
  readonly nodes: number
  readonly liveRatePerS: number
  readonly outageS: number
  readonly baseline: { readonly ackedPerS: number; readonly latencyMs: LatencySummary }
  readonly outage: { readonly ackedPerS: number; readonly latencyMs: LatencySummary }
  readonly during: {
    readonly ackedPerS: number
    readonly latencyMs: LatencySummary
    readonly seconds: number
  }
  /** Records the follower lacked when it was started again. */
  readonly backlogRecords: number
  readonly copiedRecords: number
  readonly spawnToLinkS: number | null
  readonly spawnToCaughtUpS: number | null
  /** Records copied per second from the link coming up to caught up. */
  readonly catchUpPerS: number | null
  readonly peakPerS: number | null
  readonly caughtUp: boolean
  /** [seconds since the spawn, origin durableNext, where the follower's copy ends] */
  readonly series: Array<readonly [number, number, number]>
  readonly originCores: number
  readonly followerCores: number
  /** Busy cores of the whole machine during the catch-up (everything: nodes, generator, others). */
  readonly machineBusyCores: number | null
  readonly problems: string[]
}

export interface DiscoveryRound {
  /** Spawn of the three nodes -> node 1 accepting MQTT. */
  readonly acceptingMs: number
  /** -> node 1's test record PUBACKed. */
  readonly publishedMs: number | null
  /** -> readable on node 2, node 3 (null: not within the bound). */
  readonly firstReplicatedMs: Array<number | null>
  readonly problems: string[]
}

export interface ClusterResult {
  readonly settings: ClusterOptions & {
    readonly probeRatePerS: number
    readonly lagPollMs: number
    readonly connections: number
    readonly window: number
    readonly payloadBytes: number
  }
  readonly discovery: DiscoveryRound[]
  readonly throughput: ThroughputRow[]
  readonly lag: LagRow[]
  readonly catchUp: CatchUpResult | null
  readonly failures: Array<{ readonly phase: string; readonly error: string }>
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function loadConfig(
  ratePerS: number | null,
  maxSeconds: number,
  prefix: string,
  window: number = WINDOW,
): LoadConfig {
  return {
    port: MQTT_PORT,
    connections: CONNECTIONS,
    window: ratePerS === null ? window : OPEN_LOOP_CAP,
    qos: 1,
    payloadBytes: PAYLOAD_BYTES,
    clientIdPrefix: prefix,
    topicPrefix: `bench/${prefix}`,
    ratePerS,
    maxSamples: MAX_SAMPLES,
    maxSeconds,
    drainMs: DRAIN_MS,
    connectTimeoutMs: 20_000,
    probe: null,
  }
}

/** A load generator inside node 1's namespace, connected and ready. */
async function generator(lan: BenchLan, config: LoadConfig): Promise<GeneratorProcess> {
  const g = new GeneratorProcess(config, lan.hosts[0]?.ns ?? null)
  try {
    await withDeadline(g.ready, 30_000, 'load generator connecting')
  } catch (err) {
    await g.stop()
    throw err
  }
  return g
}

async function finish(g: GeneratorProcess): Promise<LoadResult> {
  g.send({ type: 'stop' })
  try {
    return await withDeadline(g.result, DRAIN_MS + 30_000, 'load generator reporting')
  } finally {
    await g.stop()
  }
}

function ackedPerS(r: LoadResult): number {
  return r.measuredMs > 0 ? (r.acked * 1000) / r.measuredMs : 0
}

function snapshots(nodes: readonly ClusterNode[]): Array<ProcSnapshot | null> {
  return nodes.map((n) => readProc(n.pid))
}

function nodeFigures(
  before: ReadonlyArray<ProcSnapshot | null>,
  after: ReadonlyArray<ProcSnapshot | null>,
  acked: number,
): NodeFigures[] {
  return before.map((b, i) => {
    const a = after[i]
    if (b === null || a === null || a === undefined) throw new Error(`node ${i + 1} died during the run`)
    const seconds = (a.atMs - b.atMs) / 1000
    const cpuS = a.cpuS - b.cpuS
    const written = a.writeBytes - b.writeBytes
    return {
      role: i === 0 ? 'origin' : 'follower',
      cpuCores: seconds > 0 ? cpuS / seconds : 0,
      cpuUsPerMsg: acked > 0 ? (cpuS * 1e6) / acked : null,
      writeBytesPerPayloadByte: acked > 0 ? written / (acked * PAYLOAD_BYTES) : null,
      writeMBPerS: seconds > 0 ? written / 1e6 / seconds : 0,
    }
  })
}

function generatorCores(r: LoadResult): number {
  return r.measuredMs > 0 ? r.cpuMs / r.measuredMs : 0
}

function machineLoad(
  before: { busyS: number; atMs: number } | null,
  after: { busyS: number; atMs: number } | null,
  ours: number,
): MachineLoad | null {
  if (before === null || after === null || after.atMs <= before.atMs) return null
  const busyCores = (after.busyS - before.busyS) / ((after.atMs - before.atMs) / 1000)
  return { busyCores, otherCores: Math.max(0, busyCores - ours) }
}

function problemsOf(nodes: readonly ClusterNode[]): string[] {
  return nodes.flatMap((n, i) => n.problems.list.slice(0, 5).map((p) => `node ${i + 1}: ${p}`))
}

async function stopAll(nodes: readonly ClusterNode[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.stop('SIGTERM')))
}

function rowLabel(plan: ThroughputPlan): string {
  const base =
    plan.nodes === 1
      ? 'single node, durable'
      : `${plan.nodes} nodes, ${plan.ack}${plan.ack === 'replicated' ? ' (minInsync 2)' : ''}`
  return plan.window === WINDOW ? base : `${base}, ${CONNECTIONS} x ${plan.window}`
}

async function throughputRow(
  lan: BenchLan,
  o: ClusterOptions,
  plan: ThroughputPlan,
  round: number,
): Promise<ThroughputRow> {
  const nodes = await lan.startNodes(plan.nodes, { ack: plan.ack, minInsync: 2, replicas: plan.nodes })
  try {
    await lan.connected(nodes)
    await sleep(o.idleS * 1000)
    const g = await generator(lan, loadConfig(null, o.warmupS + o.durationS + 60, 'tp', plan.window))
    g.send({ type: 'go' })
    await sleep(o.warmupS * 1000)
    g.send({ type: 'measure' })
    const before = snapshots(nodes)
    const machineBefore = machineCpu()
    await sleep(o.durationS * 1000)
    const after = snapshots(nodes)
    const machineAfter = machineCpu()
    const r = await finish(g)
    const perNode = nodeFigures(before, after, r.acked)
    return {
      ...plan,
      round,
      label: rowLabel(plan),
      msgsPerS: ackedPerS(r),
      latencyMs: latencySummary(r.samples),
      perNode,
      generatorElu: r.elu,
      generatorCores: generatorCores(r),
      machine: machineLoad(
        machineBefore,
        machineAfter,
        perNode.reduce((n, f) => n + f.cpuCores, generatorCores(r)),
      ),
      errors: r.errors,
      problems: problemsOf(nodes),
    }
  } finally {
    await stopAll(nodes)
  }
}

async function lagRow(lan: BenchLan, o: ClusterOptions, count: number, ratePerS: number): Promise<LagRow> {
  const nodes = await lan.startNodes(count, { ack: 'durable', minInsync: 2, replicas: count })
  try {
    await lan.connected(nodes)
    const originId = await nodes[0]?.nodeId()
    if (originId === undefined) throw new Error('no origin')
    const g = await generator(lan, loadConfig(ratePerS, o.warmupS + o.durationS + 60, 'lag'))
    g.send({ type: 'go' })
    const probe = lan.agent(0).start({
      type: 'probe',
      port: MQTT_PORT,
      topic: PROBE_TOPIC,
      ratePerS: PROBE_RATE_PER_S,
      maxSeconds: o.warmupS + o.durationS + 30,
    })
    const url = `http://127.0.0.1:8080/v1/streams/probe/partitions/0/records?origin=${originId}&maxRecords=1000`
    const watches = nodes.slice(1).map((n) =>
      lan.agent(n.host.index).start({
        type: 'watch',
        url,
        intervalMs: LAG_POLL_MS,
        maxSeconds: o.warmupS + o.durationS + 40,
        stopAfter: null,
      }),
    )
    await sleep(o.warmupS * 1000)
    g.send({ type: 'measure' })
    const before = snapshots(nodes)
    const machineBefore = machineCpu()
    await sleep(o.durationS * 1000)
    const after = snapshots(nodes)
    const machineAfter = machineCpu()
    probe.end()
    const probed = await withDeadline(probe.answer, 30_000, 'lag probe')
    // Give the followers a moment to copy the last probe records.
    await sleep(1000)
    for (const w of watches) w.end()
    const watched = await withDeadline(Promise.all(watches.map((w) => w.answer)), 30_000, 'lag watch')
    const r = await finish(g)
    const probedAt = new Map(probed.acks.map(([seq, sentMs, ackMs]) => [seq, { sentMs, ackMs }]))
    const followers = watched.map((w) => {
      const seenSeqs = new Set(w.seen.map(([seq]) => seq))
      const lags: number[] = []
      const endToEnd: number[] = []
      let beforeAck = 0
      for (const [seq, seenMs] of w.seen) {
        const at = probedAt.get(seq)
        if (at === undefined) continue
        const lag = seenMs - at.ackMs
        if (lag <= 0) beforeAck++
        lags.push(Math.max(0, lag))
        endToEnd.push(seenMs - at.sentMs)
      }
      return {
        seen: w.seen.length,
        missing: probed.acks.filter(([seq]) => !seenSeqs.has(seq)).length,
        beforeAck,
        lagMs: summary(lags),
        endToEndMs: summary(endToEnd),
        polls: w.polls,
      }
    })
    const perNode = nodeFigures(before, after, r.acked)
    if (probed.error !== null) r.errors.push(`lag probe: ${probed.error}`)
    return {
      nodes: count,
      offeredPerS: ratePerS,
      ackedPerS: ackedPerS(r),
      publishLatencyMs: latencySummary(r.samples),
      probeSent: probed.sent,
      probeAcked: probed.acks.length,
      probeAckMs: summary(probed.acks.map(([, sentMs, ackMs]) => ackMs - sentMs)),
      followers,
      perNode,
      generatorCores: generatorCores(r),
      machine: machineLoad(
        machineBefore,
        machineAfter,
        perNode.reduce((n, f) => n + f.cpuCores, generatorCores(r)),
      ),
      pollMs: LAG_POLL_MS,
      problems: [...problemsOf(nodes), ...r.errors],
    }
  } finally {
    await stopAll(nodes)
  }
}

/** Latency summary of millisecond values (negative ones count as 0); null for none. */
function summary(valuesMs: readonly number[]): LatencySummary | null {
  if (valuesMs.length === 0) return null
  return latencySummary(Uint32Array.from(valuesMs, (v) => Math.round(Math.max(0, v) * 1000)))
}

interface PeersBody {
  readonly cluster: {
    readonly partitions: Array<{ stream: string; partition: number; durableNext: number }>
  } | null
  readonly peers: Array<{
    readonly nodeId: string | null
    readonly copies: Array<{ stream: string; partition: number; nextOffset: number }>
  }>
}

/**
 * Node 1's durable end of `default`/0 (its /v1/peers), then where the
 * follower's copy of it ends (the follower's own /v1/peers; null while its
 * admin API is not up or it has no copy yet). The follower's view, not the
 * origin's `synced` list: the origin re-dials a restarted peer with backoff,
 * and the follower copies before that link is back.
 */
async function positions(
  lan: BenchLan,
  follower: ClusterNode,
  originId: string,
): Promise<{ origin: number; copy: number | null }> {
  const own = await lan.agent(0).get<PeersBody>('/v1/peers')
  if (own.status !== 200) throw new Error(`node 1 /v1/peers answered ${own.status}`)
  const origin =
    own.body.cluster?.partitions.find((p) => p.stream === STREAM && p.partition === 0)?.durableNext ?? 0
  const theirs = await lan.agent(follower.host.index).get<PeersBody>('/v1/peers')
  if (theirs.status !== 200) return { origin, copy: null }
  const copy =
    theirs.body.peers
      .find((p) => p.nodeId === originId)
      ?.copies.find((c) => c.stream === STREAM && c.partition === 0)?.nextOffset ?? null
  return { origin, copy }
}

async function catchUp(lan: BenchLan, o: ClusterOptions): Promise<CatchUpResult> {
  const rate = o.liveRatePerS
  // Every node holds every partition: node 2 stays node 1's follower while it is away (no other node can take its place).
  const run = lan.runDir({ ack: 'durable', minInsync: 2, replicas: o.catchUpNodes })
  const nodes = lan.hosts.slice(0, o.catchUpNodes).map((h) => lan.startNode(h, run, true))
  const problems: string[] = []
  try {
    await Promise.all(nodes.map((n) => n.until('tributary accepting MQTT connections', 60_000)))
    await lan.connected(nodes)
    const [origin, follower] = nodes
    if (origin === undefined || follower === undefined) throw new Error('catch-up needs two nodes')
    const originId = await origin.nodeId()
    const bound = (s: number): number => o.warmupS + s + 60

    // Before: every follower in sync.
    const base = await generator(lan, loadConfig(rate, bound(o.durationS), 'base'))
    base.send({ type: 'go' })
    await sleep(o.warmupS * 1000)
    base.send({ type: 'measure' })
    await sleep(o.durationS * 1000)
    const baseline = await finish(base)

    // The outage: the follower stops cleanly; the origin is loaded on.
    const outageGen = await generator(lan, loadConfig(rate, bound(o.outageS), 'outage'))
    const held = (await positions(lan, follower, originId)).copy ?? 0
    problems.push(...problemsOf([follower]))
    await follower.stop('SIGTERM')
    outageGen.send({ type: 'go' })
    outageGen.send({ type: 'measure' })
    await sleep(o.outageS * 1000)
    const catchGen = await generator(lan, loadConfig(rate, bound(o.catchUpMaxS), 'catch'))
    const outage = await finish(outageGen)

    // Catch-up: the follower again, on its own data dir, under the live load.
    catchGen.send({ type: 'go' })
    catchGen.send({ type: 'measure' })
    const originBefore = readProc(origin.pid)
    const machineBefore = machineCpu()
    const restarted = lan.startNode(follower.host, run, true)
    nodes[1] = restarted
    const t0 = restarted.spawnedAtMs
    const series: Array<readonly [number, number, number]> = []
    const backlogAt = (await positions(lan, restarted, originId)).origin
    let caughtAt: number | null = null
    let last: { origin: number; copy: number } = { origin: backlogAt, copy: held }
    while (monoMs() - t0 < o.catchUpMaxS * 1000) {
      const p = await positions(lan, restarted, originId)
      const at = monoMs()
      if (p.copy !== null) {
        last = { origin: p.origin, copy: p.copy }
        series.push([(at - t0) / 1000, p.origin, p.copy])
        if (p.origin - p.copy <= rate * CAUGHT_UP_WITHIN_S) {
          caughtAt = at
          break
        }
      }
      await sleep(CATCH_UP_POLL_MS)
    }
    const originAfter = readProc(origin.pid)
    const followerAfter = readProc(restarted.pid)
    const machineAfter = machineCpu()
    const during = await finish(catchGen)
    const linkAt = restarted.loggedAt('following peer', originId)
    const copied = last.copy - held
    const copyS = caughtAt !== null && linkAt !== null ? (caughtAt - linkAt) / 1000 : null
    let peak: number | null = null
    for (let i = 1; i < series.length; i++) {
      const [t1, , c1] = series[i] ?? [0, 0, 0]
      for (let j = i - 1; j >= 0; j--) {
        const [t0j, , c0] = series[j] ?? [0, 0, 0]
        if (t1 - t0j >= 1) {
          peak = Math.max(peak ?? 0, (c1 - c0) / (t1 - t0j))
          break
        }
      }
    }
    problems.push(...problemsOf([origin, restarted]))
    return {
      nodes: o.catchUpNodes,
      liveRatePerS: rate,
      outageS: o.outageS,
      baseline: { ackedPerS: ackedPerS(baseline), latencyMs: latencySummary(baseline.samples) },
      outage: { ackedPerS: ackedPerS(outage), latencyMs: latencySummary(outage.samples) },
      during: {
        ackedPerS: ackedPerS(during),
        latencyMs: latencySummary(during.samples),
        seconds: during.measuredMs / 1000,
      },
      backlogRecords: backlogAt - held,
      copiedRecords: copied,
      spawnToLinkS: linkAt === null ? null : (linkAt - t0) / 1000,
      spawnToCaughtUpS: caughtAt === null ? null : (caughtAt - t0) / 1000,
      catchUpPerS: copyS !== null && copyS > 0 ? copied / copyS : null,
      peakPerS: peak,
      caughtUp: caughtAt !== null,
      series,
      originCores:
        originBefore === null || originAfter === null
          ? Number.NaN
          : (originAfter.cpuS - originBefore.cpuS) / ((originAfter.atMs - originBefore.atMs) / 1000),
      machineBusyCores: machineLoad(machineBefore, machineAfter, 0)?.busyCores ?? null,
      // From its spawn: start-up included.
      followerCores: followerAfter === null ? Number.NaN : followerAfter.cpuS / ((monoMs() - t0) / 1000),
      problems: [...problems, ...baseline.errors, ...outage.errors, ...during.errors].slice(0, 20),
    }
  } finally {
    await stopAll(nodes)
  }
}

async function discoveryRound(lan: BenchLan): Promise<DiscoveryRound> {
  // Both other nodes hold node 1's partitions, so both show when the first record arrives.
  const run = lan.runDir({ ack: 'durable', minInsync: 2, replicas: lan.hosts.length })
  const t0 = monoMs()
  const nodes = lan.hosts.map((h) => lan.startNode(h, run, true))
  try {
    const publish = lan.agent(0).start({
      type: 'publish-one',
      port: MQTT_PORT,
      topic: PROBE_TOPIC,
      maxSeconds: DISCOVERY_TIMEOUT_S,
    })
    const originId = await nodes[0]?.nodeId()
    if (originId === undefined) throw new Error('no origin')
    const url = `http://127.0.0.1:8080/v1/streams/probe/partitions/0/records?origin=${originId}&maxRecords=10`
    const watches = nodes.slice(1).map((n) =>
      lan.agent(n.host.index).start({
        type: 'watch',
        url,
        intervalMs: 5,
        maxSeconds: DISCOVERY_TIMEOUT_S,
        stopAfter: 1,
      }),
    )
    const published = await withDeadline(publish.answer, (DISCOVERY_TIMEOUT_S + 10) * 1000, 'first publish')
    const seen = await withDeadline(
      Promise.all(watches.map((w) => w.answer)),
      (DISCOVERY_TIMEOUT_S + 10) * 1000,
      'first replicated record',
    )
    const accepting = nodes[0]?.loggedAt('tributary accepting MQTT connections') ?? null
    return {
      acceptingMs: accepting === null ? Number.NaN : accepting - t0,
      publishedMs: published.ackMs === null ? null : published.ackMs - t0,
      firstReplicatedMs: seen.map((w) => {
        const first = w.seen[0]
        return first === undefined ? null : first[1] - t0
      }),
      problems: [...problemsOf(nodes), ...(published.error === null ? [] : [`publish: ${published.error}`])],
    }
  } finally {
    await stopAll(nodes)
  }
}

/** Runs every phase on one LAN; a failed phase is recorded and the next one runs. */
export async function runCluster(
  lan: BenchLan,
  o: ClusterOptions,
  say: (line: string) => void,
): Promise<ClusterResult> {
  const failures: ClusterResult['failures'] = []
  const attempt = async <T>(phase: string, work: () => Promise<T>): Promise<T | null> => {
    try {
      return await work()
    } catch (err) {
      failures.push({ phase, error: errorText(err) })
      say(`  ${phase} FAILED: ${errorText(err)}`)
      return null
    }
  }
  const discovery: DiscoveryRound[] = []
  for (let i = 0; i < o.discoveryRounds; i++) {
    const round = await attempt(`discovery ${i + 1}`, () => discoveryRound(lan))
    if (round === null) continue
    discovery.push(round)
    say(
      `  discovery ${i + 1}: accepting ${round.acceptingMs.toFixed(0)} ms, first record on node 2/3 ${round.firstReplicatedMs.map((m) => (m === null ? '-' : m.toFixed(0))).join(' / ')} ms after the spawn`,
    )
  }
  const throughput: ThroughputRow[] = []
  for (let round = 1; round <= o.throughputRounds; round++) {
    const plans = round % 2 === 1 ? o.throughputRows : [...o.throughputRows].reverse()
    for (const plan of plans) {
      const row = await attempt(`throughput ${rowLabel(plan)}, round ${round}`, () =>
        throughputRow(lan, o, plan, round),
      )
      if (row === null) continue
      throughput.push(row)
      say(
        `  round ${round}, ${row.label}: ${Math.round(row.msgsPerS).toLocaleString('en')} msgs/s, p99 ${row.latencyMs.p99.toFixed(2)} ms, CPU µs/msg ${row.perNode.map((n) => n.cpuUsPerMsg?.toFixed(1) ?? '-').join(' / ')}, write B/B ${row.perNode.map((n) => n.writeBytesPerPayloadByte?.toFixed(2) ?? '-').join(' / ')}, other cores ${row.machine?.otherCores.toFixed(2) ?? '-'}`,
      )
    }
  }
  const lag: LagRow[] = []
  for (const count of o.lagNodes) {
    const max = bestRow(throughput, count, 'durable', WINDOW)?.msgsPerS
    if (max === undefined) {
      failures.push({ phase: `lag ${count} nodes`, error: 'no durable throughput row to take half of' })
      continue
    }
    const rate = Math.round(max / 2)
    const row = await attempt(`lag ${count} nodes`, () => lagRow(lan, o, count, rate))
    if (row === null) continue
    lag.push(row)
    say(
      `  lag, ${count} nodes at ${rate.toLocaleString('en')} msgs/s: p99 ${row.followers.map((f) => f.lagMs?.p99.toFixed(1) ?? '-').join(' / ')} ms (max ${row.followers.map((f) => f.lagMs?.max.toFixed(1) ?? '-').join(' / ')})`,
    )
  }
  const caught = await attempt('catch-up', () => catchUp(lan, o))
  if (caught !== null)
    say(
      `  catch-up: ${caught.backlogRecords.toLocaleString('en')} records behind, ${caught.catchUpPerS === null ? 'not caught up' : `${Math.round(caught.catchUpPerS).toLocaleString('en')} records/s (${(caught.catchUpPerS / caught.liveRatePerS).toFixed(1)}x live)`}, live p99 ${caught.baseline.latencyMs.p99.toFixed(2)} ms before, ${caught.during.latencyMs.p99.toFixed(2)} ms during`,
    )
  return {
    settings: {
      ...o,
      probeRatePerS: PROBE_RATE_PER_S,
      lagPollMs: LAG_POLL_MS,
      connections: CONNECTIONS,
      window: WINDOW,
      payloadBytes: PAYLOAD_BYTES,
    },
    discovery,
    throughput,
    lag,
    catchUp: caught,
    failures,
  }
}

/** The round of a row with the highest throughput (the least disturbed by other work on the machine). */
export function bestRow(
  rows: readonly ThroughputRow[],
  nodes: number,
  ack: StreamSettings['ack'],
  window: number,
): ThroughputRow | undefined {
  let best: ThroughputRow | undefined
  for (const r of rows)
    if (
      r.nodes === nodes &&
      r.ack === ack &&
      r.window === window &&
      (best === undefined || r.msgsPerS > best.msgsPerS)
    )
      best = r
  return best
}

/** Median of a discovery figure over the rounds (NaN for none). */
export function discoveryMedian(
  rounds: readonly DiscoveryRound[],
  pick: (r: DiscoveryRound) => number | null,
): number {
  return median(rounds.map(pick).filter((v): v is number => v !== null && Number.isFinite(v)))
}
