// The QoS 1 dedupe window: for each client, the last packet ids it published
// with a digest of topic and payload. Held in memory, bounded twice (ids per
// client, clients in all; least recently publishing clients go first),
// because a durable entry per QoS 1 message tripled the disk writes of the
// whole log. A retry after a broker restart is therefore stored again, which
// MQTT's at-least-once allows (README, Guarantees).
//
// Each client's window is a ring of typed arrays: remembering a publish
// allocates nothing, so nothing per message outlives the young generation
// (an object per QoS 1 publish kept for a few milliseconds was promoted and
// made the old generation grow under load). Only a DUP publish searches it.

interface Window {
  readonly ids: Int32Array
  readonly digests: Uint32Array
  /** The slot the next id goes to. */
  next: number
  /** `#clock` when the client last published: the eviction order. */
  usedAt: number
}

const EMPTY = -1

export class RecentPublishes {
  readonly #idsPerClient: number
  readonly #maxClients: number
  readonly #clients = new Map<string, Window>()
  #clock = 0

  constructor(idsPerClient: number, maxClients: number) {
    this.#idsPerClient = idsPerClient
    this.#maxClients = maxClients
  }

  /** The digest remembered for the client's packet id, newest first; undefined when not in the window. */
  digest(clientId: string, messageId: number): number | undefined {
    const window = this.#clients.get(clientId)
    if (window === undefined) return undefined
    const size = this.#idsPerClient
    for (let i = 1; i <= size; i++) {
      const slot = (window.next - i + size) % size
      if (window.ids[slot] === messageId) return window.digests[slot]
    }
    return undefined
  }

  remember(clientId: string, messageId: number, digest: number): void {
    let window = this.#clients.get(clientId)
    if (window === undefined) {
      window = {
        ids: new Int32Array(this.#idsPerClient).fill(EMPTY),
        digests: new Uint32Array(this.#idsPerClient),
        next: 0,
        usedAt: ++this.#clock,
      }
      this.#clients.set(clientId, window)
      if (this.#clients.size > this.#maxClients) this.#evict()
    }
    window.ids[window.next] = messageId
    window.digests[window.next] = digest
    window.next = (window.next + 1) % this.#idsPerClient
    window.usedAt = ++this.#clock
  }

  forget(clientId: string): void {
    this.#clients.delete(clientId)
  }

  /** Drops the least recently publishing eighth of the clients (at least one): a sort per many new clients, not per publish. */
  #evict(): void {
    const byAge = [...this.#clients].sort((a, b) => a[1].usedAt - b[1].usedAt)
    const drop = Math.max(1, Math.floor(this.#maxClients / 8))
    for (const [clientId] of byAge.slice(0, drop)) this.#clients.delete(clientId)
  }
}
