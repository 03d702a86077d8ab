// The QoS 1 dedupe window: for each client, the last packet ids it published
// with a digest of topic and payload and where they were stored. Held in
// memory, bounded twice (ids per client, clients in all; least recently
// publishing clients go first), because a durable entry per QoS 1 message
// tripled the disk writes of the whole log. A retry after a broker restart is
// therefore stored again, which MQTT's at-least-once allows (README, Guarantees).

import type { Appended } from '../log/log-store.ts'

interface Entry {
  readonly digest: number
  readonly appended: readonly Appended[]
}

export class RecentPublishes {
  readonly #idsPerClient: number
  readonly #maxClients: number
  /** Map order is recency: a client is re-inserted when it publishes. */
  readonly #clients = new Map<string, Map<number, Entry>>()

  constructor(idsPerClient: number, maxClients: number) {
    this.#idsPerClient = idsPerClient
    this.#maxClients = maxClients
  }

  get(clientId: string, messageId: number): Entry | undefined {
    return this.#clients.get(clientId)?.get(messageId)
  }

  remember(clientId: string, messageId: number, entry: Entry): void {
    let ids = this.#clients.get(clientId)
    if (ids === undefined) {
      ids = new Map()
    } else {
      this.#clients.delete(clientId)
    }
    this.#clients.set(clientId, ids)
    ids.delete(messageId)
    ids.set(messageId, entry)
    if (ids.size > this.#idsPerClient) ids.delete(ids.keys().next().value as number)
    if (this.#clients.size > this.#maxClients)
      this.#clients.delete(this.#clients.keys().next().value as string)
  }

  forget(clientId: string): void {
    this.#clients.delete(clientId)
  }
}
