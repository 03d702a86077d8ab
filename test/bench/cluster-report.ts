// The cluster group's tables (test/bench/cluster.ts) and issue 12's bench
// targets, for the text output and the Markdown file of a cluster run.

import type { ClusterResult, NodeFigures } from './cluster.ts'
import { bestRow, discoveryMedian } from './cluster.ts'
import { type BenchReport, DASH, int, machineLines, ms, num, type Table, tableLines } from './report.ts'

function perNode(
  figures: readonly NodeFigures[],
  pick: (f: NodeFigures) => number | null,
  digits: number,
): string {
  return figures.map((f) => num(pick(f), digits)).join(' / ')
}

/** The issue's targets. */
export const CLUSTER_TARGETS = {
  replicatedVsDurable: 0.7,
  lagP99Ms: 50,
  catchUpVsLive: 5,
  liveP99During: 2,
  discoveryMs: 3000,
} as const

function discoveryTable(c: ClusterResult): Table {
  return {
    title: 'Discovery to first replicated record (3 nodes, mDNS only)',
    headers: [
      'round',
      'node 1 accepting MQTT ms',
      'record PUBACKed on node 1 ms',
      'readable on node 2 ms',
      'on node 3 ms',
    ],
    rows: c.discovery.map((r, i) => [
      String(i + 1),
      ms(r.acceptingMs),
      ms(r.publishedMs),
      ...r.firstReplicatedMs.map((m) => (m === null ? 'not within 30 s' : ms(m))),
    ]),
    notes: [
      'All times from the spawn of the three nodes (fresh data dirs, started at once with only `--cluster` and `--cluster-secret-file`: no static peers). Node 1’s agent publishes one QoS 1 record as soon as the broker takes a connection (retrying every 20 ms); the agents of nodes 2 and 3 read their copy of node 1’s partition through their admin API (records API with `origin=`, which returns only what is fdatasync’d there) every 5 ms.',
    ],
  }
}

function throughputTable(c: ClusterResult): Table {
  const durable = (nodes: number, window: number, round: number): number | undefined =>
    c.throughput.find(
      (r) => r.nodes === nodes && r.ack === 'durable' && r.window === window && r.round === round,
    )?.msgsPerS
  return {
    title: `Throughput by ack mode (closed loop, QoS 1, ${c.settings.payloadBytes} B, ${c.settings.connections} x ${c.settings.window}, load on node 1)`,
    headers: [
      'cluster',
      'round',
      'msgs/s',
      'vs durable, same nodes and round',
      'p50 ms',
      'p99 ms',
      'max ms',
      'CPU µs/msg per node',
      'cores per node',
      'write B/B per node',
      'gen ELU',
      'machine busy / other cores',
    ],
    rows: c.throughput.map((r) => {
      const base = durable(r.nodes, r.window, r.round)
      return [
        r.label,
        String(r.round),
        int(r.msgsPerS),
        r.nodes > 1 && base !== undefined ? `${(r.msgsPerS / base).toFixed(2)}x` : DASH,
        ms(r.latencyMs.p50),
        ms(r.latencyMs.p99),
        ms(r.latencyMs.max),
        perNode(r.perNode, (f) => f.cpuUsPerMsg, 1),
        perNode(r.perNode, (f) => f.cpuCores, 2),
        perNode(r.perNode, (f) => f.writeBytesPerPayloadByte, 2),
        num(r.generatorElu, 2),
        r.machine === null ? DASH : `${num(r.machine.busyCores, 2)} / ${num(r.machine.otherCores, 2)}`,
      ]
    }),
    notes: [
      'Per node: node 1 (the origin, which takes the load) / node 2 / node 3. CPU µs/msg: the node process’s CPU time (all threads, /proc/<pid>/stat) per message acknowledged to the load generator; on a follower it is the cost of copying that message. write B/B: /proc/<pid>/io write_bytes per payload byte acknowledged. Each stream’s `replicas` is the cluster’s size: "2 nodes" is the issue’s "2 replicas" (each partition on its origin and one follower), "3 nodes" holds each partition three times (minInsync 2: the ack waits for the first follower); the default deployment, 3 nodes with `replicas: 2`, is not among these rows. The nodes, the load generator and the benchmark share the machine’s cores. machine busy: all CPU time of the machine in the window (/proc/stat); other: what is left after the nodes and the load generator, i.e. the agents, the benchmark and work of other people on the machine (contention). Rows marked 8 x 128: the same 8 connections with 8 times as many messages in flight. Rounds: every row runs once per round, the second round in reverse order, so each durable/replicated pair is measured back to back in both orders; the targets take each configuration’s best round.',
    ],
  }
}

function lagTable(c: ClusterResult): Table {
  return {
    title: 'Follower lag at half the cluster’s durable maximum (ack: durable)',
    headers: [
      'cluster',
      'offered msgs/s',
      'acked msgs/s',
      'PUBACK p99 ms',
      'probe acked/sent',
      'probe PUBACK p50 / p99 ms',
      'per follower: seen',
      'lag p50 ms',
      'lag p99 ms',
      'lag max ms',
      'seen before PUBACK',
      'publish -> readable p99 ms',
      'cores per node',
      'machine busy / other cores',
    ],
    rows: c.lag.map((r) => [
      `${r.nodes} nodes`,
      int(r.offeredPerS),
      int(r.ackedPerS),
      ms(r.publishLatencyMs.p99),
      `${int(r.probeAcked)}/${int(r.probeSent)}`,
      `${ms(r.probeAckMs?.p50)} / ${ms(r.probeAckMs?.p99)}`,
      r.followers.map((f) => `${int(f.seen)} (${int(f.missing)} missing)`).join(' / '),
      r.followers.map((f) => ms(f.lagMs?.p50)).join(' / '),
      r.followers.map((f) => ms(f.lagMs?.p99)).join(' / '),
      r.followers.map((f) => ms(f.lagMs?.max)).join(' / '),
      r.followers.map((f) => int(f.beforeAck)).join(' / '),
      r.followers.map((f) => ms(f.endToEndMs?.p99)).join(' / '),
      perNode(r.perNode, (f) => f.cpuCores, 2),
      r.machine === null ? DASH : `${num(r.machine.busyCores, 2)} / ${num(r.machine.otherCores, 2)}`,
    ]),
    notes: [
      `Method: beside the open-loop load (8 connections on node 1, stream \`default\`), node 1’s agent publishes ${c.settings.probeRatePerS} QoS 1 probe records a second to a stream of their own (\`probe\`) and notes each PUBACK; each follower’s agent reads its copy of that partition through its admin API every ${c.settings.lagPollMs} ms (records API with \`origin=\`, which returns only records fdatasync’d there) and notes when each probe record first shows. lag = first readable on the follower - PUBACK on node 1, both on CLOCK_MONOTONIC, which every process on the machine shares. A follower fetches all of an origin’s partitions in one fetch, so the probe records wait behind the loaded partition’s batches exactly as its own records do. Resolution: the poll interval plus one local HTTP request (well under 1 ms idle). "seen before PUBACK": the copy was readable before the PUBACK reached the publisher (counted as 0 ms): the PUBACK, not the copy, was late. publish -> readable: from the probe's PUBLISH to readable on the follower, the figure that does not depend on when the PUBACK came. Why not the SSE tail: it polls the store every 100 ms, too coarse for a 50 ms target; /v1/peers gives positions, not per-record times.`,
    ],
  }
}

function catchUpTable(c: ClusterResult): Table[] {
  const u = c.catchUp
  if (u === null) return []
  return [
    {
      title: `Catch-up after an outage (${u.nodes} nodes, ack: durable, live load ${int(u.liveRatePerS)} msgs/s on node 1, node 2 stopped for ${u.outageS} s)`,
      headers: ['figure', 'value'],
      rows: [
        ['records node 2 lacked at its restart', int(u.backlogRecords)],
        ['records copied until caught up', int(u.copiedRecords)],
        ['spawn -> replication link up s', num(u.spawnToLinkS, 2)],
        ['spawn -> caught up s', u.caughtUp ? num(u.spawnToCaughtUpS, 2) : 'not within the bound'],
        ['catch-up rate, link up -> caught up, records/s', int(u.catchUpPerS)],
        [
          'catch-up rate / live ingest',
          u.catchUpPerS === null ? DASH : `${(u.catchUpPerS / u.liveRatePerS).toFixed(1)}x`,
        ],
        ['peak copy rate over 1 s, records/s', int(u.peakPerS)],
        [
          'live PUBACK p50 / p99 / max ms, all in sync',
          `${ms(u.baseline.latencyMs.p50)} / ${ms(u.baseline.latencyMs.p99)} / ${ms(u.baseline.latencyMs.max)}`,
        ],
        [
          'live PUBACK p50 / p99 / max ms, node 2 down',
          `${ms(u.outage.latencyMs.p50)} / ${ms(u.outage.latencyMs.p99)} / ${ms(u.outage.latencyMs.max)}`,
        ],
        [
          'live PUBACK p50 / p99 / max ms, during the catch-up',
          `${ms(u.during.latencyMs.p50)} / ${ms(u.during.latencyMs.p99)} / ${ms(u.during.latencyMs.max)} (${num(u.during.seconds, 1)} s)`,
        ],
        [
          'live acked msgs/s: in sync / down / catching up',
          `${int(u.baseline.ackedPerS)} / ${int(u.outage.ackedPerS)} / ${int(u.during.ackedPerS)}`,
        ],
        [
          'cores during the catch-up: node 1 / node 2 (from its spawn)',
          `${num(u.originCores, 2)} / ${num(u.followerCores, 2)}`,
        ],
      ],
      notes: [
        `Node 2 is stopped with SIGTERM and started again on its data dir. Positions every 200 ms: node 1’s durableNext (its /v1/peers), then where node 2’s copy ends (node 2’s /v1/peers; a follower appends a fetched batch durably before it fetches again). Node 2’s own view, because node 1 re-dials a restarted peer with backoff and node 2 copies before that link is back. Caught up: behind by at most 100 ms of live ingest. The rate counts from the link coming up (node 2’s "following peer" log line), so node 2’s own start-up is not in it; spawn -> caught up is. Live PUBACK latency: a separate open-loop generator per phase, so each has its own figures; "during the catch-up" runs from the spawn of node 2 until it caught up.`,
      ],
    },
  ]
}

interface TargetRow {
  readonly what: string
  readonly goal: string
  readonly value: string
  readonly met: boolean | null
}

function targetRows(c: ClusterResult): TargetRow[] {
  const t = CLUSTER_TARGETS
  const rows: TargetRow[] = []
  for (const nodes of [2, 3]) {
    for (const window of [c.settings.window, ...c.settings.throughputRows.map((p) => p.window)].filter(
      (w, i, all) => all.indexOf(w) === i,
    )) {
      const d = bestRow(c.throughput, nodes, 'durable', window)
      const r = bestRow(c.throughput, nodes, 'replicated', window)
      if (d === undefined || r === undefined) continue
      const x = r.msgsPerS / d.msgsPerS
      const rounds = c.throughput
        .filter((q) => q.nodes === nodes && q.ack === 'replicated' && q.window === window)
        .map((q) => {
          const pair = c.throughput.find(
            (p) => p.nodes === nodes && p.ack === 'durable' && p.window === window && p.round === q.round,
          )
          return pair === undefined ? DASH : `${(q.msgsPerS / pair.msgsPerS).toFixed(2)}x`
        })
      rows.push({
        what: `replicated vs durable msgs/s, ${nodes} nodes${nodes === 2 ? ' (2 replicas)' : ' (3 copies, minInsync 2)'}${window === c.settings.window ? '' : `, ${c.settings.connections} x ${window}`}`,
        goal: `>= ${t.replicatedVsDurable}x`,
        value: `${x.toFixed(2)}x, best rounds (${int(r.msgsPerS)} / ${int(d.msgsPerS)}); per round ${rounds.join(', ')}`,
        met: x >= t.replicatedVsDurable,
      })
    }
  }
  for (const l of c.lag) {
    const worst = Math.max(...l.followers.map((f) => f.lagMs?.p99 ?? Number.POSITIVE_INFINITY))
    rows.push({
      what: `follower lag p99 at half load, ${l.nodes} nodes, plain veth`,
      goal: `<= ${t.lagP99Ms} ms`,
      value: `${ms(worst)} ms (worst follower)`,
      met: Number.isFinite(worst) ? worst <= t.lagP99Ms : false,
    })
  }
  rows.push({
    what: 'follower lag p99 under netem 20 +- 10 ms, 1% loss',
    goal: '<= 250 ms',
    value: 'not measured: tc netem is not available on this kernel',
    met: null,
  })
  const u = c.catchUp
  if (u !== null) {
    const x = u.catchUpPerS === null ? null : u.catchUpPerS / u.liveRatePerS
    rows.push({
      what: `catch-up after a ${u.outageS} s outage vs live ingest`,
      goal: `>= ${t.catchUpVsLive}x`,
      value:
        x === null
          ? 'did not catch up within the bound'
          : `${x.toFixed(1)}x (${int(u.catchUpPerS)} / ${int(u.liveRatePerS)} records/s)`,
      met: x === null ? false : x >= t.catchUpVsLive,
    })
    const p = u.during.latencyMs.p99 / u.baseline.latencyMs.p99
    rows.push({
      what: 'live PUBACK p99 during catch-up vs in sync',
      goal: `<= ${t.liveP99During}x`,
      value: `${p.toFixed(2)}x (${ms(u.during.latencyMs.p99)} / ${ms(u.baseline.latencyMs.p99)} ms)`,
      met: Number.isFinite(p) ? p <= t.liveP99During : null,
    })
  }
  if (c.discovery.length > 0) {
    const worst = Math.max(
      ...c.discovery.flatMap((r) => r.firstReplicatedMs.map((m) => m ?? Number.POSITIVE_INFINITY)),
    )
    const med = discoveryMedian(c.discovery, (r) =>
      Math.max(...r.firstReplicatedMs.map((m) => m ?? Number.NaN)),
    )
    rows.push({
      what: `discovery to first replicated record (${c.discovery.length} round(s), both followers)`,
      goal: `<= ${t.discoveryMs} ms`,
      value: `worst ${ms(worst)} ms, median ${ms(med)} ms`,
      met: worst <= t.discoveryMs,
    })
  }
  const single = bestRow(c.throughput, 1, 'durable', c.settings.window)?.perNode[0]?.writeBytesPerPayloadByte
  const configs = c.settings.throughputRows.filter((p) => p.nodes > 1 && p.window === c.settings.window)
  for (const plan of configs) {
    const r = bestRow(c.throughput, plan.nodes, plan.ack, plan.window)
    if (r === undefined) continue
    const worst = Math.max(...r.perNode.map((f) => f.writeBytesPerPayloadByte ?? Number.POSITIVE_INFINITY))
    rows.push({
      what: `disk write B/B per node, ${r.label}`,
      goal: single === null || single === undefined ? 'report' : `<= single node (${single.toFixed(2)})`,
      value: perNode(r.perNode, (f) => f.writeBytesPerPayloadByte, 2),
      met: single === null || single === undefined ? null : worst <= single,
    })
  }
  return rows
}

export function clusterTables(c: ClusterResult): Table[] {
  const tables: Table[] = []
  if (c.discovery.length > 0) tables.push(discoveryTable(c))
  if (c.throughput.length > 0) tables.push(throughputTable(c))
  if (c.lag.length > 0) tables.push(lagTable(c))
  tables.push(...catchUpTable(c))
  tables.push({
    title: 'Issue 12 targets',
    headers: ['target', 'goal', 'this run', 'met'],
    rows: targetRows(c).map((t) => [t.what, t.goal, t.value, t.met === null ? 'n/a' : t.met ? 'yes' : 'NO']),
  })
  const problems = [
    ...c.failures.map((f) => [f.phase, `failed: ${f.error}`]),
    ...c.discovery.flatMap((r, i) => r.problems.map((p) => [`discovery ${i + 1}`, p])),
    ...c.throughput.flatMap((r) => [...r.problems, ...r.errors].map((p) => [r.label, p])),
    ...c.lag.flatMap((r) => r.problems.map((p) => [`lag ${r.nodes} nodes`, p])),
    ...(c.catchUp?.problems.map((p) => ['catch-up', p]) ?? []),
  ]
  if (problems.length > 0)
    tables.push({
      title: 'Cluster: errors and warnings',
      headers: ['phase', 'what'],
      rows: problems.slice(0, 40),
    })
  return tables
}

/** A run of the cluster group alone (`--only cluster`): its own file next to latest.md. */
export function renderClusterMarkdown(report: BenchReport, jsonFile: string): string {
  const c = report.cluster
  if (c == null) throw new Error('no cluster result to render')
  const lines: string[] = [
    `# tributary benchmark: cluster${report.quick ? ' (quick run)' : ''}`,
    '',
    `Run by \`npm run bench -- --only cluster${report.quick ? ' --quick' : ''}\` on ${report.date} (${Math.round(report.elapsedS / 60)} min); raw figures in [${jsonFile}](${jsonFile}). Nodes ran in network namespaces the benchmark made (a bridge in a namespace of its own, one veth per node, mDNS only on that bridge); nothing else on the network was used. The other groups' latest full run: [latest.md](latest.md).`,
    '',
    ...machineLines(report),
    '',
    `tributary run from ${report.settings.tributaryEntry}/; warm-up ${c.settings.warmupS} s, measured ${c.settings.durationS} s per throughput and lag run; ${c.settings.discoveryRounds} discovery round(s); outage ${c.settings.outageS} s at ${c.settings.liveRatePerS} msgs/s live.`,
    ...tableLines(clusterTables(c)),
  ]
  return `${lines.join('\n')}\n`
}
