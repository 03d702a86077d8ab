// mDNS discovery (bonjour-service, pure JS over multicast-dns): advertises
// `_tributary._tcp` for this node and browses for the others. In: the node's
// cluster name, id, replication port and protocol version. Out: `found` for
// each new (node id, address, port) of this cluster, and `conflict` when one
// node id is announced from two hosts (a cloned SD card). Only addresses come
// out of here: liveness is the replication connection's heartbeats, never an
// mDNS TTL.
//
// bonjour-service's behaviour this module relies on or works around:
// - Its browser emits `down` only for a goodbye (a record with TTL 0) and never
//   expires anything by itself, so a node that lost power stays listed.
// - A known instance whose address changes is not reported again (its
//   `srv-update` compares name, host, port and type only). So each start, and
//   each change of this host's addresses, publishes under a new instance name
//   (`<nodeId>-<random>`), after a goodbye for the old one.
// - Its A records are a snapshot of os.networkInterfaces() taken at publish:
//   the interfaces are polled and the service published again on a change.
// - The error callback covers only failed answers to queries (its default
//   throws). multicast-dns's own socket errors arrive as `error` events, which
//   would throw with no listener, so this module listens to that socket too.
// - Probing for a taken instance name stops the service and only console.logs;
//   instance names here are unique per start, so probing is off (it would also
//   delay the first announcement by up to a second).

import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { isIPv4 } from 'node:net'
import { networkInterfaces } from 'node:os'
import { performance } from 'node:perf_hooks'
import type { Browser, Service, ServiceConfig } from 'bonjour-service'
import Bonjour from 'bonjour-service'
import type { Logger } from '../observability/logger.ts'
import { type Discovery, type DiscoveryEvents, type FoundPeer, SERVICE_TYPE } from './discovery.ts'

/** How often this host's addresses are compared with those last announced. */
const INTERFACE_POLL_MS = 3_000
/** How long the other claimants of an id have to answer before a conflict is reported without them. */
const CONFIRM_MS = 1_000
/** How long close() waits for the goodbye packet to be sent. */
const GOODBYE_WAIT_MS = 1_000
/** Bound on the instances tracked and the peers found: far above any LAN cluster; more are ignored, with a warning. */
const MAX_INSTANCES = 256

export interface MdnsDiscoveryOptions {
  readonly cluster: string
  readonly nodeId: string
  readonly replicationPort: number
  readonly protocol: number
  /** The IPv4 address of the one interface to use for multicast; all interfaces when not given. */
  readonly interface?: string
  readonly log: Logger
}

/** An announced instance of `_tributary._tcp` of this cluster. */
interface Instance {
  readonly fqdn: string
  readonly nodeId: string
  /** `address:port`, sorted. */
  readonly hosts: readonly string[]
  lastSeenMs: number
}

interface ResourceRecord {
  readonly name: string
  readonly type: string
  readonly ttl?: number
}

/** The part of multicast-dns's socket wrapper used here. */
interface MulticastDns {
  on(event: 'error' | 'warning', listener: (err: Error) => void): void
  on(
    event: 'response',
    listener: (packet: { answers?: ResourceRecord[]; additionals?: ResourceRecord[] }) => void,
  ): void
  once(event: 'ready' | 'error', listener: () => void): void
  query(name: string, type: string): void
}

export class MdnsDiscovery extends EventEmitter<DiscoveryEvents> implements Discovery {
  readonly #options: MdnsDiscoveryOptions
  readonly #log: Logger
  #bonjour: Bonjour | null = null
  #mdns: MulticastDns | null = null
  #browser: Browser | null = null
  #service: Service | null = null
  /** Instance names this process has published (lower case): its own announcements are not peers. */
  readonly #ownNames = new Set<string>()
  readonly #instances = new Map<string, Instance>()
  readonly #found = new Map<string, FoundPeer>()
  readonly #conflicts = new Set<string>()
  /** Ids reported in a conflict: a repeated announcement does not start another check of them. */
  readonly #conflictIds = new Set<string>()
  /** Node ids whose claimants are being asked now; true when another check was asked for meanwhile. */
  readonly #confirming = new Map<string, boolean>()
  readonly #timers = new Set<NodeJS.Timeout>()
  #poll: NodeJS.Timeout | null = null
  #interfaces = ''
  #warnedFull = false
  readonly #warnings = new Set<string>()
  #state: 'new' | 'started' | 'closed' = 'new'
  #closing: Promise<void> | null = null

  constructor(options: MdnsDiscoveryOptions) {
    super()
    this.#options = options
    this.#log = options.log.child({ component: 'discovery' })
  }

  /** Resolves once the mDNS socket is bound (or failed to bind, which is logged: static peers still work). */
  async start(): Promise<void> {
    if (this.#state !== 'new') return
    this.#state = 'started'
    // bonjour-service hands these options to multicast-dns, whose `interface` also sets the bind address:
    // a socket bound to a unicast address never receives multicast on Linux, so bind the wildcard.
    const socketOptions =
      this.#options.interface === undefined ? {} : { interface: this.#options.interface, bind: '0.0.0.0' }
    const bonjour = new Bonjour(socketOptions as Partial<ServiceConfig>, (err: unknown) => {
      this.#log.warn({ err }, 'mDNS: could not send an answer')
    })
    this.#bonjour = bonjour
    // bonjour-service keeps its multicast-dns socket private; its `error` events need a listener (see the top).
    const mdns = (bonjour as unknown as { server: { mdns: MulticastDns } }).server.mdns
    this.#mdns = mdns
    const bound = new Promise<void>((resolve) => {
      mdns.once('ready', resolve)
      mdns.once('error', resolve)
    })
    mdns.on('error', (err) => this.#log.warn({ err }, 'mDNS: socket error; discovery by mDNS is not working'))
    // multicast-dns retries a failed membership every 5 s (EADDRINUSE for a second address on a joined link): once each.
    mdns.on('warning', (err) => {
      if (this.#warnings.has(err.message) || this.#warnings.size >= MAX_INSTANCES) return
      this.#warnings.add(err.message)
      this.#log.debug({ err }, 'mDNS: socket warning')
    })
    mdns.on('response', (packet) =>
      this.#noteAnswers([...(packet.answers ?? []), ...(packet.additionals ?? [])]),
    )

    const browser = bonjour.find({ type: SERVICE_TYPE, protocol: 'tcp' })
    this.#browser = browser
    browser.on('up', (service) => this.#onService(service))
    browser.on('srv-update', (service) => this.#onService(service))
    browser.on('txt-update', (service) => this.#onService(service))
    browser.on('down', (service) => this.#instances.delete(service.fqdn.toLowerCase()))

    this.#interfaces = interfaceSignature()
    this.#publish()
    this.#poll = setInterval(() => this.#checkInterfaces(), INTERFACE_POLL_MS)
    this.#poll.unref()
    await bound
  }

  /** Sends a goodbye (bounded wait), then closes the socket. */
  close(): Promise<void> {
    if (this.#closing !== null) return this.#closing
    this.#state = 'closed'
    if (this.#poll !== null) clearInterval(this.#poll)
    for (const timer of this.#timers) clearTimeout(timer)
    this.#timers.clear()
    this.#closing = this.#shutDown()
    return this.#closing
  }

  peers(): readonly FoundPeer[] {
    return [...this.#found.values()]
  }

  async #shutDown(): Promise<void> {
    const bonjour = this.#bonjour
    if (bonjour === null) return
    this.#browser?.stop()
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, GOODBYE_WAIT_MS)
      bonjour.unpublishAll(() => {
        clearTimeout(timer)
        resolve()
      })
    })
    await new Promise<void>((resolve) => bonjour.destroy(() => resolve()))
  }

  #publish(): void {
    const { cluster, nodeId, replicationPort, protocol } = this.#options
    if (this.#bonjour === null) return
    // An instance name is one DNS label (at most 63 bytes); the full id travels in the TXT record.
    const name = `${nodeId.slice(0, 48)}-${randomBytes(3).toString('hex')}`
    const service = this.#bonjour.publish({
      name,
      type: SERVICE_TYPE,
      protocol: 'tcp',
      port: replicationPort,
      host: `${nodeId}.local`,
      txt: { cluster, node: nodeId, proto: String(protocol), port: String(replicationPort) },
      probe: false,
      // Only A records: multicast-dns speaks IPv4 here, and a link-local IPv6 address needs a zone to dial.
      disableIPv6: true,
    })
    this.#service = service
    this.#ownNames.add(service.fqdn.toLowerCase())
    this.#log.info(
      { instance: service.fqdn, addresses: ownAddresses(this.#options.interface) },
      'mDNS: announcing',
    )
  }

  #checkInterfaces(): void {
    const now = interfaceSignature()
    if (now === this.#interfaces || this.#state !== 'started') return
    this.#interfaces = now
    this.#log.info({ addresses: ownAddresses(this.#options.interface) }, 'mDNS: network interfaces changed')
    // Goodbye first: stop() drops the old records (the host name's A records among them) before publish adds the new.
    this.#service?.stop()
    this.#publish()
    this.#browser?.update()
  }

  #onService(service: Service): void {
    if (this.#state !== 'started') return
    const fqdn = service.fqdn.toLowerCase()
    if (this.#ownNames.has(fqdn)) return
    const txt = (service.txt ?? {}) as Record<string, unknown>
    if (txt.cluster !== this.#options.cluster) {
      this.#log.debug({ instance: service.fqdn, cluster: txt.cluster }, 'mDNS: another cluster, ignored')
      return
    }
    const nodeId = typeof txt.node === 'string' && txt.node !== '' ? txt.node : null
    const addresses = ipv4Addresses(service)
    if (nodeId === null || addresses.length === 0) {
      this.#log.debug(
        { instance: service.fqdn },
        'mDNS: announcement without node id or IPv4 address, ignored',
      )
      return
    }
    if (!this.#instances.has(fqdn) && this.#instances.size >= MAX_INSTANCES) {
      this.#warnFull()
      return
    }
    const port = service.port
    this.#instances.set(fqdn, {
      fqdn,
      nodeId,
      hosts: addresses.map((address) => `${address}:${port}`).sort(),
      lastSeenMs: performance.now(),
    })
    if (nodeId !== this.#options.nodeId) {
      const proto = Number.parseInt(String(txt.proto), 10)
      for (const host of addresses) {
        this.#addFound({
          cluster: this.#options.cluster,
          nodeId,
          host,
          port,
          protocol: Number.isSafeInteger(proto) ? proto : null,
          via: 'mdns',
        })
      }
    }
    this.#checkConflict(nodeId)
  }

  #addFound(peer: FoundPeer): void {
    const key = `${peer.nodeId}|${peer.host}|${peer.port}`
    if (this.#found.has(key)) return
    if (this.#found.size >= MAX_INSTANCES) {
      this.#warnFull()
      return
    }
    this.#found.set(key, peer)
    this.#log.info({ peer }, 'mDNS: found a peer')
    this.emit('found', peer)
  }

  /**
   * Any SRV record of a tracked instance shows it is still announced: the
   * conflict check asks for them. The browser reports an instance once, so a
   * repeated announcement also starts a check of its id here (one that lost
   * its answers to packet loss gets another chance).
   */
  #noteAnswers(records: readonly ResourceRecord[]): void {
    if (this.#state !== 'started') return
    for (const record of records) {
      if (record.type !== 'SRV' || !(record.ttl !== undefined && record.ttl > 0)) continue
      const instance = this.#instances.get(record.name.toLowerCase())
      if (instance === undefined) continue
      instance.lastSeenMs = performance.now()
      if (!this.#confirming.has(instance.nodeId) && !this.#conflictIds.has(instance.nodeId)) {
        this.#checkConflict(instance.nodeId)
      }
    }
  }

  /**
   * Two claimants of one id at different addresses (this node among them when
   * the id is its own) are a conflict only if both answer a query for their
   * SRV record now: a node that lost power and came back at another address
   * left its old instance behind in every browser, and that one never answers.
   */
  #checkConflict(nodeId: string): void {
    const claimants = () => [...this.#instances.values()].filter((instance) => instance.nodeId === nodeId)
    const ownId = nodeId === this.#options.nodeId
    const own = ownId ? ownHosts(this.#options) : []
    const distinct = (instances: readonly Instance[]) =>
      new Set([...instances.map((instance) => instance.hosts.join(',')), ...(ownId ? [own.join(',')] : [])])
    if (distinct(claimants()).size < 2) return
    if (this.#confirming.has(nodeId)) {
      this.#confirming.set(nodeId, true)
      return
    }
    this.#confirming.set(nodeId, false)
    const since = performance.now()
    for (const instance of claimants()) this.#mdns?.query(instance.fqdn, 'SRV')
    this.#later(CONFIRM_MS, () => {
      const again = this.#confirming.get(nodeId) === true
      this.#confirming.delete(nodeId)
      const alive = claimants().filter((instance) => instance.lastSeenMs >= since)
      for (const instance of claimants()) {
        if (!alive.includes(instance)) this.#instances.delete(instance.fqdn)
      }
      if (distinct(alive).size >= 2) {
        const hosts = [...new Set([...alive.flatMap((instance) => instance.hosts), ...own])].sort()
        this.#reportConflict(nodeId, hosts, ownId)
      }
      if (again) this.#checkConflict(nodeId)
    })
  }

  #reportConflict(nodeId: string, hosts: string[], ownId: boolean): void {
    const key = `${nodeId}|${hosts.join(',')}`
    if (this.#conflicts.has(key) || this.#state !== 'started') return
    this.#conflicts.add(key)
    this.#conflictIds.add(nodeId)
    const fields = { code: 'TRIB_NODE_ID_CONFLICT', nodeId, hosts }
    if (ownId) this.#log.error(fields, "mDNS: another node announces this node's id")
    else this.#log.warn(fields, 'mDNS: two nodes announce one id')
    this.emit('conflict', { nodeId, hosts, ownId })
  }

  #later(ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      if (this.#state === 'started') run()
    }, ms)
    timer.unref()
    this.#timers.add(timer)
  }

  #warnFull(): void {
    if (this.#warnedFull) return
    this.#warnedFull = true
    this.#log.warn({ limit: MAX_INSTANCES }, 'mDNS: too many instances of _tributary._tcp; ignoring the rest')
  }
}

/** The IPv4 addresses an announcement carries, the one it came from first (that one is on a shared link). */
function ipv4Addresses(service: Service): string[] {
  const all = (service.addresses ?? []).filter((address) => isIPv4(address))
  const from = service.referer?.address
  if (from !== undefined && all.includes(from)) return [from, ...all.filter((address) => address !== from)]
  return all.length > 0 ? all : from !== undefined && isIPv4(from) ? [from] : []
}

/** This host's non-internal IPv4 addresses, as bonjour-service announces them. */
function ownAddresses(only?: string): string[] {
  const addresses = Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .filter((address) => address.family === 'IPv4' && !address.internal)
    .map((address) => address.address)
  return only === undefined ? addresses : addresses.filter((address) => address === only)
}

function ownHosts(options: MdnsDiscoveryOptions): string[] {
  return ownAddresses()
    .map((address) => `${address}:${options.replicationPort}`)
    .sort()
}

function interfaceSignature(): string {
  return ownAddresses().sort().join(',')
}
