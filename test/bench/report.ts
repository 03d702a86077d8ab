// Turns a benchmark run into what people read: tables (printed aligned on
// stdout, and as Markdown in docs/benchmarks/latest.md), the ratios and the
// issue's targets, and a hand-built SVG bar chart of throughput.

import type { ClusterResult } from './cluster.ts'
import { clusterTables } from './cluster-report.ts'
import type { DrainResult } from './drain.ts'
import type { Machine, Versions } from './machine.ts'
import type { RestartResult } from './restart.ts'
import type { RunResult } from './runner.ts'
import type { SystemName } from './systems.ts'

export interface Failure {
  readonly scenario: string
  readonly system: string
  readonly load: string
  readonly error: string
}

export interface BenchReport {
  readonly date: string
  readonly quick: boolean
  readonly settings: {
    readonly warmupS: number
    readonly durationS: number
    readonly idleS: number
    readonly generators: number
    readonly tributaryEntry: string
    readonly records: number
    readonly syncDelayMs: number
    readonly offeredRatePerS: number | null
    readonly offeredRateBasis: string | null
  }
  readonly machine: Machine
  readonly versions: Versions
  readonly systems: Record<string, string>
  readonly runs: RunResult[]
  readonly restart: RestartResult | null
  /** Absent in reports written before the drain group existed. */
  readonly drain?: DrainResult | null
  /** Absent in reports written before the cluster group existed. */
  readonly cluster?: ClusterResult | null
  readonly failures: Failure[]
  readonly elapsedS: number
}

export interface Table {
  readonly title: string
  readonly headers: readonly string[]
  readonly rows: readonly (readonly string[])[]
  readonly notes?: readonly string[]
}

export const DASH = '-'

export function int(n: number | null | undefined): string {
  return n === null || n === undefined || !Number.isFinite(n) ? DASH : Math.round(n).toLocaleString('en')
}

export function num(n: number | null | undefined, digits = 1): string {
  return n === null || n === undefined || !Number.isFinite(n) ? DASH : n.toFixed(digits)
}

export function ms(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return DASH
  return n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0)
}

function ratio(a: number | null | undefined, b: number | null | undefined): string {
  if (a === null || a === undefined || b === null || b === undefined || b === 0) return DASH
  return `${(a / b).toFixed(2)}x`
}

function find(
  runs: readonly RunResult[],
  scenario: string,
  system: SystemName,
  load: string,
): RunResult | undefined {
  return runs.find((r) => r.scenario === scenario && r.system === system && r.load.label === load)
}

const GENERATOR_BOUND_ELU = 0.9
const CLOSED_LOOP = new Set(['ceiling', 'throughput', 'qos'])

function throughputTable(runs: readonly RunResult[]): Table {
  const rows = runs
    .filter((r) => CLOSED_LOOP.has(r.scenario))
    .map((r) => [
      r.load.label,
      r.system,
      `${int(r.msgsPerS)}${Math.max(...r.generator.elu) >= GENERATOR_BOUND_ELU ? '*' : ''}`,
      num(r.payloadMBPerS, 2),
      ms(r.latencyMs?.p50),
      ms(r.latencyMs?.p90),
      ms(r.latencyMs?.p99),
      ms(r.latencyMs?.p999),
      ms(r.latencyMs?.max),
      int(r.slowestSecond?.msgs),
      num(r.cpuUsPerMsg, 1),
      num(r.cpuCores, 2),
      num(r.writeBytesPerPayloadByte, 2),
      r.generator.elu.map((e) => e.toFixed(2)).join('+'),
    ])
  return {
    title: 'Throughput and ack latency (closed loop)',
    headers: [
      'load',
      'system',
      'msgs/s',
      'MB/s',
      'p50 ms',
      'p90 ms',
      'p99 ms',
      'p99.9 ms',
      'max ms',
      'slowest 1 s',
      'CPU µs/msg',
      'cores',
      'write B/B',
      'gen ELU',
    ],
    rows,
    notes: [
      'load: qos, payload, connections x messages in flight per connection. Latency: write of the PUBLISH -> PUBACK (QoS 1) or PUBREC (QoS 2); QoS 0 has no ack (PINGREQ flow control, throughput only).',
      `*: the load generator’s event loop was busy ${GENERATOR_BOUND_ELU * 100}% of the time or more: the figure is a lower bound of what that system can take, set by the generator on this machine (compare the ack-server ceiling).`,
      'Mosquitto and nats-server wrote nothing to disk during these runs (write B/B 0.00): neither fsyncs per message, and with no subscriber neither keeps a QoS 1 message; tributary writes every message to its log.',
      'MB/s: payload bytes acknowledged (10^6 B). slowest 1 s: acks in the slowest whole second of the window. CPU µs/msg and cores: the broker process (all threads). write B/B: /proc/<pid>/io write_bytes per payload byte acknowledged. gen ELU: the load generator’s event-loop utilisation (near 1.0: the generator, not the broker, is the limit).',
    ],
  }
}

function memoryTable(runs: readonly RunResult[]): Table {
  return {
    title: 'Memory (MB, 2^20 B)',
    headers: ['scenario', 'load', 'system', 'RSS idle', 'RSS peak', 'anon idle', 'anon peak'],
    rows: runs.map((r) => [
      r.scenario,
      r.load.label,
      r.system,
      num(r.memoryMB.idleRss),
      num(r.memoryMB.peakRss),
      num(r.memoryMB.idleAnon),
      num(r.memoryMB.peakAnon),
    ]),
    notes: [
      'idle: a few seconds after start, before any load. peak: highest reading (every 200 ms) during the run. anon: RssAnon (LMDB’s map is file-backed and counts in RSS only).',
    ],
  }
}

function ratioTable(runs: readonly RunResult[]): Table {
  const loads = [
    ...new Set(
      runs
        .filter((r) => r.scenario === 'throughput' || r.scenario === 'qos')
        .map((r) => `${r.scenario}|${r.load.label}`),
    ),
  ]
  const rows = loads.map((key) => {
    const [scenario = '', load = ''] = key.split('|')
    const durable = find(runs, scenario, 'tributary-durable', load)
    const relaxed = find(runs, scenario, 'tributary-relaxed', load)
    const mosquitto = find(runs, scenario, 'mosquitto', load)
    const nats = find(runs, scenario, 'nats', load)
    return [
      load,
      ratio(durable?.msgsPerS, mosquitto?.msgsPerS),
      ratio(durable?.msgsPerS, nats?.msgsPerS),
      ratio(durable?.msgsPerS, relaxed?.msgsPerS),
      ratio(durable?.latencyMs?.p99, mosquitto?.latencyMs?.p99),
      ratio(durable?.cpuUsPerMsg, mosquitto?.cpuUsPerMsg),
    ]
  })
  return {
    title: 'Ratios (throughput; closed loop)',
    headers: [
      'load',
      'durable / mosquitto',
      'durable / nats',
      'durable / relaxed',
      'p99 durable / mosquitto',
      'CPU/msg durable / mosquitto',
    ],
    rows,
    notes: [
      'Closed-loop p99 compares different throughputs; the fixed-rate table below compares p99 at the same offered load.',
    ],
  }
}

function rateTable(runs: readonly RunResult[], report: BenchReport): Table {
  const rateRuns = runs.filter((r) => r.scenario === 'rate')
  const mosquittoP99 = rateRuns.find((r) => r.system === 'mosquitto')?.latencyMs?.p99
  return {
    title: `Ack latency at a fixed offered rate (open loop, ${int(report.settings.offeredRatePerS)} msgs/s)`,
    headers: [
      'load',
      'system',
      'offered/s',
      'acked/s',
      'p50 ms',
      'p90 ms',
      'p99 ms',
      'p99.9 ms',
      'max ms',
      'p99 / mosquitto',
      'deferred',
      'send lag p99 ms',
    ],
    rows: rateRuns.map((r) => [
      r.load.label,
      r.system,
      int(r.load.ratePerS),
      int(r.msgsPerS),
      ms(r.latencyMs?.p50),
      ms(r.latencyMs?.p90),
      ms(r.latencyMs?.p99),
      ms(r.latencyMs?.p999),
      ms(r.latencyMs?.max),
      ratio(r.latencyMs?.p99, mosquittoP99),
      int(r.generator.deferred),
      ms(r.generator.sendLagP99Ms),
    ]),
    notes: [
      `Offered rate: ${report.settings.offeredRateBasis ?? 'n/a'}. Messages are written on a fixed schedule spread over the connections; a connection already holding its cap of unacknowledged messages skips its turn (deferred). send lag: how late the generator wrote against the schedule.`,
    ],
  }
}

function sdCardTable(runs: readonly RunResult[], report: BenchReport): Table {
  const slow = runs.filter((r) => r.scenario === 'sdcard')
  const rows = slow.map((s) => {
    const plain = find(runs, 'throughput', s.system, s.load.label)
    return [
      s.load.label,
      s.system,
      int(plain?.msgsPerS),
      int(s.msgsPerS),
      ratio(s.msgsPerS, plain?.msgsPerS),
      ms(plain?.latencyMs?.p99),
      ms(s.latencyMs?.p99),
      ms(s.latencyMs?.max),
      num(s.syncsPerS, 0),
      num(s.writeBytesPerPayloadByte, 2),
      `${ms(plain?.probe?.latencyMs?.p50)} / ${ms(plain?.probe?.latencyMs?.p99)} / ${ms(plain?.probe?.latencyMs?.max)}`,
      `${ms(s.probe?.latencyMs?.p50)} / ${ms(s.probe?.latencyMs?.p99)} / ${ms(s.probe?.latencyMs?.max)}`,
      s.probe === null ? DASH : `${s.probe.received}/${s.probe.sent}`,
      s.health == null
        ? DASH
        : `${ms(s.health.latencyMs?.p50)} / ${ms(s.health.latencyMs?.p99)} / ${ms(s.health.latencyMs?.max)} (${s.health.ok}/${s.health.sent})`,
    ]
  })
  return {
    title: `SD-card conditions: every sync syscall delayed ${report.settings.syncDelayMs} ms (strace inject)`,
    headers: [
      'load',
      'system',
      'msgs/s plain',
      'msgs/s slow sync',
      'slow / plain',
      'p99 plain',
      'p99 slow',
      'max slow',
      'syncs/s',
      'write B/B',
      'QoS 0 probe plain p50/p99/max ms',
      'QoS 0 probe slow p50/p99/max ms',
      'probe recv/sent',
      '/healthz slow p50/p99/max ms (ok/sent)',
    ],
    rows,
    notes: [
      'The broker runs under `strace -f --seccomp-bpf -e trace=fsync,fdatasync,msync,sync_file_range -e inject=...:delay_exit=10000`; figures are the broker’s (strace’s child), not strace’s. Probe: a separate process publishes QoS 0 on probe/latency 20 times a second and a separate subscriber connection times publish -> delivery. /healthz: the bench process GETs tributary’s admin API (on for these runs only, on a loopback port) 20 times a second over one keep-alive connection during the measured window, timed from when each request was due; a 200 counts as ok.',
    ],
  }
}

function restartTables(restart: RestartResult): Table[] {
  const timings = restart.restarts.map((r) => [
    r.entry,
    String(r.round),
    ms(r.spawnToConnackMs),
    ms(r.spawnToLogMs),
  ])
  return [
    {
      title: `Restart after kill -9 with ${int(restart.records)} records stored (${num(restart.storeFileBytes / 2 ** 30, 2)} GiB: log.mdb and segments)`,
      headers: ['entry', 'round', 'spawn -> first CONNACK ms', 'spawn -> "accepting" log line ms'],
      rows: timings,
      notes: [
        `Median spawn -> CONNACK: src ${ms(restart.medianMs.src)} ms, dist ${ms(restart.medianMs.dist)} ms. src: node src/cli/main.ts (type stripping, as the rest of this benchmark runs tributary); dist: node dist/cli/main.js (what bin/tributary runs). Each start follows a kill -9 under an 8 x 16 QoS 1 load.`,
        `Store filled by ${restart.fill.method}: ${int(restart.fill.records)} records in ${num(restart.fill.seconds)} s (${int(restart.fill.recordsPerS)} records/s).`,
      ],
    },
    {
      title: 'Read throughput from the start of the big partition',
      headers: [
        'reader',
        'records',
        'seconds',
        'records/s',
        'whole partition',
        'reader peak RSS MB',
        'ended',
      ],
      rows: [
        [
          'SegmentLogStore.read (in-process, 1000 per call)',
          int(restart.readInProcess.records),
          num(restart.readInProcess.seconds, 2),
          int(restart.readInProcess.recordsPerS),
          restart.readInProcess.complete ? 'yes' : 'no (time bound)',
          DASH,
          'exit 0',
        ],
        [
          'tributary tail default --from-beginning --json --partition 0',
          int(restart.readTail.records),
          num(restart.readTail.seconds, 2),
          int(restart.readTail.recordsPerS),
          restart.readTail.complete ? 'yes' : 'no',
          num(restart.readTail.peakRssMB, 0),
          `${restart.readTail.exit}${restart.readTail.error === null ? '' : `: ${restart.readTail.error}`}`,
        ],
      ],
      notes: [
        'Page cache warm (the store was just written). tail’s stdout is a pipe read by the benchmark as fast as it comes; each reader is bounded in time.',
      ],
    },
  ]
}

interface Target {
  readonly what: string
  readonly goal: string
  readonly value: string
  readonly met: boolean | null
}

/** The drain/ingest ratio the issue asks for. */
const DRAIN_TARGET_RATIO = 3

function drainTables(drain: DrainResult): Table[] {
  const rows = drain.runs.map((r) => [
    r.variant,
    Object.entries(r.sink)
      .filter(([k]) => !['name', 'type', 'brokers', 'streams'].includes(k))
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(' ') || 'defaults',
    r.backlogRecords === 0
      ? 'no backlog'
      : r.loadToBacklogInKafkaS === null
        ? `> ${drain.maxSeconds}`
        : num(r.loadToBacklogInKafkaS),
    r.backlogRecords === 0 ? DASH : r.drained ? num(r.loadToDrainedS) : `> ${drain.maxSeconds}`,
    int(r.forwardedPerS),
    int(r.peakForwardedPerS),
    int(r.live.ackedPerS),
    ms(r.live.latencyMs?.p50),
    ms(r.live.latencyMs?.p99),
    r.ratio === null ? DASH : `${r.ratio.toFixed(2)}x`,
    num(r.tributary.cpuCores, 2),
    num(r.kafkaCpuCores, 2),
    num(r.otherCpuCores, 2),
    num(r.tributary.peakRssMB, 0),
    num(r.tributary.peakAnonMB, 0),
  ])
  const lag = drain.runs.map(
    (r) =>
      `${r.variant}: lag after the drain ${r.lagAtEnd.map((l) => int(l.lagRecords)).join(' / ')} records per partition; ${int(r.kafkaRecordsAtLoadStart)} records forwarded before the live load started (${num(r.spawnToAcceptingS, 2)} s from spawn to accepting MQTT); offered ${int(r.live.offeredPerS)} msgs/s, deferred ${int(r.live.deferred)}, send lag p99 ${ms(r.live.sendLagP99Ms)} ms, PUBACK p999 ${ms(r.live.latencyMs?.p999)} ms max ${ms(r.live.latencyMs?.max)} ms; load generator ${num(r.generatorCpuCores, 2)} cores.`,
  )
  return [
    {
      title: `Backlog drain to Kafka ${drain.kafka}: ${int(drain.records)} records of ${drain.payloadBytes} B in ${drain.partitions} partitions, live QoS 1 load offered at ${int(drain.liveRatePerS)} msgs/s`,
      headers: [
        'sink',
        'settings',
        'backlog in Kafka s',
        'drained in s',
        'forwarded rec/s',
        'peak rec/s',
        'live msgs/s',
        'PUBACK p50 ms',
        'p99 ms',
        'forwarded / live',
        'tributary cores',
        'Kafka cores',
        'other cores',
        'RSS peak MB',
        'anon peak MB',
      ],
      rows,
      notes: [
        `"backlog in Kafka": seconds from the start of the live load until every Kafka partition holds the records stored in it before tributary started. "drained in": until Kafka holds the backlog and every live publish acknowledged by then but at most 1 s of live ingest, i.e. tributary has caught up (live records published meanwhile queue behind the backlog). Kafka end offsets read each second; read_committed and less the commit markers for exactly-once. "forwarded rec/s": records arriving in Kafka per second from the start of the live load until drained (or the bound), backlog and live records together. Target: forwarded >= ${DRAIN_TARGET_RATIO}x the live rate. Backlog filled through the store code (test/bench/fill-store.ts), so it is in the page cache; a fresh single-node Kafka (KRaft, the test helper's small JVM: -Xmx384m, serial GC, C1 only) per row; tributary, Kafka and the load generator share the machine; "other cores": the machine's busy CPU (/proc/stat) less those three, i.e. other work running at the same time (contention; it includes the bench process polling Kafka each second, a few hundredths of a core).`,
        ...lag,
      ],
    },
  ]
}

function targets(report: BenchReport): Table {
  const runs = report.runs
  const load = 'qos1-128b-8x16'
  const durable = find(runs, 'throughput', 'tributary-durable', load)
  const relaxed = find(runs, 'throughput', 'tributary-relaxed', load)
  const mosquitto = find(runs, 'throughput', 'mosquitto', load)
  const nats = find(runs, 'throughput', 'nats', load)
  const rateDurable = find(runs, 'rate', 'tributary-durable', load)
  const rateMosquitto = find(runs, 'rate', 'mosquitto', load)
  const check = (
    a: number | null | undefined,
    b: number | null | undefined,
    pass: (x: number) => boolean,
    digits = 2,
  ): Pick<Target, 'value' | 'met'> => {
    if (a === null || a === undefined || b === null || b === undefined || b === 0)
      return { value: DASH, met: null }
    const x = a / b
    return { value: `${x.toFixed(digits)}x`, met: pass(x) }
  }
  const abs = (v: number | null | undefined, limit: number, unit: string): Pick<Target, 'value' | 'met'> =>
    v === null || v === undefined || !Number.isFinite(v)
      ? { value: DASH, met: null }
      : { value: `${v.toFixed(2)} ${unit}`, met: v <= limit }
  const restartMs = report.restart?.medianMs.dist ?? report.restart?.medianMs.src ?? null
  const drainRuns = report.drain?.runs ?? []
  const drainRows: Target[] = drainRuns
    .filter((r) => r.backlogRecords > 0)
    .map((r) => ({
      what: `backlog drain to Kafka (${r.variant}): records/s forwarded vs live ingest`,
      goal: `>= ${DRAIN_TARGET_RATIO}x`,
      value: r.ratio === null ? DASH : `${r.ratio.toFixed(2)}x`,
      met: r.ratio === null ? null : r.ratio >= DRAIN_TARGET_RATIO,
    }))
  const list: Target[] = [
    {
      what: 'durable msgs/s vs Mosquitto',
      goal: '>= 1.5x',
      ...check(durable?.msgsPerS, mosquitto?.msgsPerS, (x) => x >= 1.5),
    },
    {
      what: 'durable msgs/s vs NATS',
      goal: '>= 1.0x',
      ...check(durable?.msgsPerS, nats?.msgsPerS, (x) => x >= 1.0),
    },
    {
      what: 'durable vs relaxed msgs/s',
      goal: '>= 0.85x',
      ...check(durable?.msgsPerS, relaxed?.msgsPerS, (x) => x >= 0.85),
    },
    {
      what: 'p99 ack latency vs Mosquitto at the same offered rate',
      goal: '<= 1.0x',
      ...check(rateDurable?.latencyMs?.p99, rateMosquitto?.latencyMs?.p99, (x) => x <= 1.0),
    },
    {
      what: 'disk bytes written per payload byte (durable)',
      goal: '<= 2.0',
      ...abs(durable?.writeBytesPerPayloadByte, 2.0, 'B/B'),
    },
    { what: 'RSS idle (durable)', goal: '<= 60 MB', ...abs(durable?.memoryMB.idleRss, 60, 'MB') },
    {
      what: 'anonymous memory peak under load (durable)',
      goal: '<= 80 MB',
      ...abs(durable?.memoryMB.peakAnon, 80, 'MB'),
    },
    {
      what: `restart after kill -9 with ${int(report.restart?.records)} records (median spawn -> CONNACK, ${report.restart?.medianMs.dist !== null ? 'dist' : 'src'})`,
      goal: '<= 1000 ms',
      ...abs(restartMs, 1000, 'ms'),
    },
    ...drainRows,
  ]
  return {
    title: `Issue 4${drainRows.length > 0 ? ' and 5' : ''} targets (128 B, QoS 1, 8 x 16)`,
    headers: ['target', 'goal', 'this run', 'met'],
    rows: list.map((t) => [t.what, t.goal, t.value, t.met === null ? 'n/a' : t.met ? 'yes' : 'NO']),
  }
}

export function buildTables(report: BenchReport): Table[] {
  const tables: Table[] = []
  const runs = report.runs
  if (runs.some((r) => CLOSED_LOOP.has(r.scenario))) tables.push(throughputTable(runs), ratioTable(runs))
  if (runs.some((r) => r.scenario === 'rate')) tables.push(rateTable(runs, report))
  if (runs.some((r) => r.scenario === 'sdcard')) tables.push(sdCardTable(runs, report))
  if (runs.length > 0) tables.push(memoryTable(runs))
  if (report.restart !== null) tables.push(...restartTables(report.restart))
  if (report.drain != null) tables.push(...drainTables(report.drain))
  if (report.cluster != null) tables.push(...clusterTables(report.cluster))
  if (report.runs.length > 0 || report.restart !== null || report.drain != null) tables.push(targets(report))
  const problems = runs.filter((r) => r.problems.length > 0 || r.generator.errors.length > 0)
  if (problems.length > 0 || report.failures.length > 0) {
    tables.push({
      title: 'Errors and warnings',
      headers: ['scenario', 'load', 'system', 'what'],
      rows: [
        ...report.failures.map((f) => [f.scenario, f.load, f.system, `run failed: ${f.error}`]),
        ...problems.flatMap((r) => [
          ...r.problems.slice(0, 5).map((p) => [r.scenario, r.load.label, r.system, `log: ${p}`]),
          ...r.generator.errors
            .slice(0, 5)
            .map((e) => [r.scenario, r.load.label, r.system, `generator: ${e}`]),
        ]),
      ],
    })
  }
  return tables
}

export function renderText(tables: readonly Table[]): string {
  const out: string[] = []
  for (const table of tables) {
    const widths = table.headers.map((h, i) =>
      Math.max(h.length, ...table.rows.map((r) => (r[i] ?? '').length)),
    )
    const line = (cells: readonly string[]): string =>
      cells
        .map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
        .join('  ')
        .trimEnd()
    out.push('', table.title, '='.repeat(table.title.length), line(table.headers))
    out.push(widths.map((w) => '-'.repeat(w)).join('  '))
    for (const row of table.rows) out.push(line(row))
  }
  return `${out.join('\n')}\n`
}

function mdCell(text: string): string {
  return text.replace(/\|/g, '\\|')
}

/** The generator's own limit, measured against the ack-only server. */
export function ceilingLine(report: BenchReport): string[] {
  const ceiling = report.runs.filter((r) => r.system === 'ack-server')
  if (ceiling.length === 0) return []
  const parts = ceiling.map(
    (r) =>
      `${r.load.label} ${int(r.msgsPerS)} msgs/s at ELU ${r.generator.elu.map((e) => e.toFixed(2)).join('+')}`,
  )
  return ['', `Load generator ceiling (ack-only server): ${parts.join('; ')}.`]
}

/** Machine and versions, as Markdown tables. */
export function machineLines(report: BenchReport): string[] {
  const m = report.machine
  const v = report.versions
  return [
    '| machine | |',
    '|---|---|',
    `| CPU | ${m.cpu}, ${m.cores} cores |`,
    `| memory | ${m.memoryGiB} GiB |`,
    `| kernel | ${m.kernel} |`,
    `| disk (temp dirs) | ${mdCell(m.disk)}; 4 KiB write + fdatasync: median ${ms(m.fdatasyncMs.median)} ms, p99 ${ms(m.fdatasyncMs.p99)} ms |`,
    '',
    '| version | |',
    '|---|---|',
    `| node | ${v.node} |`,
    `| tributary | ${v.tributary}${v.tributaryDirty ? ' (with uncommitted changes in src/)' : ''}, aedes ${v.aedes}, lmdb ${v.lmdb} |`,
    `| mosquitto | ${v.mosquitto} |`,
    `| nats-server | ${v.natsServer} |`,
    `| strace | ${v.strace} |`,
  ]
}

export function tableLines(tables: readonly Table[]): string[] {
  const lines: string[] = []
  for (const table of tables) {
    lines.push('', `## ${table.title}`, '')
    lines.push(`| ${table.headers.map(mdCell).join(' | ')} |`)
    lines.push(`|${table.headers.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`)
    for (const row of table.rows) lines.push(`| ${row.map(mdCell).join(' | ')} |`)
    for (const note of table.notes ?? []) lines.push('', note)
  }
  return lines
}

export function renderMarkdown(report: BenchReport, tables: readonly Table[], jsonFile: string): string {
  const lines: string[] = [
    `# tributary benchmark${report.quick ? ' (quick run)' : ''}`,
    '',
    `Run by \`npm run bench\` on ${report.date} (${Math.round(report.elapsedS / 60)} min); raw figures in [${jsonFile}](${jsonFile}), chart in [latest.svg](latest.svg). Only 127.0.0.1 was used.`,
    '',
    '![throughput per system and load](latest.svg)',
    '',
    ...machineLines(report),
    '',
    `Settings: warm-up ${report.settings.warmupS} s, measured ${report.settings.durationS} s per run, idle reading ${report.settings.idleS} s after start, ${report.settings.generators} load generator process(es), each system on a fresh temp data dir; tributary run from ${report.settings.tributaryEntry}/.`,
    ...ceilingLine(report),
    '',
    '| system | configured as |',
    '|---|---|',
    ...Object.entries(report.systems).map(([name, what]) => `| ${name} | ${mdCell(what)} |`),
    ...tableLines(tables),
  ]
  return `${lines.join('\n')}\n`
}

/** A run of the drain group alone (`--only drain`): its own file next to latest.md. */
export function renderDrainMarkdown(report: BenchReport, tables: readonly Table[], jsonFile: string): string {
  const drainTitles = new Set(report.drain == null ? [] : drainTables(report.drain).map((t) => t.title))
  const own = tables
    .filter(
      (t) => drainTitles.has(t.title) || t.title === 'Errors and warnings' || t.title.startsWith('Issue'),
    )
    // The other groups' targets have no figures in a drain-only run.
    .map((t) =>
      t.title.startsWith('Issue')
        ? { ...t, title: 'Issue 5 target', rows: t.rows.filter((r) => r[0]?.startsWith('backlog drain')) }
        : t,
    )
  const lines: string[] = [
    `# tributary benchmark: backlog drain${report.quick ? ' (quick run)' : ''}`,
    '',
    `Run by \`npm run bench -- --only drain\` on ${report.date} (${Math.round(report.elapsedS / 60)} min); raw figures, with the per-second series, in [${jsonFile}](${jsonFile}). Only 127.0.0.1 was used. The other groups' latest full run: [latest.md](latest.md).`,
    '',
    ...machineLines(report),
    '',
    `tributary run from ${report.settings.tributaryEntry}/; sink settings not listed are the defaults of docs/configuration.md.`,
    ...tableLines(own),
  ]
  return `${lines.join('\n')}\n`
}

const SYSTEM_COLOURS: Record<SystemName, string> = {
  'ack-server': '#bbbbbb',
  mosquitto: '#3c78b4',
  nats: '#2aa198',
  'tributary-durable': '#d9534f',
  'tributary-relaxed': '#f0ad4e',
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

/** Horizontal grouped bars: one group per load, one bar per system (closed-loop throughput). */
export function renderSvg(report: BenchReport): string {
  const runs = report.runs.filter((r) => r.scenario === 'throughput' || r.scenario === 'sdcard')
  const groups: Array<{ label: string; bars: RunResult[] }> = []
  for (const r of runs) {
    const label =
      r.scenario === 'sdcard' ? `${r.load.label}, ${report.settings.syncDelayMs} ms sync` : r.load.label
    let group = groups.find((g) => g.label === label)
    if (group === undefined) {
      group = { label, bars: [] }
      groups.push(group)
    }
    group.bars.push(r)
  }
  const width = 860
  const left = 150
  const right = 140
  const barH = 16
  const gap = 4
  const groupGap = 22
  const top = 50
  const max = Math.max(1, ...runs.map((r) => r.msgsPerS))
  const scale = (width - left - right) / max
  const parts: string[] = []
  let y = top
  for (const group of groups) {
    parts.push(`<text x="10" y="${y + 12}" font-weight="bold">${escapeXml(group.label)}</text>`)
    y += 18
    for (const bar of group.bars) {
      const w = Math.max(1, bar.msgsPerS * scale)
      parts.push(
        `<text x="${left - 6}" y="${y + barH - 4}" text-anchor="end">${escapeXml(bar.system)}</text>`,
        `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${SYSTEM_COLOURS[bar.system]}"/>`,
        `<text x="${(left + w + 6).toFixed(1)}" y="${y + barH - 4}">${int(bar.msgsPerS)} msgs/s</text>`,
      )
      y += barH + gap
    }
    y += groupGap
  }
  const height = y + 10
  const title = `Acknowledged QoS 1 msgs/s (closed loop), ${report.date.slice(0, 10)}, ${report.versions.tributary}`
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="24" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n')
}
