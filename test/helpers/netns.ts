// An isolated LAN for the cluster tests, built from network namespaces
// (../shared/TESTING.md, the network rule): a namespace that holds the
// "switch" (bridge br0, `trib-br-<run>`), one namespace per host
// (`trib-<run>-<n>`, with `lo` and one veth `eth0`), veth pairs made inside
// the namespaces (never in the root namespace), addresses from
// 10.231.<k>.0/24 with k picked per run, and a multicast route on each
// host's eth0 (224.0.0.0/4), so mDNS goes out of eth0 onto this bridge and
// nowhere else. Nothing here reads or changes the root namespace's
// interfaces, routes or firewall.
//
// blockMulticast turns multicast flooding off on every bridge port
// (`bridge link set ... mcast_flood off`): like a switch or access point that
// filters multicast, it drops 224.0.0.251 at the bridge while unicast and
// ARP still pass. (This kernel has no tc actions or netfilter tools, so
// dropping at the bridge is also what works here; the discovery test shows
// mDNS finding nothing while unicast to the same hosts works.)
//
// Needs root. Names carry the test process's pid and a counter, so runs in
// parallel never clash, and sweepStaleNamespaces() deletes only namespaces of
// this harness whose process is gone. close() deletes every namespace the Lan
// made, after killing the processes it started in them; a process exit hook
// does the same for a Lan a failed test never closed.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { REPO_ROOT } from './child.ts'
import { type Finished, runBounded } from './run-bounded.ts'

const HOST_IFACE = 'eth0'
const BRIDGE = 'br0'
/** trib-br-<pid>x<n> and trib-<pid>x<n>-<host>: only names of this shape are ever swept. */
const HARNESS_NAME = /^trib-(?:br-)?(\d+)x\d+(?:-\d+)?$/
const MAX_HOSTS = 200
/** How long a started process gets to exit after SIGKILL before close() goes on. */
const EXIT_WAIT_MS = 5_000

let runs = 0
const open = new Set<Lan>()

export interface LanHost {
  /** 0-based. */
  readonly index: number
  /** The host's namespace. */
  readonly ns: string
  /** Its IPv4 address on the LAN. */
  readonly address: string
  /** Its one link to the bridge, inside its namespace. */
  readonly iface: string
}

export interface LanOptions {
  readonly hosts: number
  /** Drop multicast at the bridge from the start (blockMulticast() changes it later). */
  readonly blockMulticast?: boolean
}

/** Fails with a clear message when not root: the cluster tests cannot run without namespaces. */
export function assertRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'the cluster tests need root: they create network namespaces, veth pairs and a bridge ' +
        '(nothing on the real interfaces); run them as root (CI does), or leave out --project cluster',
    )
  }
}

async function run(program: string, args: readonly string[]): Promise<Finished> {
  const result = await runBounded(program, args, { timeoutMs: 20_000 })
  if (result.code !== 0) {
    throw new Error(`${program} ${args.join(' ')} failed (${result.code}): ${result.stderr.trim()}`)
  }
  return result
}

/** The namespaces on this machine whose names this harness makes (of any run). */
export async function harnessNamespaces(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list'])
  return stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => HARNESS_NAME.test(name))
}

/** This process's namespaces: empty once every Lan it made is closed. */
export async function ownNamespaces(): Promise<string[]> {
  return (await harnessNamespaces()).filter((name) => HARNESS_NAME.exec(name)?.[1] === String(process.pid))
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Deletes this harness's namespaces whose test process has exited (a run killed before its teardown). */
export async function sweepStaleNamespaces(): Promise<string[]> {
  const stale = (await harnessNamespaces()).filter((name) => !alive(Number(HARNESS_NAME.exec(name)?.[1])))
  for (const ns of stale) await deleteNamespace(ns)
  return stale
}

/** Kills what still runs in the namespace (processes a harness started there), then deletes it. */
async function deleteNamespace(ns: string): Promise<void> {
  const pids = await runBounded('ip', ['netns', 'pids', ns])
  for (const pid of pids.stdout.split('\n').filter((line) => /^\d+$/.test(line))) {
    try {
      process.kill(Number(pid), 'SIGKILL')
    } catch {
      // Already gone.
    }
  }
  const result = await runBounded('ip', ['netns', 'del', ns])
  if (result.code !== 0 && !/No such file/.test(result.stderr)) {
    throw new Error(`ip netns del ${ns} failed: ${result.stderr.trim()}`)
  }
}

export class Lan {
  /** `<pid>x<n>`: in every namespace name of this Lan. */
  readonly id: string
  readonly bridgeNs: string
  /** `10.231.<k>.0/24`. */
  readonly subnet: string
  readonly hosts: readonly LanHost[]
  readonly #made: string[] = []
  readonly #children = new Set<ChildProcess>()
  #closed: Promise<void> | null = null

  private constructor(count: number) {
    runs += 1
    this.id = `${process.pid}x${runs}`
    const k = 10 + ((process.pid * 7 + runs) % 240)
    this.subnet = `10.231.${k}.0/24`
    this.bridgeNs = `trib-br-${this.id}`
    this.hosts = Array.from({ length: count }, (_, index) => ({
      index,
      ns: `trib-${this.id}-${index + 1}`,
      address: `10.231.${k}.${index + 10}`,
      iface: HOST_IFACE,
    }))
  }

  /** Builds the LAN; on any failure deletes what it made and rethrows. */
  static async create(options: LanOptions): Promise<Lan> {
    assertRoot()
    if (!Number.isInteger(options.hosts) || options.hosts < 1 || options.hosts > MAX_HOSTS) {
      throw new RangeError(`a Lan has 1 to ${MAX_HOSTS} hosts, not ${options.hosts}`)
    }
    const lan = new Lan(options.hosts)
    open.add(lan)
    try {
      await lan.#build(options.blockMulticast === true)
    } catch (err) {
      await lan.close()
      throw err
    }
    return lan
  }

  async #build(blockMulticast: boolean): Promise<void> {
    const br = this.bridgeNs
    await this.#addNamespace(br)
    await run('ip', ['-n', br, 'link', 'add', BRIDGE, 'type', 'bridge'])
    await run('ip', ['-n', br, 'link', 'set', BRIDGE, 'up'])
    for (const host of this.hosts) {
      const port = bridgePort(host)
      await this.#addNamespace(host.ns)
      await run('ip', ['-n', host.ns, 'link', 'set', 'lo', 'up'])
      // Made inside the host's namespace, its peer moved straight into the bridge's.
      await run('ip', [
        '-n',
        host.ns,
        'link',
        'add',
        host.iface,
        'type',
        'veth',
        'peer',
        'name',
        port,
        'netns',
        br,
      ])
      await run('ip', ['-n', br, 'link', 'set', port, 'master', BRIDGE])
      await run('ip', ['-n', br, 'link', 'set', port, 'up'])
      await run('ip', ['-n', host.ns, 'addr', 'add', `${host.address}/24`, 'dev', host.iface])
      await run('ip', ['-n', host.ns, 'link', 'set', host.iface, 'up'])
      await run('ip', ['-n', host.ns, 'route', 'add', '224.0.0.0/4', 'dev', host.iface])
    }
    if (blockMulticast) await this.blockMulticast(true)
  }

  async #addNamespace(ns: string): Promise<void> {
    await run('ip', ['netns', 'add', ns])
    this.#made.push(ns)
  }

  /** Drops (true) or floods again (false) multicast at every bridge port. */
  async blockMulticast(blocked: boolean): Promise<void> {
    for (const host of this.hosts) {
      await run('bridge', [
        '-n',
        this.bridgeNs,
        'link',
        'set',
        'dev',
        bridgePort(host),
        'mcast_flood',
        blocked ? 'off' : 'on',
      ])
    }
  }

  /** `tc netem` on the host's link, e.g. 'delay 50ms loss 5%' (needs sch_netem in the kernel). */
  async netem(host: LanHost, spec: string): Promise<void> {
    await run('tc', [
      '-n',
      host.ns,
      'qdisc',
      'replace',
      'dev',
      host.iface,
      'root',
      'netem',
      ...spec.split(/\s+/),
    ])
  }

  async clearNetem(host: LanHost): Promise<void> {
    const result = await runBounded('tc', ['-n', host.ns, 'qdisc', 'del', 'dev', host.iface, 'root'])
    if (result.code !== 0 && !/No such file|Cannot delete qdisc with handle of zero/.test(result.stderr)) {
      throw new Error(`tc qdisc del on ${host.ns} failed: ${result.stderr.trim()}`)
    }
  }

  /** Runs a program inside the host's namespace to completion (bounded). */
  exec(host: LanHost, program: string, args: readonly string[], timeoutMs = 20_000): Promise<Finished> {
    return runBounded('ip', ['netns', 'exec', host.ns, program, ...args], { timeoutMs })
  }

  /**
   * Starts a program inside the host's namespace (`ip netns exec` execs it,
   * so child.pid is the program's own). close() kills it.
   */
  spawn(host: LanHost, program: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
    if (this.#closed !== null) throw new Error(`Lan ${this.id} is closed`)
    const child = spawn('ip', ['netns', 'exec', host.ns, program, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.#children.add(child)
    child.once('exit', () => this.#children.delete(child))
    return child
  }

  /** Kills what it started, deletes every namespace it made. Idempotent. */
  close(): Promise<void> {
    if (this.#closed === null) this.#closed = this.#tearDown()
    return this.#closed
  }

  async #tearDown(): Promise<void> {
    await Promise.all(
      [...this.#children].map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return
        const exited = once(child, 'exit')
        if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, EXIT_WAIT_MS))])
      }),
    )
    const failures: string[] = []
    // Hosts first (their veth ends go with them), the bridge last.
    for (const ns of [...this.#made].reverse()) {
      await deleteNamespace(ns).catch((err: Error) => failures.push(err.message))
    }
    open.delete(this)
    if (failures.length > 0) throw new Error(`Lan ${this.id} teardown: ${failures.join('; ')}`)
  }

  /** For the exit hook: synchronous, best effort. */
  deleteNow(): void {
    for (const child of this.#children) {
      if (child.pid !== undefined && child.exitCode === null) {
        try {
          process.kill(child.pid, 'SIGKILL')
        } catch {
          // Already gone.
        }
      }
    }
    for (const ns of [...this.#made].reverse()) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' })
  }
}

function bridgePort(host: LanHost): string {
  return `p${host.index + 1}`
}

process.once('exit', () => {
  for (const lan of open) lan.deleteNow()
})
