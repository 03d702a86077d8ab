// Discovery on a LAN of network namespaces (test/helpers/netns.ts): each node
// is a child process (test/helpers/discovery-child.ts) in its own namespace,
// all on one bridge in a namespace of the test's own; mDNS never leaves it.
// Issue 12: three nodes that know only their cluster name find each other
// within 3 s; another cluster is ignored both ways; one id on two hosts is a
// conflict; with multicast blocked mDNS finds nothing and static peers work.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { FoundPeer, NodeIdConflict } from '../../src/cluster/discovery.ts'
import { collectLogLines, REPO_ROOT } from '../helpers/child.ts'
import type { ChildOptions } from '../helpers/discovery-child.ts'
import { assertRoot, Lan, type LanHost, ownNamespaces, sweepStaleNamespaces } from '../helpers/netns.ts'
import { runBounded } from '../helpers/run-bounded.ts'

const CHILD = join(REPO_ROOT, 'test', 'helpers', 'discovery-child.ts')
const PORT = 7625
/** Generous: events, not timings, decide these tests (the 3 s of the issue is measured, not waited for). */
const WAIT_MS = 20_000

interface ChildEvent {
  readonly event: string
  readonly peer?: FoundPeer
  readonly conflict?: NodeIdConflict
  readonly nodeId?: string
  readonly host?: string
  /** When the test read the line (performance.now() of the test process). */
  readonly seenMs: number
}

interface DiscoveryChild {
  readonly host: LanHost
  readonly events: ChildEvent[]
  /** The child's pino log lines. */
  readonly log: Array<Record<string, unknown>>
  waitFor(what: string, predicate: (events: readonly ChildEvent[]) => boolean): Promise<void>
  found(): FoundPeer[]
  /** SIGKILL: a power cut, no goodbye. */
  kill(): Promise<void>
}

function startChild(lan: Lan, host: LanHost, options: ChildOptions): DiscoveryChild {
  const child = lan.spawn(host, process.execPath, [CHILD, JSON.stringify(options)])
  const events: ChildEvent[] = []
  const log: Array<Record<string, unknown>> = []
  const waiters = new Set<() => void>()
  let exited = false
  const wake = () => {
    for (const waiter of waiters) waiter()
  }
  if (child.stdout === null || child.stderr === null) throw new Error('child without pipes')
  createInterface({ input: child.stdout }).on('line', (line) => {
    events.push({ ...(JSON.parse(line) as { event: string }), seenMs: performance.now() })
    wake()
  })
  collectLogLines(child.stderr, log, wake)
  child.once('exit', () => {
    exited = true
    wake()
  })
  return {
    host,
    events,
    log,
    kill: async () => {
      if (exited) return
      const gone = once(child, 'exit')
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
      await gone
    },
    found: () => events.flatMap((event) => (event.event === 'found' && event.peer ? [event.peer] : [])),
    waitFor: (what, predicate) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (predicate(events)) done(null)
          else if (exited)
            done(new Error(`${host.ns} exited before ${what}: ${JSON.stringify(log.slice(-5))}`))
        }
        const timer = setTimeout(
          () =>
            done(
              new Error(
                `${host.ns}: no ${what} within ${WAIT_MS} ms; events ${JSON.stringify(events)}; ` +
                  `log ${JSON.stringify(log.map(({ msg, instance, cluster }) => ({ msg, instance, cluster })))}`,
              ),
            ),
          WAIT_MS,
        )
        const done = (err: Error | null) => {
          clearTimeout(timer)
          waiters.delete(check)
          if (err === null) resolve()
          else reject(err)
        }
        waiters.add(check)
        check()
      }),
  }
}

const ready = (child: DiscoveryChild) =>
  child.waitFor('ready', (events) => events.some((e) => e.event === 'ready'))

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A Lan for one test, closed whatever the test does. */
async function withLan(
  options: { hosts: number; blockMulticast?: boolean },
  body: (lan: Lan) => Promise<void>,
): Promise<void> {
  const lan = await Lan.create(options)
  try {
    await body(lan)
  } finally {
    await lan.close()
  }
}

function mdns(cluster: string, nodeId: string, host: LanHost): ChildOptions {
  return { mode: 'mdns', cluster, nodeId, port: PORT, interface: host.address }
}

beforeAll(async () => {
  assertRoot()
  await sweepStaleNamespaces()
})

describe('mDNS discovery between network namespaces', () => {
  test('three nodes with only a cluster name find each other within 3 s; another cluster is ignored both ways', async () => {
    await withLan({ hosts: 4 }, async (lan) => {
      const [h1, h2, h3, h4] = lan.hosts as [LanHost, LanHost, LanHost, LanHost]
      // The other cluster is up first, so its answers are on the wire when the three start browsing.
      const silo = startChild(lan, h4, mdns('silo', 'silo-1', h4))
      await ready(silo)

      const started = performance.now()
      const barn = [h1, h2, h3].map((host, i) => startChild(lan, host, mdns('barn', `barn-${i + 1}`, host)))
      const ids = ['barn-1', 'barn-2', 'barn-3']
      await Promise.all(
        barn.map((child, i) =>
          child.waitFor('both other barn nodes', () => {
            const seen = new Set(child.found().map((peer) => peer.nodeId))
            return ids.filter((_, j) => j !== i).every((id) => seen.has(id))
          }),
        ),
      )
      const lastFoundMs = Math.max(
        ...barn.flatMap((child) => child.events.filter((e) => e.event === 'found').map((e) => e.seenMs)),
      )
      const elapsedMs = lastFoundMs - started
      console.log(`three nodes found each other ${Math.round(elapsedMs)} ms after the first was spawned`)
      // The requirement, from spawning the first process (Node's start-up included).
      expect(elapsedMs).toBeLessThan(3_000)

      for (const [i, child] of barn.entries()) {
        const others = [h1, h2, h3].filter((_, j) => j !== i)
        expect(child.found().sort((a, b) => String(a.nodeId).localeCompare(String(b.nodeId)))).toEqual(
          others.map((host) => ({
            cluster: 'barn',
            nodeId: `barn-${host.index + 1}`,
            host: host.address,
            port: PORT,
            protocol: 1,
            via: 'mdns',
          })),
        )
      }
      // The silo node was heard and ignored (its announcement reached every barn node), and it ignored them.
      for (const child of barn) {
        await child.waitFor('silo ignored', () =>
          child.log.some((line) => line.msg === 'mDNS: another cluster, ignored' && line.cluster === 'silo'),
        )
      }
      await silo.waitFor('barn ignored', () =>
        silo.log.some((line) => line.msg === 'mDNS: another cluster, ignored' && line.cluster === 'barn'),
      )
      expect(silo.found()).toEqual([])
      expect(barn.flatMap((child) => child.events.filter((e) => e.event === 'conflict'))).toEqual([])
    })
  })

  test('one node id on two hosts is a conflict, seen by both and by a third node', async () => {
    await withLan({ hosts: 3 }, async (lan) => {
      const [h1, h2, h3] = lan.hosts as [LanHost, LanHost, LanHost]
      const children = [
        startChild(lan, h1, mdns('barn', 'cloned', h1)),
        startChild(lan, h2, mdns('barn', 'cloned', h2)),
        startChild(lan, h3, mdns('barn', 'barn-3', h3)),
      ]
      const hosts = [`${h1.address}:${PORT}`, `${h2.address}:${PORT}`].sort()
      for (const child of children) {
        await child.waitFor('a conflict', (events) => events.some((e) => e.event === 'conflict'))
        const conflicts = child.events.flatMap((e) => (e.conflict ? [e.conflict] : []))
        expect(conflicts).toEqual([{ nodeId: 'cloned', hosts, ownId: child.host !== h3 }])
      }
      // The clones do not list each other as peers; the third lists both addresses.
      expect(children[0]?.found().map((peer) => peer.nodeId)).toEqual(['barn-3'])
      expect(children[1]?.found().map((peer) => peer.nodeId)).toEqual(['barn-3'])
      expect(
        children[2]
          ?.found()
          .map((peer) => peer.host)
          .sort(),
      ).toEqual([h1.address, h2.address].sort())
    })
  })

  test('a node back at another address after a power cut is found there, and is no conflict', async () => {
    await withLan({ hosts: 3 }, async (lan) => {
      const [h1, h2, h3] = lan.hosts as [LanHost, LanHost, LanHost]
      const observer = startChild(lan, h3, mdns('barn', 'barn-3', h3))
      const before = startChild(lan, h1, mdns('barn', 'moved', h1))
      await observer.waitFor('moved at h1', () => observer.found().some((peer) => peer.host === h1.address))
      await before.kill()
      // The same node id from another address: the observer still lists the old instance (no goodbye was sent).
      const after = startChild(lan, h2, mdns('barn', 'moved', h2))
      await observer.waitFor('moved at h2', () => observer.found().some((peer) => peer.host === h2.address))
      await after.waitFor('barn-3', () => after.found().some((peer) => peer.nodeId === 'barn-3'))
      // Past the conflict check's wait for the old instance to answer its query.
      await sleep(2_000)
      expect(observer.events.filter((e) => e.event === 'conflict')).toEqual([])
      expect(after.events.filter((e) => e.event === 'conflict')).toEqual([])
    })
  })

  test('a node whose address changes announces itself again at the new one', async () => {
    await withLan({ hosts: 2 }, async (lan) => {
      const [h1, h2] = lan.hosts as [LanHost, LanHost]
      const observer = startChild(lan, h2, mdns('barn', 'barn-2', h2))
      // All interfaces (no bind address): the address it binds to is about to go.
      const moving = startChild(lan, h1, { mode: 'mdns', cluster: 'barn', nodeId: 'barn-1', port: PORT })
      await observer.waitFor('barn-1', () => observer.found().some((peer) => peer.nodeId === 'barn-1'))
      const next = h1.address.replace(/\.\d+$/, '.99')
      const changed = await lan.exec(h1, 'sh', [
        '-c',
        // Deleted first: deleting a primary address also deletes the secondaries of its subnet. Losing its
        // last address drops the link's multicast route too, which a DHCP client would set again.
        `ip addr del ${h1.address}/24 dev ${h1.iface} && ip addr add ${next}/24 dev ${h1.iface} && ` +
          `ip route add 224.0.0.0/4 dev ${h1.iface}`,
      ])
      expect(changed.code, changed.stderr).toBe(0)
      await observer.waitFor('barn-1 at its new address', () =>
        observer.found().some((peer) => peer.host === next),
      )
      expect(observer.events.filter((e) => e.event === 'conflict')).toEqual([])
      expect(moving.log.some((line) => line.msg === 'mDNS: network interfaces changed')).toBe(true)
    })
  })

  test('with multicast blocked, mDNS finds nothing and static peers are found and answer', async () => {
    await withLan({ hosts: 3, blockMulticast: true }, async (lan) => {
      const [h1, h2, h3] = lan.hosts as [LanHost, LanHost, LanHost]
      const nodes = [
        startChild(lan, h1, { ...mdns('barn', 'barn-1', h1), serve: true }),
        startChild(lan, h2, { ...mdns('barn', 'barn-2', h2), serve: true }),
      ]
      await Promise.all(nodes.map(ready))
      const blockedSince = performance.now()
      const viaStatic = startChild(lan, h3, {
        mode: 'static',
        cluster: 'barn',
        nodeId: 'barn-3',
        port: PORT,
        peers: [`${h1.address}:${PORT}`, `${h2.address}:${PORT}`],
        dial: true,
      })
      await viaStatic.waitFor(
        'two hellos',
        (events) => events.filter((e) => e.event === 'hello').length === 2,
      )
      expect(viaStatic.found()).toEqual(
        [h1, h2].map((host) => ({
          cluster: 'barn',
          nodeId: null,
          host: host.address,
          port: PORT,
          protocol: null,
          via: 'static',
        })),
      )
      expect(
        viaStatic.events
          .filter((e) => e.event === 'hello')
          .map((e) => [e.host, e.nodeId])
          .sort(),
      ).toEqual([
        [h1.address, 'barn-1'],
        [h2.address, 'barn-2'],
      ])
      // Three seconds of announcements (the first at once, the next at 1 s and 3 s) and none arrived.
      await sleep(Math.max(0, 4_000 - (performance.now() - blockedSince)))
      for (const node of nodes) expect(node.found()).toEqual([])

      // The same nodes find each other once the bridge floods multicast again: the block was the only obstacle.
      await lan.blockMulticast(false)
      const [n1, n2] = nodes as [DiscoveryChild, DiscoveryChild]
      const later = [startChild(lan, h3, mdns('barn', 'barn-3', h3))]
      for (const node of [n1, n2, ...later]) {
        await node.waitFor('a peer by mDNS', () => node.found().length > 0)
      }
    })
  })

  test("the sweep deletes a killed run's namespaces and nothing else", async () => {
    const gone = spawn('true')
    await once(gone, 'exit')
    const stale = `trib-${gone.pid}x1-1`
    const other = `trib-other-${process.pid}`
    await runBounded('ip', ['netns', 'add', stale])
    await runBounded('ip', ['netns', 'add', other])
    try {
      expect(await sweepStaleNamespaces()).toEqual([stale])
      const left = (await runBounded('ip', ['netns', 'list'])).stdout
      expect(left).not.toContain(stale)
      expect(left).toContain(other)
    } finally {
      await runBounded('ip', ['netns', 'del', stale])
      await runBounded('ip', ['netns', 'del', other])
    }
  })

  test('a failed test still leaves no namespace behind', async () => {
    let made: Lan | null = null
    await expect(
      withLan({ hosts: 2 }, async (lan) => {
        made = lan
        const child = startChild(lan, lan.hosts[0] as LanHost, {
          mode: 'static',
          cluster: 'barn',
          nodeId: 'x',
          port: PORT,
        })
        await ready(child)
        throw new Error('the test failed here')
      }),
    ).rejects.toThrow('the test failed here')
    expect(made).not.toBeNull()
    expect(await ownNamespaces()).toEqual([])
  })
})

afterAll(async () => {
  // Every Lan above was closed by its test; nothing of this run may remain.
  const left = await ownNamespaces()
  expect(left).toEqual([])
})
