// `npm run bench`: the benchmark of issue 4. Runs every scenario against the
// ack-only server (the generator's ceiling), Mosquitto, nats-server and
// tributary (durable and relaxed), then the SD-card (slow sync) runs and the
// restart/read test; prints the tables with ratios and writes
// docs/benchmarks/<date>-<sha>.json, latest.md and latest.svg.
//
// Flags: --quick (short runs, small store, ~2 min; writes files only with
// --out), --only GROUP[,GROUP] (ceiling, throughput, qos, rate, sdcard,
// restart, drain, cluster), --duration S, --warmup S, --records N, --generators N,
// --rate N (offered msgs/s for the fixed-rate runs), --out DIR, --no-write.
// The drain group (test/bench/drain.ts): --drain-records N (backlog, default
// 1,000,000), --drain-rate N (live msgs/s while draining, default 5000),
// --drain-seconds S (bound per row, default 120; --quick: 100,000 records,
// 20 s, default settings only), --drain-sink JSON (repeatable: replaces the default rows, see
// DEFAULT_VARIANTS in drain.ts, by sink settings of one's own, e.g.
// '{"exactlyOnce":true,"maxInFlight":8}').
// A run of the drain group alone writes <date>-<sha>-drain.json/.md and
// leaves latest.md to the full runs.
// The cluster group (test/bench/cluster.ts; needs root: network namespaces):
// --cluster-live-rate N (live msgs/s of the catch-up phase, default 5000),
// --cluster-outage S (how long a follower is down, default 150; --quick:
// 20). A run of it alone writes <date>-<sha>-cluster.json/.md. Not root: a
// run of every group leaves it out (and says so), `--only cluster` fails.
// Every phase is bounded in time; every child is killed by pid at the end and
// every temp dir removed, also after a failure or Ctrl-C.

import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { REPO_ROOT } from '../helpers/child.ts'
import { type ClusterOptions, type ClusterResult, runCluster } from './cluster.ts'
import { BenchLan } from './cluster-nodes.ts'
import { renderClusterMarkdown } from './cluster-report.ts'
import { DEFAULT_VARIANTS, type DrainResult, type DrainVariant, runDrain } from './drain.ts'
import { describeMachine, describeVersions } from './machine.ts'
import { cleanUp, withDeadline } from './procs.ts'
import {
  type BenchReport,
  buildTables,
  ceilingLine,
  type Failure,
  renderDrainMarkdown,
  renderMarkdown,
  renderSvg,
  renderText,
} from './report.ts'
import { type RestartResult, runRestart } from './restart.ts'
import { type LoadSpec, type RunResult, runScenario, type Timing } from './runner.ts'
import { distIsFresh, type SystemName, TRIBUTARY_ENTRIES, type TributaryEntry } from './systems.ts'

const GROUPS = ['ceiling', 'throughput', 'qos', 'rate', 'sdcard', 'restart', 'drain', 'cluster'] as const
type Group = (typeof GROUPS)[number]

const SYNC_DELAY_US = 10_000
const PROBE_RATE_PER_S = 20
const RATE_FRACTION = 0.8
const DEFAULT_RATE_PER_S = 20_000
const OPEN_LOOP_CAP_PER_CONNECTION = 1000
/** The drain rows of a --quick run: the two guarantees with default settings. */
const QUICK_DRAIN_ROWS: readonly string[] = ['idempotent', 'exactly-once']

const PEERS: readonly SystemName[] = ['mosquitto', 'nats', 'tributary-durable', 'tributary-relaxed']

function load(qos: 0 | 1 | 2, payloadBytes: number, connections: number, window: number): LoadSpec {
  const size = payloadBytes >= 1024 ? `${payloadBytes / 1024}k` : `${payloadBytes}b`
  return {
    label: `qos${qos}-${size}-${connections}x${window}`,
    qos,
    payloadBytes,
    connections,
    window,
    ratePerS: null,
    probeRatePerS: null,
  }
}

const Q1_128_8X16 = load(1, 128, 8, 16)
const WITH_PROBE: LoadSpec = { ...Q1_128_8X16, probeRatePerS: PROBE_RATE_PER_S }

interface Planned {
  readonly group: Group
  readonly system: SystemName
  readonly load: LoadSpec
  readonly syncDelayUs: number | null
}

function plan(group: Group, quick: boolean, offeredRatePerS: number): Planned[] {
  const closedLoads = quick
    ? [WITH_PROBE, load(1, 128, 100, 1)]
    : [WITH_PROBE, load(1, 1024, 8, 16), load(1, 128, 100, 1), load(1, 1024, 100, 1)]
  const each = (
    systems: readonly SystemName[],
    loads: readonly LoadSpec[],
    syncDelayUs: number | null = null,
  ): Planned[] => loads.flatMap((l) => systems.map((system) => ({ group, system, load: l, syncDelayUs })))
  switch (group) {
    case 'ceiling':
      return each(
        ['ack-server'],
        quick ? closedLoads : [...closedLoads, load(0, 128, 8, 16), load(2, 128, 8, 16)],
      )
    case 'throughput':
      return each(PEERS, closedLoads)
    case 'qos':
      return quick
        ? each(['tributary-durable'], [load(0, 128, 8, 16), load(2, 128, 8, 16)])
        : [
            ...each(PEERS, [load(0, 128, 8, 16)]),
            // nats-server 2.9 has no MQTT QoS 2.
            ...each(['mosquitto', 'tributary-durable', 'tributary-relaxed'], [load(2, 128, 8, 16)]),
          ]
    case 'rate': {
      const rated: LoadSpec = {
        ...Q1_128_8X16,
        window: OPEN_LOOP_CAP_PER_CONNECTION,
        ratePerS: Math.round(offeredRatePerS),
        label: Q1_128_8X16.label,
      }
      return each(quick ? ['mosquitto', 'tributary-durable'] : PEERS, [rated])
    }
    case 'sdcard':
      return each(
        quick ? ['mosquitto', 'tributary-durable'] : ['mosquitto', 'tributary-durable', 'tributary-relaxed'],
        [WITH_PROBE],
        SYNC_DELAY_US,
      )
    case 'restart':
    case 'drain':
    case 'cluster':
      return []
  }
}

function offeredRate(runs: readonly RunResult[], override: number | null): { rate: number; basis: string } {
  if (override !== null) return { rate: override, basis: `--rate ${override}` }
  const max = (system: SystemName): number | undefined =>
    runs.find((r) => r.scenario === 'throughput' && r.system === system && r.load.label === Q1_128_8X16.label)
      ?.msgsPerS
  const durable = max('tributary-durable')
  const mosquitto = max('mosquitto')
  if (durable === undefined || mosquitto === undefined) {
    return {
      rate: DEFAULT_RATE_PER_S,
      basis: `default ${DEFAULT_RATE_PER_S} msgs/s (no throughput runs to derive it from)`,
    }
  }
  const slower = Math.min(durable, mosquitto)
  const who = durable <= mosquitto ? 'tributary-durable' : 'mosquitto'
  return {
    rate: Math.round(slower * RATE_FRACTION),
    basis: `${Math.round(RATE_FRACTION * 100)}% of the slower of tributary-durable and mosquitto at ${Q1_128_8X16.label} (${who}: ${Math.round(slower).toLocaleString('en')} msgs/s)`,
  }
}

function summary(r: RunResult): string {
  const lat =
    r.latencyMs === null
      ? 'no ack (QoS 0)'
      : `p50 ${r.latencyMs.p50.toFixed(2)} p99 ${r.latencyMs.p99.toFixed(2)} ms`
  const probe = r.probe?.latencyMs ? `, probe p99 ${r.probe.latencyMs.p99.toFixed(2)} ms` : ''
  return `${Math.round(r.msgsPerS).toLocaleString('en')} msgs/s, ${lat}, anon peak ${r.memoryMB.peakAnon.toFixed(0)} MB, write ${r.writeBytesPerPayloadByte?.toFixed(2) ?? '-'} B/B, gen ELU ${r.generator.elu.map((e) => e.toFixed(2)).join('+')}${probe}`
}

/** Messages in flight per connection of the cluster group's closed-loop rows (the throughput group's 8 x 16), and the wide rows. */
const CLUSTER_WINDOW = 16
const CLUSTER_WIDE_WINDOW = 128

/** The cluster group's plan: --quick runs the 2-node rows and a 20 s outage; the full run adds 3 nodes. */
function clusterOptions(
  quick: boolean,
  timing: Timing,
  liveRate: string,
  outage: string | undefined,
): ClusterOptions {
  return {
    quick,
    // Lag and catch-up need a few hundred probe records and PUBACKs even in a quick run.
    warmupS: timing.warmupS,
    durationS: quick ? Math.max(timing.durationS, 5) : timing.durationS,
    idleS: timing.idleS,
    liveRatePerS: Number(liveRate),
    outageS: Number(outage ?? (quick ? 20 : 150)),
    catchUpMaxS: quick ? 60 : 240,
    discoveryRounds: quick ? 1 : 3,
    throughputRows: [
      { nodes: 1, ack: 'durable', window: CLUSTER_WINDOW },
      { nodes: 2, ack: 'durable', window: CLUSTER_WINDOW },
      { nodes: 2, ack: 'replicated', window: CLUSTER_WINDOW },
      ...(quick
        ? []
        : [
            { nodes: 3, ack: 'durable', window: CLUSTER_WINDOW } as const,
            { nodes: 3, ack: 'replicated', window: CLUSTER_WINDOW } as const,
            // 8x as many messages in flight: does replicated throughput follow (bound by latency, not CPU)?
            { nodes: 2, ack: 'durable', window: CLUSTER_WIDE_WINDOW } as const,
            { nodes: 2, ack: 'replicated', window: CLUSTER_WIDE_WINDOW } as const,
          ]),
    ],
    throughputRounds: quick ? 1 : 2,
    lagNodes: quick ? [2] : [2, 3],
    catchUpNodes: 3,
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      records: { type: 'string' },
      generators: { type: 'string', default: '1' },
      rate: { type: 'string' },
      out: { type: 'string' },
      'no-write': { type: 'boolean', default: false },
      tributary: { type: 'string', default: 'dist' },
      'drain-records': { type: 'string' },
      'drain-rate': { type: 'string', default: '5000' },
      'drain-seconds': { type: 'string' },
      'drain-sink': { type: 'string', multiple: true },
      'cluster-live-rate': { type: 'string', default: '5000' },
      'cluster-outage': { type: 'string' },
    },
  })
  if (values.tributary !== 'dist' && values.tributary !== 'src') throw new Error('--tributary: dist or src')
  const distFresh = distIsFresh()
  let tributaryEntry: TributaryEntry = values.tributary
  if (tributaryEntry === 'dist' && !distFresh) {
    process.stdout.write(
      'bench: WARNING dist/ is missing or older than src/ (run scripts/setup, as npm run bench does); running tributary from src/\n',
    )
    tributaryEntry = 'src'
  }
  const quick = values.quick === true
  const only = values.only === undefined ? [...GROUPS] : values.only.split(',').map((g) => g.trim())
  for (const g of only) {
    if (!(GROUPS as readonly string[]).includes(g))
      throw new Error(`--only: unknown group "${g}" (${GROUPS.join(', ')})`)
  }
  const groups = GROUPS.filter((g) => only.includes(g))
  const timing: Timing = {
    warmupS: Number(values.warmup ?? (quick ? 1 : 3)),
    durationS: Number(values.duration ?? (quick ? 2 : 15)),
    idleS: quick ? 1 : 3,
    generators: Number(values.generators),
    tributaryEntry,
  }
  const records = Number(values.records ?? (quick ? 200_000 : 10_000_000))
  const rateOverride = values.rate === undefined ? null : Number(values.rate)
  const outDir =
    values['no-write'] === true
      ? null
      : (values.out ?? (quick ? null : join(REPO_ROOT, 'docs', 'benchmarks')))
  const started = performance.now()

  process.stdout.write('bench: describing the machine\n')
  const machine = describeMachine()
  const versions = describeVersions()
  process.stdout.write(
    `bench: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.kernel}; fdatasync ${machine.fdatasyncMs.median.toFixed(2)} ms; node ${versions.node}, tributary ${versions.tributary}${versions.tributaryDirty ? '+dirty' : ''}, mosquitto ${versions.mosquitto}, nats-server ${versions.natsServer}\n`,
  )

  const runs: RunResult[] = []
  const failures: Failure[] = []
  let restart: RestartResult | null = null
  let drain: DrainResult | null = null
  let cluster: ClusterResult | null = null
  let rate: { rate: number; basis: string } | null = null
  for (const group of groups) {
    if (group === 'restart') {
      process.stdout.write(`bench: restart and read (${records.toLocaleString('en')} records)\n`)
      try {
        restart = await withDeadline(
          runRestart(
            {
              records,
              rounds: 3,
              fillMaxSeconds: quick ? 60 : 900,
              readMaxSeconds: quick ? 10 : 60,
              withDist: distFresh,
            },
            (line) => process.stdout.write(`${line}\n`),
          ),
          (quick ? 300 : 1800) * 1000,
          'restart benchmark',
        )
      } catch (err) {
        failures.push({ scenario: 'restart', system: 'tributary-durable', load: '-', error: errorText(err) })
        process.stdout.write(`  FAILED: ${errorText(err)}\n`)
      }
      continue
    }
    if (group === 'drain') {
      const variants: DrainVariant[] =
        values['drain-sink'] === undefined
          ? DEFAULT_VARIANTS.filter((v) => !quick || QUICK_DRAIN_ROWS.includes(v.label))
          : values['drain-sink'].map((json) => ({
              label: json.replace(/[{}"\s]/g, '') || 'defaults',
              sink: JSON.parse(json) as Record<string, unknown>,
            }))
      const drainRecords = Number(values['drain-records'] ?? (quick ? 100_000 : 1_000_000))
      const drainSeconds = Number(values['drain-seconds'] ?? (quick ? 20 : 120))
      process.stdout.write(
        `bench: backlog drain (${drainRecords.toLocaleString('en')} records, live ${values['drain-rate']} msgs/s, ${variants.map((v) => v.label).join(' / ')})\n`,
      )
      try {
        drain = await runDrain(
          {
            records: drainRecords,
            partitions: 4,
            liveRatePerS: Number(values['drain-rate']),
            maxSeconds: drainSeconds,
            fillMaxSeconds: quick ? 60 : 300,
            variants,
            tributaryEntry,
          },
          (line) => process.stdout.write(`${line}\n`),
        )
        for (const f of drain.failures)
          failures.push({ scenario: 'drain', system: 'tributary-durable', load: f.variant, error: f.error })
      } catch (err) {
        failures.push({ scenario: 'drain', system: 'tributary-durable', load: '-', error: errorText(err) })
        process.stdout.write(`  FAILED: ${errorText(err)}\n`)
      }
      continue
    }
    if (group === 'cluster') {
      if (process.getuid?.() !== 0) {
        const why = 'the cluster group needs root (it makes network namespaces)'
        if (values.only === undefined) process.stdout.write(`bench: ${why}; left out\n`)
        else failures.push({ scenario: 'cluster', system: 'tributary-cluster', load: '-', error: why })
        continue
      }
      const options = clusterOptions(quick, timing, values['cluster-live-rate'], values['cluster-outage'])
      process.stdout.write(
        `bench: cluster (network namespaces; ${options.throughputRows.length} throughput rows, lag at ${options.lagNodes.join(', ')} nodes, ${options.outageS} s outage at ${options.liveRatePerS} msgs/s)\n`,
      )
      try {
        const lan = await BenchLan.create(3, TRIBUTARY_ENTRIES[tributaryEntry])
        try {
          cluster = await withDeadline(
            runCluster(lan, options, (line) => process.stdout.write(`${line}\n`)),
            (quick ? 600 : 1500) * 1000,
            'cluster benchmark',
          )
        } finally {
          await lan.close()
        }
        for (const f of cluster.failures)
          failures.push({ scenario: 'cluster', system: 'tributary-cluster', load: f.phase, error: f.error })
      } catch (err) {
        failures.push({ scenario: 'cluster', system: 'tributary-cluster', load: '-', error: errorText(err) })
        process.stdout.write(`  FAILED: ${errorText(err)}\n`)
      }
      continue
    }
    if (group === 'rate') rate = offeredRate(runs, rateOverride)
    const planned = plan(group, quick, rate?.rate ?? DEFAULT_RATE_PER_S)
    for (const [i, p] of planned.entries()) {
      const label = `${group} ${p.load.label}${p.load.ratePerS === null ? '' : ` @${p.load.ratePerS}/s`} ${p.system}${p.syncDelayUs === null ? '' : ' (slow sync)'}`
      process.stdout.write(`bench: [${i + 1}/${planned.length}] ${label} ... `)
      try {
        const result = await runScenario(group, p.system, p.load, timing, p.syncDelayUs)
        runs.push(result)
        process.stdout.write(`${summary(result)}\n`)
      } catch (err) {
        failures.push({ scenario: group, system: p.system, load: p.load.label, error: errorText(err) })
        process.stdout.write(`FAILED: ${errorText(err)}\n`)
      }
    }
  }

  const systems: Record<string, string> = {}
  for (const r of runs) systems[r.system] ??= r.description
  const report: BenchReport = {
    date: new Date().toISOString(),
    quick,
    settings: {
      ...timing,
      records,
      syncDelayMs: SYNC_DELAY_US / 1000,
      offeredRatePerS: rate?.rate ?? null,
      offeredRateBasis: rate?.basis ?? null,
    },
    machine,
    versions,
    systems,
    runs,
    restart,
    drain,
    cluster,
    failures,
    elapsedS: (performance.now() - started) / 1000,
  }
  const tables = buildTables(report)
  process.stdout.write(renderText(tables))
  process.stdout.write(`${ceilingLine(report).join('\n')}\n`)
  if (outDir !== null) {
    mkdirSync(outDir, { recursive: true })
    const drainOnly = groups.length === 1 && groups[0] === 'drain'
    const clusterOnly = groups.length === 1 && groups[0] === 'cluster'
    const base = `${report.date.slice(0, 10)}-${versions.tributary}${quick ? '-quick' : ''}${drainOnly ? '-drain' : ''}${clusterOnly ? '-cluster' : ''}`
    const jsonFile = `${base}.json`
    writeFileSync(join(outDir, jsonFile), `${JSON.stringify(report, null, 2)}\n`)
    if (clusterOnly) {
      writeFileSync(join(outDir, `${base}.md`), renderClusterMarkdown(report, jsonFile))
      process.stdout.write(`bench: wrote ${join(outDir, jsonFile)}, ${base}.md\n`)
    } else if (drainOnly) {
      // A partial run: its own Markdown file, latest.md stays the last full run's.
      writeFileSync(join(outDir, `${base}.md`), renderDrainMarkdown(report, tables, jsonFile))
      process.stdout.write(`bench: wrote ${join(outDir, jsonFile)}, ${base}.md\n`)
    } else {
      writeFileSync(join(outDir, 'latest.md'), renderMarkdown(report, tables, jsonFile))
      writeFileSync(join(outDir, 'latest.svg'), renderSvg(report))
      process.stdout.write(`bench: wrote ${join(outDir, jsonFile)}, latest.md, latest.svg\n`)
    }
  } else {
    process.stdout.write('bench: no files written (quick run without --out, or --no-write)\n')
  }
  process.stdout.write(`bench: done in ${Math.round(report.elapsedS)} s, ${failures.length} failed run(s)\n`)
  if (failures.length > 0) process.exitCode = 1
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    process.stdout.write(`\nbench: ${sig}, stopping every child process\n`)
    cleanUp()
    process.exit(130)
  })
}

try {
  await main()
} finally {
  cleanUp()
}
