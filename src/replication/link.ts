// One replication connection to a peer, over any Duplex (a TLS socket from
// transport.ts, or an in-process pair in tests). Both sides send `hello`
// first: cluster name, protocol version, node id, incarnation. A hello that
// does not fit (another cluster, another protocol version, this node's own
// id: a cloned data dir) is answered with `refuse` and the link closes; so is
// anything else sent before the hello, and bytes that are no frame, before
// or after it (the refuse names the decoder's reason, and goes out before
// the socket closes; a refuse heard after the hello is kept in `refusal`).
// After the hello, heartbeats every `heartbeatMs` carry liveness and the
// round-trip time, and a link that hears nothing for `timeoutMs` is closed:
// liveness comes from here, never from mDNS. Messages flow both ways; writes wait for the socket to drain, so a
// slow peer slows only its own link.

import { once } from 'node:events'
import type { Duplex } from 'node:stream'
import { type ErrorCode, isErrorCode, isTributaryError, TributaryError } from '../errors.ts'
import {
  encodeMessage,
  FrameDecoder,
  REPLICATION_PROTOCOL_VERSION,
  type ReplicationMessage,
} from './frame-codec.ts'

export interface LinkOptions {
  readonly cluster: string
  readonly nodeId: string
  readonly incarnation: number
  /** Where this node serves replication (told to the peer in the hello). */
  readonly replicationPort: number
  readonly heartbeatMs: number
  /** Silence after which the link is closed (cluster.followerTimeoutMs). */
  readonly timeoutMs: number
  /** How long the peer has to say hello. */
  readonly helloTimeoutMs?: number
  readonly maxFrameBytes?: number
  /** Monotonic ms; replaceable in tests. */
  readonly now?: () => number
}

/** What the peer said about itself. */
export interface PeerHello {
  readonly nodeId: string
  readonly incarnation: number
  readonly replicationPort: number
}

/** Everything after the hello. */
export type LinkMessage = Exclude<ReplicationMessage, { type: 'hello' | 'refuse' | 'heartbeat' }>

const DEFAULT_HELLO_TIMEOUT_MS = 5000
/** How long a refused peer has to take the `refuse` and close its side before the socket is destroyed. */
const REFUSE_LINGER_MS = 1000

export class PeerLink {
  readonly peer: PeerHello
  readonly #socket: Duplex
  readonly #decoder: FrameDecoder
  readonly #options: LinkOptions
  readonly #now: () => number
  readonly #heartbeat: NodeJS.Timeout
  #handler: ((message: LinkMessage) => void) | null = null
  /** Messages that arrived before onMessage() was called, delivered to it then. */
  #early: LinkMessage[] = []
  #lastHeardMs: number
  #lastPeerSentMs = 0
  /** When (this node's clock) the peer's last heartbeat arrived. */
  #lastPeerHeardMs = 0
  #rttMs: number | null = null
  #closedReason: string | null = null
  /** The peer's `refuse`, when that is what closed the link. */
  #refusal: { code: ErrorCode; message: string } | null = null
  readonly #closed: Promise<string>
  #resolveClosed: (reason: string) => void = () => undefined

  private constructor(socket: Duplex, decoder: FrameDecoder, peer: PeerHello, options: LinkOptions) {
    this.#socket = socket
    this.#decoder = decoder
    this.peer = peer
    this.#options = options
    this.#now = options.now ?? (() => performance.now())
    this.#lastHeardMs = this.#now()
    this.#closed = new Promise((resolve) => {
      this.#resolveClosed = resolve
    })
    socket.on('data', (chunk: Buffer) => this.#receive(chunk))
    socket.on('close', () => this.#end('the connection closed'))
    socket.on('error', (err: Error) => this.#end(`connection error: ${err.message}`))
    // Reading the hello through an async iterator left the stream paused.
    socket.resume()
    this.#heartbeat = setInterval(() => this.#beat(), options.heartbeatMs)
    this.#heartbeat.unref()
  }

  /**
   * Says hello and waits for the peer's; rejects (and destroys the socket) with
   * TRIB_PEER_REFUSED, TRIB_NODE_ID_CONFLICT or TRIB_REPLICATION_PROTOCOL.
   */
  static async open(socket: Duplex, options: LinkOptions): Promise<PeerLink> {
    const decoder = new FrameDecoder(
      options.maxFrameBytes === undefined ? {} : { maxFrameBytes: options.maxFrameBytes },
    )
    const hello: ReplicationMessage = {
      type: 'hello',
      protocol: REPLICATION_PROTOCOL_VERSION,
      cluster: options.cluster,
      nodeId: options.nodeId,
      incarnation: options.incarnation,
      replicationPort: options.replicationPort,
    }
    socket.write(encodeMessage(hello))
    /** Why this node refuses the peer (told to it before the socket closes); null: it did not. */
    let refusal: { code: ErrorCode; message: string } | null = null
    try {
      const { peer, rest } = await readHello(
        socket,
        decoder,
        options.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS,
      ).catch((err: unknown) => {
        // Unreadable bytes, or something else than a hello first: the peer hears why.
        if (isTributaryError(err, 'TRIB_REPLICATION_PROTOCOL'))
          refusal = { code: err.code, message: err.message }
        throw err
      })
      refusal = helloProblem(peer, options)
      if (refusal !== null) throw new TributaryError(refusal.code, refusal.message)
      const link = new PeerLink(
        socket,
        decoder,
        { nodeId: peer.nodeId, incarnation: peer.incarnation, replicationPort: peer.replicationPort },
        options,
      )
      for (const message of rest) link.#dispatch(message)
      return link
    } catch (err) {
      if (refusal !== null) endWithRefuse(socket, refusal)
      else if (!socket.destroyed) socket.destroy()
      throw err
    }
  }

  /** Where messages after the hello go; set once. What came before it is handed over at once. */
  onMessage(handler: (message: LinkMessage) => void): void {
    this.#handler = handler
    const early = this.#early
    this.#early = []
    for (const message of early) handler(message)
  }

  /** Round-trip time of the last heartbeat answered, ms. */
  get rttMs(): number | null {
    return this.#rttMs
  }

  /** Null while open; why it closed otherwise. */
  get closedReason(): string | null {
    return this.#closedReason
  }

  /** What the peer refused this link with (after the hello), or null: the dialer backs off and shows it. */
  get refusal(): { readonly code: ErrorCode; readonly message: string } | null {
    return this.#refusal
  }

  /** Resolves with the reason once the link is closed. */
  closed(): Promise<string> {
    return this.#closed
  }

  /** Writes one message; resolves once the socket took it (waits for 'drain' when its buffer is full). */
  async send(message: LinkMessage): Promise<void> {
    if (this.#closedReason !== null)
      throw new TributaryError(
        'TRIB_PEER_UNREACHABLE',
        `link to ${this.peer.nodeId} closed: ${this.#closedReason}`,
      )
    if (this.#socket.write(encodeMessage(message))) return
    await Promise.race([once(this.#socket, 'drain'), this.#closed])
  }

  /** Closes the link; a `refuse` tells the peer why first. Idempotent. */
  close(reason: string, refuse?: { code: ErrorCode; message: string }): void {
    if (this.#closedReason !== null) return
    if (refuse !== undefined) endWithRefuse(this.#socket, refuse)
    else this.#socket.destroy()
    this.#end(reason)
  }

  #end(reason: string): void {
    if (this.#closedReason !== null) return
    this.#closedReason = reason
    clearInterval(this.#heartbeat)
    // A socket ending with a refuse closes once it is sent (endWithRefuse); destroying it now would drop it.
    if (!this.#socket.destroyed && !this.#socket.writableEnded) this.#socket.destroy()
    this.#resolveClosed(reason)
  }

  /**
   * The peer's last sentAtMs, moved on by how long it was held here before
   * this heartbeat: the peer's own clock minus that echo is the network's
   * round trip alone, not up to a heartbeat interval more.
   */
  #echo(now: number): number {
    if (this.#lastPeerSentMs === 0) return 0
    return Math.floor(this.#lastPeerSentMs + (now - this.#lastPeerHeardMs))
  }

  #beat(): void {
    const now = this.#now()
    if (now - this.#lastHeardMs > this.#options.timeoutMs) {
      this.close(`no heartbeat from ${this.peer.nodeId} for ${Math.round(now - this.#lastHeardMs)} ms`)
      return
    }
    // A heartbeat is tiny; when the socket is backed up, liveness is judged by the peer's silence anyway.
    this.#socket.write(
      encodeMessage({ type: 'heartbeat', sentAtMs: Math.floor(now), echoMs: this.#echo(now) }),
    )
  }

  #receive(chunk: Buffer): void {
    let messages: ReplicationMessage[]
    try {
      messages = this.#decoder.push(chunk)
    } catch (err) {
      const message = isTributaryError(err) ? err.message : String(err)
      this.close(`unreadable frame: ${message}`, { code: 'TRIB_REPLICATION_PROTOCOL', message })
      return
    }
    for (const message of messages) this.#dispatch(message)
  }

  #dispatch(message: ReplicationMessage): void {
    if (this.#closedReason !== null) return
    this.#lastHeardMs = this.#now()
    switch (message.type) {
      case 'heartbeat':
        this.#lastPeerSentMs = message.sentAtMs
        this.#lastPeerHeardMs = this.#now()
        if (message.echoMs > 0) this.#rttMs = Math.max(0, this.#now() - message.echoMs)
        return
      case 'refuse':
        this.#refusal = isErrorCode(message.code)
          ? { code: message.code, message: message.message }
          : { code: 'TRIB_PEER_REFUSED', message: `${message.code}: ${message.message}` }
        this.#end(`refused by ${this.peer.nodeId}: ${message.code}: ${message.message}`)
        return
      case 'hello':
        this.close('a second hello', { code: 'TRIB_REPLICATION_PROTOCOL', message: 'hello sent twice' })
        return
      default:
        if (this.#handler === null) this.#early.push(message)
        else this.#handler(message)
    }
  }
}

/**
 * Sends `refuse` and ends the socket: end() lets the refuse go out first,
 * where destroy() would drop it while it is still queued (the peer would see
 * a bare close). A peer that never closes its side is cut after REFUSE_LINGER_MS.
 */
function endWithRefuse(socket: Duplex, refuse: { code: ErrorCode; message: string }): void {
  if (socket.destroyed) return
  socket.end(encodeMessage({ type: 'refuse', ...refuse }))
  setTimeout(() => socket.destroy(), REFUSE_LINGER_MS).unref()
}

/** Reads until the first message; it must be the peer's hello (a refuse is reported as such). */
async function readHello(
  socket: Duplex,
  decoder: FrameDecoder,
  timeoutMs: number,
): Promise<{ peer: Extract<ReplicationMessage, { type: 'hello' }>; rest: ReplicationMessage[] }> {
  const abort = new AbortController()
  const timer = setTimeout(() => abort.abort(), timeoutMs)
  try {
    for await (const chunk of socket.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      const [first, ...rest] = decoder.push(chunk)
      if (first === undefined) continue
      if (first.type === 'refuse')
        throw new TributaryError('TRIB_PEER_REFUSED', `${first.code}: ${first.message}`)
      if (first.type !== 'hello')
        throw new TributaryError('TRIB_REPLICATION_PROTOCOL', `expected hello, got ${first.type}`)
      return { peer: first, rest }
    }
    throw new TributaryError('TRIB_PEER_REFUSED', 'the peer closed the connection before its hello')
  } finally {
    clearTimeout(timer)
    if (abort.signal.aborted) socket.destroy(new Error(`no hello within ${timeoutMs} ms`))
  }
}

function helloProblem(
  peer: Extract<ReplicationMessage, { type: 'hello' }>,
  options: LinkOptions,
): { code: ErrorCode; message: string } | null {
  if (peer.protocol !== REPLICATION_PROTOCOL_VERSION)
    return {
      code: 'TRIB_PEER_REFUSED',
      message: `replication protocol ${peer.protocol} from ${peer.nodeId}; this node speaks ${REPLICATION_PROTOCOL_VERSION}: run the same tributary version on every node`,
    }
  if (peer.cluster !== options.cluster)
    return {
      code: 'TRIB_PEER_REFUSED',
      message: `${peer.nodeId} is in cluster "${peer.cluster}", this node in "${options.cluster}"`,
    }
  if (peer.nodeId === options.nodeId)
    return { code: 'TRIB_NODE_ID_CONFLICT', message: `a peer announces this node's own id ${peer.nodeId}` }
  return null
}
