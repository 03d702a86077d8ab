// The cluster benchmark's LAN: network namespaces made by the benchmark
// itself (test/helpers/netns.ts: one namespace per host, veth pairs on a
// bridge in a namespace of its own, a multicast route on each host's link so
// mDNS stays on that bridge), one agent per host (test/bench/cluster-agent.ts:
// the admin API and MQTT of a namespace are on its own 127.0.0.1), and
// tributary nodes started on the first N hosts with a cluster name and a
// secret and nothing else: they find each other over mDNS. Every process is
// killed by its pid and every namespace deleted at close(), also after a
// failure (the Lan's exit hook covers a run killed before it).

import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { BROKER_NODE_FLAGS } from '../helpers/child.ts'
import { Lan, type LanHost } from '../helpers/netns.ts'
import { runTributary } from '../helpers/run-bounded.ts'
import { type Problems, problemSink } from './children.ts'
import { type FromAgent, monoMs, type ToAgent } from './cluster-agent.ts'
import { exitWithin, makeTempDir, removeTempDir, sleep, stopChild, track, withDeadline } from './procs.ts'

const AGENT_SCRIPT = join(import.meta.dirname, 'cluster-agent.ts')
/** Inside each namespace: its own loopback, so every node uses the same ports. */
export const MQTT_PORT = 1883
export const HTTP_PORT = 8080
export const CLUSTER_NAME = 'bench'
const START_TIMEOUT_MS = 60_000
const PEERS_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 15_000

type Distribute<T> = T extends { readonly id: number } ? Omit<T, 'id'> : never
type Request = Distribute<Exclude<ToAgent, { type: 'end' }>>
type AnswerTo<T extends Request['type']> = Extract<FromAgent, { type: T }>

/** One agent process inside one namespace. */
export class Agent {
  readonly #child: ChildProcess
  readonly #waiting = new Map<number, { resolve: (m: FromAgent) => void; reject: (err: Error) => void }>()
  #nextId = 1

  constructor(host: LanHost) {
    this.#child = track(
      spawn('ip', ['netns', 'exec', host.ns, process.execPath, AGENT_SCRIPT], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    )
    this.#child.on('message', (m: FromAgent) => {
      this.#waiting.get(m.id)?.resolve(m)
      this.#waiting.delete(m.id)
    })
    this.#child.once('exit', (code, signal) => {
      for (const [id, w] of this.#waiting)
        w.reject(new Error(`agent on ${host.ns} exited (${code ?? signal}) while request ${id} ran`))
      this.#waiting.clear()
    })
  }

  /** Sends a request; `answer` resolves with its one answer. `end()` ends a probe or watch early. */
  start<T extends Request['type']>(
    request: Extract<Request, { type: T }>,
  ): { answer: Promise<AnswerTo<T>>; end: () => void } {
    const id = this.#nextId++
    const answer = new Promise<AnswerTo<T>>((resolve, reject) => {
      this.#waiting.set(id, { resolve: (m) => resolve(m as AnswerTo<T>), reject })
    })
    answer.catch(() => undefined)
    if (!this.#child.connected) {
      this.#waiting.get(id)?.reject(new Error('agent is gone'))
      this.#waiting.delete(id)
    } else this.#child.send({ ...request, id })
    return { answer, end: () => this.#child.connected && this.#child.send({ type: 'end', id }) }
  }

  /** GET of the namespace's admin API (`path` on 127.0.0.1:HTTP_PORT). */
  async get<T>(path: string): Promise<{ status: number; body: T }> {
    const { answer } = this.start({ type: 'get', url: `http://127.0.0.1:${HTTP_PORT}${path}` })
    const m = await withDeadline(answer, 15_000, `GET ${path}`)
    return { status: m.status, body: m.body as T }
  }

  async close(): Promise<void> {
    if (this.#child.connected) this.#child.disconnect()
    if (this.#child.pid !== undefined && !(await exitWithin(this.#child, 3000)))
      await stopChild(this.#child, this.#child.pid, 'SIGKILL', 3000)
  }
}

export interface StreamSettings {
  readonly ack: 'durable' | 'replicated'
  readonly minInsync: number
  /** Nodes that hold each partition, the origin included (the bench sets it to the cluster's size). */
  readonly replicas: number
}

/** The config every node of a run shares: the loaded stream and the lag probe's own stream. */
function writeConfig(dir: string, settings: StreamSettings): string {
  const file = join(dir, 'tributary.yaml')
  const copies = settings.replicas > 1 ? `, replicas: ${settings.replicas}` : ''
  const replicated = `${copies}${settings.ack === 'replicated' ? `, minInsync: ${settings.minInsync}` : ''}`
  writeFileSync(
    file,
    [
      'http:',
      '  host: 127.0.0.1',
      `  port: ${HTTP_PORT}`,
      'streams:',
      `  - { name: default, match: ["bench/#"], ack: ${settings.ack}${replicated} }`,
      `  - { name: probe, match: ["probe/#"], ack: durable${copies} }`,
      '',
    ].join('\n'),
  )
  return file
}

/** A line of a node's log with the monotonic time it arrived here. */
interface LogLine {
  readonly atMs: number
  readonly msg: string
  readonly peer: string | null
}

export class ClusterNode {
  readonly host: LanHost
  readonly dataDir: string
  readonly child: ChildProcess
  readonly pid: number
  /** monoMs() just before the spawn. */
  readonly spawnedAtMs: number
  readonly problems: Problems
  readonly #lines: LogLine[] = []

  constructor(lan: Lan, host: LanHost, dataDir: string, args: readonly string[], problems: Problems) {
    this.host = host
    this.dataDir = dataDir
    this.problems = problems
    this.spawnedAtMs = monoMs()
    this.child = track(lan.spawn(host, process.execPath, [...BROKER_NODE_FLAGS, ...args]))
    if (this.child.pid === undefined) throw new Error(`no pid for the node on ${host.ns}`)
    this.pid = this.child.pid
    const out = this.child.stdout
    const err = this.child.stderr
    if (out === null || err === null) throw new Error('node started without pipes')
    createInterface({ input: err }).on('line', (line) => problems.add(line))
    createInterface({ input: out }).on('line', (line) => {
      const atMs = monoMs()
      try {
        const entry = JSON.parse(line) as { level?: number; msg?: string; peer?: string }
        if ((entry.level ?? 0) >= 40) problems.add(line)
        this.#lines.push({ atMs, msg: entry.msg ?? '', peer: entry.peer ?? null })
      } catch {
        problems.add(line)
      }
    })
  }

  /** When the node first logged `msg` (for `peer`, if given), or null. */
  loggedAt(msg: string, peer?: string): number | null {
    return this.#lines.find((l) => l.msg === msg && (peer === undefined || l.peer === peer))?.atMs ?? null
  }

  async until(msg: string, timeoutMs: number, peer?: string): Promise<number> {
    const deadline = monoMs() + timeoutMs
    for (;;) {
      const at = this.loggedAt(msg, peer)
      if (at !== null) return at
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`node on ${this.host.ns} exited before "${msg}": ${this.problems.list.join(' | ')}`)
      if (monoMs() > deadline) throw new Error(`node on ${this.host.ns}: no "${msg}" within ${timeoutMs} ms`)
      await sleep(10)
    }
  }

  /** The node id, once the node wrote it into its data dir. */
  async nodeId(): Promise<string> {
    const file = join(this.dataDir, 'node-id')
    for (let i = 0; i < 2000 && !existsSync(file); i++) await sleep(5)
    const id = readFileSync(file, 'utf8').trim()
    if (id === '') throw new Error(`empty node id in ${file}`)
    return id
  }

  stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    return stopChild(this.child, this.pid, signal, STOP_TIMEOUT_MS)
  }
}

export interface PeerEntry {
  readonly nodeId: string
  readonly state: string
}

/** The LAN, its agents, the shared secret, and the nodes of the current run. */
export class BenchLan {
  readonly lan: Lan
  readonly agents: readonly Agent[]
  readonly #dir: string
  readonly #secretFile: string
  readonly #entry: string
  #runs = 0

  private constructor(lan: Lan, dir: string, secretFile: string, entry: string) {
    this.lan = lan
    this.#dir = dir
    this.#secretFile = secretFile
    this.#entry = entry
    this.agents = lan.hosts.map((host) => new Agent(host))
  }

  static async create(hosts: number, entry: string): Promise<BenchLan> {
    const lan = await Lan.create({ hosts })
    const dir = makeTempDir('cluster')
    try {
      const secretFile = join(dir, 'cluster.secret')
      const init = await runTributary(['cluster', 'init', '--secret-file', secretFile])
      if (init.code !== 0) throw new Error(`tributary cluster init failed: ${init.stderr.trim()}`)
      return new BenchLan(lan, dir, secretFile, entry)
    } catch (err) {
      await lan.close()
      removeTempDir(dir)
      throw err
    }
  }

  get hosts(): readonly LanHost[] {
    return this.lan.hosts
  }

  agent(index: number): Agent {
    const agent = this.agents[index]
    if (agent === undefined) throw new Error(`no agent ${index}`)
    return agent
  }

  /** A fresh run dir: its config, and a data dir per host under it. */
  runDir(settings: StreamSettings): { dir: string; config: string } {
    this.#runs++
    const dir = join(this.#dir, `run-${this.#runs}`)
    const dataDirs = this.hosts.map((h) => join(dir, `data-${h.index + 1}`))
    for (const d of dataDirs) mkdirSync(d, { recursive: true })
    return { dir, config: writeConfig(dir, settings) }
  }

  /** Starts one node on `host` (with `cluster`: the cluster name and secret only; mDNS finds the rest). */
  startNode(host: LanHost, run: { dir: string; config: string }, cluster: boolean): ClusterNode {
    const dataDir = join(run.dir, `data-${host.index + 1}`)
    const args = [
      this.#entry,
      'start',
      '--data-dir',
      dataDir,
      '--config',
      run.config,
      '--mqtt-host',
      '127.0.0.1',
      '--mqtt-port',
      String(MQTT_PORT),
      '--log-level',
      'info',
      ...(cluster ? ['--cluster', CLUSTER_NAME, '--cluster-secret-file', this.#secretFile] : []),
    ]
    return new ClusterNode(this.lan, host, dataDir, args, problemSink())
  }

  /** Starts nodes on the first `count` hosts at once and waits until each accepts MQTT. */
  async startNodes(count: number, settings: StreamSettings): Promise<ClusterNode[]> {
    const run = this.runDir(settings)
    const nodes = this.hosts.slice(0, count).map((h) => this.startNode(h, run, count > 1))
    try {
      await Promise.all(nodes.map((n) => n.until('tributary accepting MQTT connections', START_TIMEOUT_MS)))
    } catch (err) {
      await Promise.all(nodes.map((n) => n.stop('SIGKILL')))
      throw err
    }
    return nodes
  }

  /** Waits until every node lists every other one as connected in /v1/peers. */
  async connected(nodes: readonly ClusterNode[]): Promise<void> {
    if (nodes.length < 2) return
    const deadline = monoMs() + PEERS_TIMEOUT_MS
    for (const node of nodes) {
      for (;;) {
        const { status, body } = await this.agent(node.host.index).get<{ peers?: PeerEntry[] }>('/v1/peers')
        const up = status === 200 ? (body.peers ?? []).filter((p) => p.state === 'connected').length : 0
        if (up >= nodes.length - 1) break
        if (monoMs() > deadline)
          throw new Error(
            `${node.host.ns}: ${up} of ${nodes.length - 1} peers connected after ${PEERS_TIMEOUT_MS} ms`,
          )
        await sleep(100)
      }
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.close()))
    try {
      await this.lan.close()
    } finally {
      removeTempDir(this.#dir)
    }
  }
}
