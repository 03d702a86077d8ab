// The Discovery seam: where the addresses of other nodes of this cluster come
// from. Discovery only yields addresses (`found`) and reports node ids that two
// hosts claim (`conflict`); whether a peer is alive is the replication
// connection's business (its heartbeats), never an mDNS TTL, which can be
// hours. Implementations: MdnsDiscovery (mdns-discovery.ts) and StaticPeers
// (static-peers.ts) for networks that block multicast.

import type { EventEmitter } from 'node:events'
import { TributaryError } from '../errors.ts'

/** The service type every node advertises and browses: `_tributary._tcp.local`. */
export const SERVICE_TYPE = 'tributary'

export interface FoundPeer {
  readonly cluster: string
  /** null for a static peer: its id is known only once it says hello on the replication connection. */
  readonly nodeId: string | null
  readonly host: string
  /** The peer's replication port. */
  readonly port: number
  /** The replication protocol version it announced; null when not known (static peers). */
  readonly protocol: number | null
  readonly via: 'mdns' | 'static'
}

/** One node id announced from more than one host: a cloned data dir (SD card image). */
export interface NodeIdConflict {
  readonly nodeId: string
  /** `address:port` of every node that announces the id, this node's own included when `ownId`. */
  readonly hosts: readonly string[]
  /** True when the id is this node's own: this node must not replicate. */
  readonly ownId: boolean
}

export interface DiscoveryEvents {
  found: [peer: FoundPeer]
  conflict: [conflict: NodeIdConflict]
}

/**
 * Listeners go on before start(): `found` is emitted once for each new
 * (node id, host, port). start() and close() are idempotent; nothing is
 * emitted after close().
 */
export interface Discovery extends EventEmitter<DiscoveryEvents> {
  start(): Promise<void>
  close(): Promise<void>
  /** Every peer found so far, in the order found. */
  peers(): readonly FoundPeer[]
}

/** The error a node reports, and refuses replication with, when its own id is announced elsewhere. */
export function nodeIdConflictError(conflict: NodeIdConflict): TributaryError {
  return new TributaryError(
    'TRIB_NODE_ID_CONFLICT',
    `node id ${conflict.nodeId} is announced by ${conflict.hosts.join(' and ')}`,
  )
}
