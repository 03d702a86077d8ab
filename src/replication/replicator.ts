// A node's replication: it serves its own partitions to every peer that
// dials it (an OriginServer per inbound link) and copies every peer's
// partitions by dialing it (a Follower per outbound link). So each pair of
// nodes has two links, one per direction of copying, and a link never
// changes role.
//
// The origin decides who copies what: a stream's `replicas` counts the nodes
// that hold each partition (the origin included), and each partition gets
// `replicas - 1` followers (assignment.ts: sticky, then rendezvous hashing).
// A follower's catalog lists only the partitions assigned to it, so it
// fetches only those; one that loses a partition keeps its copy for
// followerExpireMs (follower.ts).
//
// Addresses come from outside (`addPeer`: the composition root hands over
// what discovery found, mDNS or static); a peer is dialed until the node
// closes, with jittered exponential backoff between attempts, and a link
// lost (heartbeats, a reset) is dialed again the same way. A second address
// of a node already followed is dropped. When this node's own id is found
// announced elsewhere (`refuseAll`: a cloned data dir), it stops replicating
// altogether until restarted. Every refusal (wrong secret, cluster, protocol,
// node id) is logged with the peer's address and counted. Two nodes with
// one id following this node from two addresses at once (a cloned data dir
// where mDNS cannot see it): see follower-ids.ts.
//
// `whenReplicated` is what `ack: replicated` waits on (replicated-acks.ts):
// a record counts as copied by a follower once that follower's `synced`
// report (sent after its copy is fdatasync'd) passes it, and only while the
// follower's link is up; a follower whose link drops stops counting until
// it reports again.
//
// Tail recovery (`recoverTail`, tail-recovery.ts): at start, before this
// node writes a new record, every link it dials first fetches its holes and
// its own partitions back from that peer's copies, until the node's known
// followers have all answered or the window ends. Until then, a follower holding more
// of this node's log than it has is told to wait, not that it diverged (its
// copy may be the tail being fetched back).
//
// Each follower's synced report is also a retention floor on this node's
// partition (holder `follower:<id>`): retention keeps what a follower has
// not copied yet, for as long as it is connected and then
// `followerExpireMs` more (a node away longer than that starts its copy at
// the log start again). Floors live in memory; after a restart, each
// follower the node had (`knownFollowers`, from incarnation.json) holds
// each partition assigned to it from the partition's first offset, until
// its first report says how far it is, or followerExpireMs passes, or the
// partition is given to another follower: a retention run before it
// reconnects deletes nothing it had not copied.
//
// Over 400 lines: it owns the links (dialing, serving, refusals), the
// follower positions and the assignment's bookkeeping that acks, retention
// and status all read; the protocol's pieces are in the modules it names.

import { type ErrorCode, isTributaryError, type TributaryError } from '../errors.ts'
import { Backoff, sleep } from '../lib/backoff.ts'
import { readBatchHeader } from '../log/batch-codec.ts'
import type { CorruptBatch, PartitionRef, ReplicaLog } from '../log/log-store.ts'
import type { Logger } from '../observability/logger.ts'
import { PartitionAssignment } from './assignment.ts'
import { Follower } from './follower.ts'
import { FollowerIds, type InboundConflict, ipOf } from './follower-ids.ts'
import { type LinkOptions, PeerLink } from './link.ts'
import type { SyncedEntry } from './messages.ts'
import { CATALOG_CHECK_MS, OriginServer } from './origin-server.ts'
import { type RecordAt, ReplicatedAcks } from './replicated-acks.ts'
import { TailRecovery, type TailRecoveryReport } from './tail-recovery.ts'
import type { PeerConnection, PeerTransport } from './transport.ts'

/** Between attempts to dial a peer that is not there (or refused). */
const DIAL_BACKOFF = { initialMs: 200, maxMs: 10_000 }

export interface ReplicatorOptions {
  /** The link's incarnation is the log's current one, read at each link's hello. */
  readonly link: Omit<LinkOptions, 'now' | 'incarnation'>
  /** How long a follower that left still holds this node's retention back. */
  readonly followerExpireMs: number
  /** The followers this node had before it started (incarnation.json): they hold retention back from the start. */
  readonly knownFollowers?: readonly string[]
  readonly transport: PeerTransport
  readonly listen: { readonly host: string; readonly port: number }
  readonly log: ReplicaLog
  readonly logger: Logger
  /** A link refused or dropped, with why (metrics). */
  readonly onRefused?: (reason: string) => void
  readonly onDiverged?: (ref: PartitionRef) => void
  /** This node's batches quarantined at start: tail recovery fetches them back from a peer's copy. */
  readonly holes?: readonly CorruptBatch[]
  /** A peer started following this node (tail recovery waits for known followers at the next start). */
  readonly onFollower?: (nodeId: string) => void
  /** A stream's `replicas`: nodes, this one included, that hold each of its partitions. */
  readonly replicasOf: (stream: string) => number
  /** How long an `ack: replicated` waited for its copies (metrics). */
  readonly onAckWait?: (seconds: number, copied: boolean) => void
  /** Seconds from ingest here to a follower's synced report of the oldest record it newly covers (metrics). */
  readonly onCopyLatency?: (seconds: number) => void
}

/** One follower of one of this node's partitions, as the origin sees it. */
export interface FollowerPosition {
  readonly follower: string
  /** Its link is up. */
  readonly connected: boolean
  /** Connected, and its copy holds every record durable here, or lacks none older than followerTimeoutMs. */
  readonly inSync: boolean
  readonly syncedNext: number
  readonly lagRecords: number
  /** Estimated from the partition's bytes per record. */
  readonly lagBytes: number
  /** Age of the oldest record durable here that its copy lacks (this node's clock stamped it). */
  readonly lagSeconds: number
}

/** Which followers copy one of this node's partitions, and how far they are. */
export interface PartitionFollowers {
  readonly stream: string
  readonly partition: number
  readonly replicas: number
  readonly followers: readonly FollowerPosition[]
}

export type { InboundConflict } from './follower-ids.ts'

export interface PeerStatus {
  readonly nodeId: string | null
  readonly address: string
  readonly via: 'mdns' | 'static'
  readonly state: 'connecting' | 'connected' | 'refused' | 'stopped'
  /** The live link's last heartbeat round trip; null while no link is up (an old link's figure says nothing now). */
  readonly rttMs: number | null
  readonly lastError: string | null
  /** This node's copies of the peer's partitions. */
  readonly copies: ReadonlyArray<{
    readonly stream: string
    readonly partition: number
    readonly nextOffset: number
    /** The origin's durable end as its last answer said (while the link is down: the last one known). */
    readonly originDurableNext: number
    /** Records the origin holds and the copy not: null while the link is down (the origin may have written more). */
    readonly lagRecords: number | null
  }>
  /** How far the peer's copies of this node's partitions are fdatasync'd (its `synced` reports). */
  readonly synced: ReadonlyArray<{
    readonly stream: string
    readonly partition: number
    readonly syncedNext: number
  }>
}

interface Dialed {
  readonly address: string
  readonly host: string
  readonly port: number
  readonly via: 'mdns' | 'static'
  nodeId: string | null
  state: PeerStatus['state']
  link: PeerLink | null
  follower: Follower | null
  lastError: string | null
}

export class Replicator {
  readonly #o: ReplicatorOptions
  readonly #abort = new AbortController()
  readonly #dialed = new Map<string, Dialed>()
  /** Each link that follows this node, with the peer's IP address. */
  readonly #inbound = new Map<PeerLink, string>()
  readonly #followerIds: FollowerIds
  /** Per follower node id, per `stream/partition` of this node: its synced report. */
  readonly #synced = new Map<string, Map<string, SyncedEntry>>()
  readonly #loops: Promise<void>[] = []
  /** Per follower that left: the timer that ends its retention floors. */
  readonly #expiring = new Map<string, NodeJS.Timeout>()
  /** Copies of other origins no longer assigned to this node, and since when (Follower's expiry). */
  readonly #unassigned = new Map<string, number>()
  /** What `ack: replicated` waits on: drained by the synced reports. */
  readonly #acks: ReplicatedAcks
  #refusedAll: TributaryError | null = null
  /** Until recoverTail() ends: links dialed mend this node's holes and fetch its own tail first. */
  readonly #recovery: TailRecovery
  #address: { host: string; port: number } | null = null
  readonly #assignment: PartitionAssignment
  readonly #servers = new Set<OriginServer>()
  /** Re-reads the assignment (followers away too long are replaced) and tells the followers. */
  readonly #rebalance: NodeJS.Timeout

  constructor(options: ReplicatorOptions) {
    this.#o = options
    this.#assignment = new PartitionAssignment({
      awayMs: options.link.timeoutMs,
      // A follower that lost a partition no longer holds this node's retention of it back.
      onReleased: (follower, p) =>
        options.log.removeRetentionFloor(floorHolder(follower), { ...p, origin: options.log.origin }),
    })
    this.#followerIds = new FollowerIds({
      nodeId: options.link.nodeId,
      logger: options.logger,
      onRefused: (code) => options.onRefused?.(code),
    })
    this.#acks = new ReplicatedAcks(
      (stream, partition, offset) => this.#copies(stream, partition, offset),
      options.onAckWait,
    )
    this.#recovery = new TailRecovery(options.log, options.logger, options.holes ?? [])
    this.#rebalance = setInterval(() => this.#refreshCatalogs(), CATALOG_CHECK_MS)
    this.#rebalance.unref()
    this.#holdForKnownFollowers(options.knownFollowers ?? [])
  }

  /** Before any retention run: each known follower holds what is assigned to it, from the first offset. */
  #holdForKnownFollowers(known: readonly string[]): void {
    if (known.length === 0) return
    const log = this.#o.log
    this.#assignment.restore(known)
    for (const p of log.localPartitions())
      for (const follower of this.#followersOf(p))
        log.setRetentionFloor(floorHolder(follower), p, p.firstOffset)
    for (const follower of known) this.#expireLater(follower)
    this.#o.logger.info(
      { followers: known },
      'retention held for the followers this node had until they report',
    )
  }

  /** In followerExpireMs, unless `follower` follows again first: its floors go (see the header). */
  #expireLater(follower: string): void {
    const expire = setTimeout(() => {
      this.#expiring.delete(follower)
      const log = this.#o.log
      for (const p of log.localPartitions()) log.removeRetentionFloor(floorHolder(follower), p)
      this.#o.logger.info({ peer: follower }, 'follower away too long: it no longer holds retention back')
    }, this.#o.followerExpireMs)
    expire.unref()
    this.#expiring.set(follower, expire)
  }

  /** Listens for peers; returns the bound address (port 0 picks a free one). */
  async start(): Promise<{ host: string; port: number }> {
    this.#address ??= await this.#o.transport.listen(this.#o.listen.host, this.#o.listen.port, (conn) => {
      // Each inbound link is served until it closes; a failed hello is logged in #serve.
      void this.#serve(conn)
    })
    return this.#address
  }

  /**
   * Waits until each of `known` (the followers this node had) answered tail
   * recovery, or `windowMs`; peers that connect meanwhile are asked too.
   * After it the node writes new records (nothing more is fetched back).
   */
  recoverTail(known: readonly string[], windowMs: number): Promise<TailRecoveryReport> {
    return this.#recovery.finish(known, windowMs, this.#abort.signal)
  }

  /** A peer address found by discovery; dialed from now on (once per address). */
  addPeer(peer: { host: string; port: number; via: 'mdns' | 'static'; nodeId: string | null }): void {
    if (this.#refusedAll !== null || this.#abort.signal.aborted || peer.nodeId === this.#o.link.nodeId) return
    const address = peer.host.includes(':') ? `[${peer.host}]:${peer.port}` : `${peer.host}:${peer.port}`
    if (this.#dialed.has(address)) return
    // A node found again at another address (mDNS beside a static peer) while it is followed: nothing to dial.
    if (peer.nodeId !== null && this.#following(peer.nodeId, null)) return
    const dialed: Dialed = {
      address,
      host: peer.host,
      port: peer.port,
      via: peer.via,
      nodeId: peer.nodeId,
      state: 'connecting',
      link: null,
      follower: null,
      lastError: null,
    }
    this.#dialed.set(address, dialed)
    this.#loops.push(this.#dialLoop(dialed))
  }

  /** This node's id is announced elsewhere: stop replicating, with the error saying how to fix it. */
  refuseAll(error: TributaryError): void {
    if (this.#refusedAll !== null) return
    this.#refusedAll = error
    this.#o.logger.error({ code: error.code, err: error.message }, 'replication refused')
    for (const link of this.#inbound.keys())
      link.close(error.message, { code: error.code, message: error.message })
    for (const dialed of this.#dialed.values()) {
      dialed.state = 'refused'
      dialed.lastError = error.message
      dialed.link?.close(error.message, { code: error.code, message: error.message })
    }
  }

  /** Why replication is refused (a node id conflict), or null. */
  get refused(): TributaryError | null {
    return this.#refusedAll
  }

  /** Node ids refused because they follow this node from two addresses at once (while the older link lives). */
  conflicts(): InboundConflict[] {
    return this.#followerIds.conflicts()
  }

  status(): PeerStatus[] {
    // An address dropped because the same node is followed at another one is not a peer of its own.
    return [...this.#dialed.values()]
      .filter((d) => d.state !== 'stopped')
      .map((d) => {
        const nodeId = d.link?.peer.nodeId ?? d.nodeId
        const live = d.link !== null && d.link.closedReason === null
        return {
          nodeId,
          address: d.address,
          via: d.via,
          state: d.state,
          rttMs: live ? (d.link?.rttMs ?? null) : null,
          lastError: d.lastError,
          copies: (d.follower?.positions() ?? []).map((p) => ({
            stream: p.ref.stream,
            partition: p.ref.partition,
            nextOffset: p.nextOffset,
            originDurableNext: p.originDurableNext,
            lagRecords: live ? Math.max(0, p.originDurableNext - p.nextOffset) : null,
          })),
          synced: [...(this.#synced.get(nodeId ?? '')?.values() ?? [])].map((s) => ({
            stream: s.stream,
            partition: s.partition,
            syncedNext: s.syncedNext,
          })),
        }
      })
  }

  /** Stops dialing, closes every link and the listener. Idempotent. */
  async close(): Promise<void> {
    this.#abort.abort()
    clearInterval(this.#rebalance)
    this.#acks.close()
    for (const timer of this.#expiring.values()) clearTimeout(timer)
    for (const link of this.#inbound.keys()) link.close('node shutting down')
    for (const dialed of this.#dialed.values()) dialed.link?.close('node shutting down')
    await this.#o.transport.close()
    await Promise.all(this.#loops)
  }

  async #serve(conn: PeerConnection): Promise<void> {
    let link: PeerLink
    try {
      link = await PeerLink.open(conn.socket, this.#linkOptions())
    } catch (err) {
      this.#refusal(`${conn.remoteAddress}:${conn.remotePort}`, err)
      return
    }
    if (this.#refusedAll !== null) {
      const { code, message } = this.#refusedAll
      link.close(message, { code, message })
      return
    }
    const address = ipOf(conn.remoteAddress)
    if (this.#followerIds.refused(this.#inbound, link, address)) return
    this.#inbound.set(link, address)
    const follower = link.peer.nodeId
    clearTimeout(this.#expiring.get(follower))
    this.#expiring.delete(follower)
    this.#o.onFollower?.(follower)
    this.#assignment.linkUp(follower)
    const server = new OriginServer({
      link,
      log: this.#o.log,
      recovering: () => this.#recovery.open,
      logger: this.#o.logger,
      onSynced: (follower, entries) => this.#noteSynced(follower, entries),
      assigned: (p) => this.#assigned(follower, p),
    })
    this.#servers.add(server)
    // Places it may take (partitions short of followers) show in the others' catalogs too.
    this.#refreshCatalogs()
    this.#o.logger.info({ peer: link.peer.nodeId, address: conn.remoteAddress }, 'peer follows this node')
    const reason = await link.closed()
    server.close()
    this.#servers.delete(server)
    this.#inbound.delete(link)
    // Its place is free: a node with its id from another address is accepted at its next dial.
    this.#followerIds.released(link)
    // It keeps its partitions followerTimeoutMs more; then the rebalance timer gives them to others.
    this.#assignment.linkDown(follower)
    // Its copies no longer count for acks until it follows again and reports;
    // its floors hold retention back followerExpireMs more.
    if (![...this.#inbound.keys()].some((other) => other.peer.nodeId === follower)) {
      this.#synced.delete(follower)
      this.#expireLater(follower)
    }
    this.#o.logger.info({ peer: link.peer.nodeId, reason }, 'peer stopped following this node')
  }

  #noteSynced(follower: string, entries: readonly SyncedEntry[]): void {
    let positions = this.#synced.get(follower)
    if (positions === undefined) {
      positions = new Map()
      this.#synced.set(follower, positions)
    }
    const log = this.#o.log
    for (const e of entries) {
      const key = `${e.stream}\u0000${e.partition}`
      const before = positions.get(key)?.syncedNext
      positions.set(key, e)
      if (e.origin !== log.origin) continue
      // A follower that lost the partition (a fetch under way when its catalog changed) holds nothing back.
      if (this.#assigned(follower, e)) log.setRetentionFloor(floorHolder(follower), e, e.syncedNext)
      if (before !== undefined && e.syncedNext > before) this.#copyLatency(e, before)
      this.#acks.reported(e.stream, e.partition)
    }
  }

  /** Reports the age of the oldest record a synced report newly covers (`from` is where the copy ended before). */
  #copyLatency(ref: PartitionRef, from: number): void {
    if (this.#o.onCopyLatency === undefined) return
    const [first] = this.#o.log.readBatches(ref, from, 1)
    if (first === undefined || first.baseOffset !== from) return
    this.#o.onCopyLatency(Math.max(0, (Date.now() - readBatchHeader(first.bytes).firstTimestampMs) / 1000))
  }

  /** True when `follower` is one of the followers the origin picked for this node's partition `p`. */
  #assigned(follower: string, p: { readonly stream: string; readonly partition: number }): boolean {
    return this.#followersOf(p).includes(follower)
  }

  #followersOf(p: { readonly stream: string; readonly partition: number }): readonly string[] {
    const replicas = this.#o.replicasOf(p.stream)
    return this.#assignment.followersOf({ stream: p.stream, partition: p.partition, replicas })
  }

  /** Each follower's catalog is compared with the assignment, and sent when it changed. */
  #refreshCatalogs(): void {
    for (const server of this.#servers) server.refreshCatalog()
  }

  /**
   * Per partition of this node: its assigned followers, whether each is in
   * sync, and how far behind (records, bytes, seconds). A follower is in
   * sync while its link is up and its copy lacks no record older than
   * cluster.followerTimeoutMs (Kafka's replica.lag.time.max.ms).
   */
  followers(nowMs = Date.now()): PartitionFollowers[] {
    const log = this.#o.log
    return log.localPartitions().map((p) => {
      const durable = log.durableNext(p)
      const key = `${p.stream}\u0000${p.partition}`
      const stored = p.nextOffset - p.firstOffset
      const followers = this.#followersOf(p).map((follower): FollowerPosition => {
        const connected = this.#assignment.connected(follower)
        const syncedNext = this.#synced.get(follower)?.get(key)?.syncedNext ?? p.firstOffset
        const from = Math.max(syncedNext, p.firstOffset)
        const lagRecords = Math.max(0, durable - from)
        const lagBytes = stored > 0 ? Math.round((p.bytes * lagRecords) / stored) : 0
        let lagSeconds = 0
        if (lagRecords > 0) {
          const [oldest] = log.readBatches(p, from, 1)
          if (oldest !== undefined)
            lagSeconds = Math.max(0, (nowMs - readBatchHeader(oldest.bytes).firstTimestampMs) / 1000)
        }
        const inSync = connected && lagSeconds * 1000 <= this.#o.link.timeoutMs
        return { follower, connected, inSync, syncedNext, lagRecords, lagBytes, lagSeconds }
      })
      return { stream: p.stream, partition: p.partition, replicas: this.#o.replicasOf(p.stream), followers }
    })
  }

  /** Followers with a live link whose copy of this node's partition holds `offset` fdatasync'd. */
  #copies(stream: string, partition: number, offset: number): number {
    let copies = 0
    const key = `${stream}\u0000${partition}`
    for (const positions of this.#synced.values())
      if ((positions.get(key)?.syncedNext ?? 0) > offset) copies++
    return copies
  }

  /**
   * A partition's `replicatedNext` (one definition for acks, status and
   * metrics): the next offset after the highest record held fdatasync'd by
   * `minInsync` nodes, this one included, counting followers with a live
   * link only. With fewer nodes than `minInsync`, nothing counts as replicated
   * yet: the partition's first offset.
   */
  replicatedNext(ref: PartitionRef, minInsync: number): number {
    const log = this.#o.log
    const key = `${ref.stream}\u0000${ref.partition}`
    const held = [log.durableNext(ref)]
    for (const positions of this.#synced.values()) held.push(positions.get(key)?.syncedNext ?? 0)
    held.sort((x, y) => y - x)
    return held[minInsync - 1] ?? log.partition(ref)?.firstOffset ?? 0
  }

  /** True once `minInsync - 1` followers hold every record fdatasync'd; false after `timeoutMs`. */
  whenReplicated(records: readonly RecordAt[], minInsync: number, timeoutMs: number): Promise<boolean> {
    return this.#acks.wait(records, minInsync, timeoutMs)
  }

  async #dialLoop(dialed: Dialed): Promise<void> {
    const signal = this.#abort.signal
    const backoff = new Backoff(DIAL_BACKOFF)
    while (!signal.aborted && this.#refusedAll === null) {
      dialed.state = 'connecting'
      try {
        const conn = await this.#o.transport.connect(dialed.host, dialed.port, signal)
        const link = await PeerLink.open(conn.socket, this.#linkOptions())
        if (this.#following(link.peer.nodeId, dialed)) {
          link.close(`${link.peer.nodeId} is already followed at another address`)
          dialed.state = 'stopped'
          dialed.lastError = null
          return
        }
        await this.#follow(dialed, link)
        if (link.refusal === null) backoff.reset()
        else {
          // Refused after the hello (a node id conflict at the peer): shown, counted, dialed again after a longer wait.
          dialed.state = 'refused'
          this.#refusal(dialed.address, new RefusedByPeer(link.refusal.code, link.refusal.message))
        }
      } catch (err) {
        dialed.state =
          isTributaryError(err, 'TRIB_NODE_ID_CONFLICT') || isTributaryError(err, 'TRIB_PEER_REFUSED')
            ? 'refused'
            : 'connecting'
        this.#refusal(dialed.address, err)
      }
      await sleep(backoff.next(), signal)
    }
  }

  /** True when another address already follows `nodeId`. */
  #following(nodeId: string, except: Dialed | null): boolean {
    for (const d of this.#dialed.values())
      if (d !== except && d.link?.closedReason === null && d.link.peer.nodeId === nodeId) return true
    return false
  }

  async #follow(dialed: Dialed, link: PeerLink): Promise<void> {
    dialed.link = link
    dialed.nodeId = link.peer.nodeId
    dialed.state = 'connected'
    dialed.lastError = null
    const follower = new Follower({
      link,
      log: this.#o.log,
      logger: this.#o.logger,
      onDiverged: (ref) => this.#o.onDiverged?.(ref),
      expireMs: this.#o.followerExpireMs,
      unassigned: this.#unassigned,
    })
    dialed.follower = follower
    this.#o.logger.info({ peer: link.peer.nodeId, address: dialed.address }, 'following peer')
    await this.#recovery.from({ peer: link.peer.nodeId, request: follower.request.bind(follower) })
    await follower.run()
    const reason = await link.closed()
    dialed.lastError = reason
    // Until the next link is up (after the backoff), the peer is not connected.
    if (dialed.state === 'connected') dialed.state = 'connecting'
    if (!this.#abort.signal.aborted && link.refusal === null)
      this.#o.logger.warn({ peer: link.peer.nodeId, address: dialed.address, reason }, 'link to peer lost')
  }

  #linkOptions(): LinkOptions {
    return { ...this.#o.link, incarnation: this.#o.log.incarnation }
  }

  #refusal(address: string, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err)
    if (this.#abort.signal.aborted) return
    const code = isTributaryError(err) || err instanceof RefusedByPeer ? err.code : 'TRIB_PEER_UNREACHABLE'
    const dialed = this.#dialed.get(address)
    if (dialed !== undefined) dialed.lastError = message
    this.#o.onRefused?.(code)
    // Unreachable peers are retried quietly; a refusal says something is misconfigured.
    if (code === 'TRIB_PEER_UNREACHABLE')
      this.#o.logger.debug({ address, err: message }, 'peer not reachable')
    else this.#o.logger.warn({ code, address, err: message }, 'replication link refused')
  }
}

/** A peer's `refuse`, its message as the peer wrote it (a TributaryError would prefix the catalog text again). */
class RefusedByPeer extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string) {
    super(message)
    this.code = code
  }
}

function floorHolder(follower: string): string {
  return `follower:${follower}`
}
