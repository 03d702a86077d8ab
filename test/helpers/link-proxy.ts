// A userspace TCP proxy on 127.0.0.1 that stands for a bad network link
// between two nodes (this kernel has no sch_netem, so `tc netem` is not an
// option). Every accepted connection is paired with one to the target, and
// bytes flow both ways through it, with faults set at run time:
// - delay with jitter per chunk (`delayMs` +- `jitterMs`, uniform), keeping
//   the byte order of each direction as TCP does: a chunk never overtakes
//   the one before it;
// - cuts: each chunk may reset both sides of its connection (`cutChance`),
//   which is how heavy loss shows on a TCP link (the kernel retransmits, so
//   loss is stalls and then resets), and `cutAll()` resets every connection;
// - a black hole: nothing passes in either direction and new connections
//   are accepted but not connected on; what was sent meanwhile is held and
//   delivered at heal time to the connections still alive, as TCP's
//   retransmits would.
// Random choices come from a seeded generator, so a failing run can be
// replayed with its seed. What is held per direction is bounded: past
// MAX_HELD_BYTES the sending socket is paused until the queue drains.

import { createServer, type Server, Socket } from 'node:net'

/** Held bytes per direction past which the sender is paused (backpressure, not loss). */
const MAX_HELD_BYTES = 4 * 1024 * 1024

export interface LinkFaults {
  /** Mean delay added to each chunk, ms. */
  readonly delayMs: number
  /** The delay is uniform in delayMs +- jitterMs. */
  readonly jitterMs: number
  /** Chance per chunk (0 to 1) that its connection is reset in both directions. */
  readonly cutChance: number
}

export const HEALTHY: LinkFaults = { delayMs: 0, jitterMs: 0, cutChance: 0 }

export interface ProxyStats {
  readonly connections: number
  readonly cuts: number
  readonly chunks: number
  readonly bytes: number
}

/** mulberry32: a small seeded generator (uniform in [0, 1)). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** One direction of one connection: chunks held until their release time, in order. */
class Direction {
  readonly #from: Socket
  readonly #to: Socket
  readonly #proxy: LinkProxy
  readonly #cut: () => void
  readonly #queue: Array<{ chunk: Buffer; releaseAt: number }> = []
  #held = 0
  #lastRelease = 0
  #timer: NodeJS.Timeout | null = null
  #ended = false

  constructor(from: Socket, to: Socket, proxy: LinkProxy, cut: () => void) {
    this.#from = from
    this.#to = to
    this.#proxy = proxy
    this.#cut = cut
    from.on('data', (chunk: Buffer) => this.#take(chunk))
    from.on('end', () => {
      this.#ended = true
      this.#pump()
    })
  }

  #take(chunk: Buffer): void {
    const proxy = this.#proxy
    if (proxy.decideCut(chunk.length)) {
      this.#cut()
      return
    }
    const faults = proxy.faults
    const delay = Math.max(0, faults.delayMs + (proxy.random() * 2 - 1) * faults.jitterMs)
    // TCP keeps each direction's byte order: no chunk leaves before the one ahead of it.
    this.#lastRelease = Math.max(this.#lastRelease, performance.now() + delay)
    this.#queue.push({ chunk, releaseAt: this.#lastRelease })
    this.#held += chunk.length
    if (this.#held > MAX_HELD_BYTES) this.#from.pause()
    this.#pump()
  }

  /** Delivers what is due; sets a timer for the next chunk. Called again at heal time. */
  pump(): void {
    this.#pump()
  }

  #pump(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer)
      this.#timer = null
    }
    if (this.#to.destroyed || this.#proxy.blackHoled) return
    const now = performance.now()
    while (this.#queue.length > 0) {
      const next = this.#queue[0]
      if (next === undefined || next.releaseAt > now) break
      this.#queue.shift()
      this.#held -= next.chunk.length
      this.#to.write(next.chunk)
    }
    if (this.#held <= MAX_HELD_BYTES && this.#from.isPaused()) this.#from.resume()
    const next = this.#queue[0]
    if (next !== undefined) {
      this.#timer = setTimeout(() => this.#pump(), Math.max(1, next.releaseAt - now))
      return
    }
    if (this.#ended) this.#to.end()
  }

  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#queue.length = 0
    this.#held = 0
  }
}

class Connection {
  readonly #client: Socket
  readonly #upstream: Socket
  readonly #directions: Direction[]
  #closed = false

  constructor(client: Socket, upstream: Socket, proxy: LinkProxy, onClose: () => void) {
    this.#client = client
    this.#upstream = upstream
    const cut = (): void => this.reset()
    this.#directions = [
      new Direction(client, upstream, proxy, cut),
      new Direction(upstream, client, proxy, cut),
    ]
    const close = (): void => {
      if (this.#closed) return
      this.#closed = true
      for (const d of this.#directions) d.stop()
      client.destroy()
      upstream.destroy()
      onClose()
    }
    // Either side gone (reset, error, closed): the other side sees the link go too.
    for (const socket of [client, upstream]) {
      socket.on('error', close)
      socket.on('close', close)
    }
  }

  /** Held until the target takes the connection (after a black hole, at heal time). */
  connect(target: { host: string; port: number }): void {
    this.#upstream.connect(target.port, target.host)
  }

  heal(): void {
    for (const d of this.#directions) d.pump()
  }

  /** A reset, as a lost link ends: both sides get RST, not FIN. */
  reset(): void {
    if (this.#closed) return
    for (const socket of [this.#client, this.#upstream]) {
      if (socket.destroyed) continue
      if (socket.readyState === 'open') socket.resetAndDestroy()
      else socket.destroy()
    }
  }
}

export class LinkProxy {
  readonly #server: Server
  readonly #target: { host: string; port: number }
  readonly #connections = new Set<Connection>()
  /** Accepted during a black hole: connected to the target at heal time. */
  readonly #waiting = new Set<Connection>()
  readonly random: () => number
  faults: LinkFaults = HEALTHY
  #blackHoled = false
  #stats = { connections: 0, cuts: 0, chunks: 0, bytes: 0 }

  private constructor(server: Server, target: { host: string; port: number }, seed: number) {
    this.#server = server
    this.#target = target
    this.random = seededRandom(seed)
  }

  /** Listens on 127.0.0.1 (a free port) and forwards to `target` (an address on 127.0.0.1). */
  static async start(target: { host: string; port: number }, seed: number): Promise<LinkProxy> {
    if (target.host !== '127.0.0.1') throw new Error('the link proxy forwards to 127.0.0.1 only')
    const server = createServer({ noDelay: true })
    const proxy = new LinkProxy(server, target, seed)
    server.on('connection', (client) => proxy.#accept(client))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve())
    })
    return proxy
  }

  get port(): number {
    const address = this.#server.address()
    if (address === null || typeof address === 'string') throw new Error('the proxy is not listening')
    return address.port
  }

  get address(): string {
    return `127.0.0.1:${this.port}`
  }

  get blackHoled(): boolean {
    return this.#blackHoled
  }

  get stats(): ProxyStats {
    return { ...this.#stats }
  }

  /** Live connections (accepted and not closed). */
  get open(): number {
    return this.#connections.size
  }

  setFaults(faults: LinkFaults): void {
    this.faults = faults
  }

  /** Nothing passes until heal(); connections stay open (each end may give up on its own). */
  blackHole(): void {
    this.#blackHoled = true
  }

  /** Ends a black hole: held bytes and held connections go on. */
  heal(): void {
    this.#blackHoled = false
    for (const c of this.#waiting) c.connect(this.#target)
    this.#waiting.clear()
    for (const c of this.#connections) c.heal()
  }

  /** Resets every open connection. */
  cutAll(): void {
    for (const c of this.#connections) {
      this.#stats.cuts++
      c.reset()
    }
  }

  /** Counts a chunk; true (and counted as a cut) when its connection is to be reset. */
  decideCut(bytes: number): boolean {
    this.#stats.chunks++
    this.#stats.bytes += bytes
    const cut = this.faults.cutChance > 0 && this.random() < this.faults.cutChance
    if (cut) this.#stats.cuts++
    return cut
  }

  /** Stops listening and resets every connection. */
  async close(): Promise<void> {
    for (const c of this.#connections) c.reset()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }

  #accept(client: Socket): void {
    this.#stats.connections++
    client.setNoDelay(true)
    const upstream = new Socket()
    upstream.setNoDelay(true)
    const connection: Connection = new Connection(client, upstream, this, () => {
      this.#connections.delete(connection)
      this.#waiting.delete(connection)
    })
    this.#connections.add(connection)
    if (this.#blackHoled) this.#waiting.add(connection)
    else connection.connect(this.#target)
  }
}
