// Static peers (`cluster.peers`, host:port): discovery for networks that block
// multicast. Each configured address is `found` once at start, with no node id
// (the peer names itself when it says hello on the replication connection) and
// this node's cluster name (the hello checks that too).

import { EventEmitter } from 'node:events'
import { isIPv6 } from 'node:net'
import { TributaryError } from '../errors.ts'
import type { Discovery, DiscoveryEvents, FoundPeer } from './discovery.ts'

export interface PeerAddress {
  /** A host name or an IP address (IPv6 without brackets). */
  readonly host: string
  readonly port: number
}

// A DNS name or an IPv4 address: letters, digits, hyphens and dots, no empty label.
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?$/
const PORT = /^[0-9]{1,5}$/

/** Parses `host:port`, `1.2.3.4:7625` or `[::1]:7625`; throws TRIB_CONFIG_INVALID naming what is wrong. */
export function parsePeer(text: string): PeerAddress {
  const bad = (why: string) =>
    new TributaryError('TRIB_CONFIG_INVALID', `cluster.peers: ${JSON.stringify(text)} ${why}`)
  let host: string
  let port: string
  if (text.startsWith('[')) {
    const close = text.indexOf(']')
    if (close === -1) throw bad('opens [ for an IPv6 address but never closes it')
    host = text.slice(1, close)
    if (!isIPv6(host)) throw bad('has no valid IPv6 address between [ and ]')
    if (text[close + 1] !== ':') throw bad('needs :port after the ] (for example [::1]:7625)')
    port = text.slice(close + 2)
  } else {
    const colon = text.lastIndexOf(':')
    if (colon === -1) throw bad('needs a port (host:port, for example node-2.local:7625)')
    host = text.slice(0, colon)
    port = text.slice(colon + 1)
    if (host.includes(':')) throw bad('looks like an IPv6 address: write it in brackets, [addr]:port')
    if (!HOST_NAME.test(host)) throw bad('needs a host name or IPv4 address before the :port')
  }
  const number = Number(port)
  if (!PORT.test(port) || number < 1 || number > 65535) throw bad('needs a port from 1 to 65535')
  return { host, port: number }
}

export interface StaticPeersOptions {
  /** This node's cluster name: a static peer is assumed to share it until its hello says otherwise. */
  readonly cluster: string
  /** `host:port` each; checked here, so a bad entry fails at start. */
  readonly peers: readonly string[]
}

export class StaticPeers extends EventEmitter<DiscoveryEvents> implements Discovery {
  readonly #peers: readonly FoundPeer[]
  #started = false
  #closed = false

  constructor(options: StaticPeersOptions) {
    super()
    const seen = new Set<string>()
    const peers: FoundPeer[] = []
    for (const text of options.peers) {
      const { host, port } = parsePeer(text)
      const key = `${host}|${port}`
      if (seen.has(key)) continue
      seen.add(key)
      peers.push({ cluster: options.cluster, nodeId: null, host, port, protocol: null, via: 'static' })
    }
    this.#peers = peers
  }

  async start(): Promise<void> {
    if (this.#started || this.#closed) return
    this.#started = true
    for (const peer of this.#peers) this.emit('found', peer)
  }

  async close(): Promise<void> {
    this.#closed = true
  }

  peers(): readonly FoundPeer[] {
    return this.#started ? this.#peers : []
  }
}
