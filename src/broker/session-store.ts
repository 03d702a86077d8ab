// LmdbSessionStore: the aedes persistence that keeps MQTT session state and
// retained messages durable in the node's LMDB environment, so they survive a
// process restart (kill -9 included).
//
// Owns five named databases of the node's environment (src/log/node-environment.ts
// has their encodings; the caller opens and closes the environment):
//   mqtt-retained       [topic]            -> retained PUBLISH
//   mqtt-subscriptions  [clientId, topic]  -> { clientId, sub } as aedes added it
//   mqtt-outgoing       sequence number    -> { clientId, packet } queued towards a client
//   mqtt-incoming       [clientId, msgId]  -> { clientId, packet } QoS 2 PUBLISH awaiting PUBREL
//   mqtt-wills          [clientId]         -> will PUBLISH (carries clientId and brokerId)
// Values are msgpack; identities are read from values, never parsed from keys.
//
// In: aedes persistence calls. Out: the answers of aedes-persistence's
// in-memory store, with every mutation committed to LMDB before its promise
// resolves. Matching (the retained scan, the subscription trie) stays in the
// in-memory base class, which setup() refills from LMDB. Outgoing queues,
// incoming packets and wills are kept here instead of in the base class,
// because updating or removing one entry on disk needs to know that entry's
// key, which the base class's private fields do not expose. After a restart,
// each client's queue keeps its order; retained messages and a client's
// subscriptions come back in key order (MQTT orders neither).
//
// Durability: a mutation's promise resolves when lmdb-js reports the commit
// ("committed" in lmdb-js's words), with the environment's sync settings.
// Mutations are applied to memory and queued to LMDB in the same synchronous
// step, so both see them in call order, and lmdb-js commits everything queued
// in one event turn in one transaction. If a commit fails, the promise rejects
// and memory runs ahead of disk until the next restart.
//
// Over 400 lines: it implements aedes-persistence's whole interface (retained,
// subscriptions, outgoing, incoming, wills) in one class, since aedes takes
// one persistence object; each group of methods is short.
//
// Bounds: a session's outgoing queue holds at most `maxQueuedPerSession`
// packets (drop-oldest, reported through `onDrop`; aedes itself puts no limit
// on it and MQTT 3.1.1 persistent sessions never expire). Also held, on disk
// and in memory: one retained message per topic, the subscriptions, one will
// per client, and up to 65535 QoS 2 packets per client (the packet id space).

import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import type { Brokers, Client } from 'aedes'
import type MemoryPersistenceDeclaration from 'aedes-persistence/types/asyncPersistence.js'
import type { Database } from 'lmdb'
import type { NodeEnvironment } from '../log/node-environment.ts'

// aedes-persistence ships the in-memory store's declaration in types/, not next
// to asyncPersistence.js, so an import of the JS file has no types; load it
// with require and give it the shipped declaration. The same module exports
// aedes-packet's constructor as `.Packet`, which the declaration leaves out.
const MemoryPersistence = createRequire(import.meta.url)('aedes-persistence/asyncPersistence.js') as {
  new (): MemoryPersistenceDeclaration
  Packet: new (original: AedesPacket) => AedesPacket
}
const { Packet } = MemoryPersistence

type AedesPacket = Parameters<MemoryPersistenceDeclaration['storeRetained']>[0]
type WillPacket = NonNullable<Awaited<ReturnType<MemoryPersistenceDeclaration['getWill']>>>
type Subscription = Parameters<MemoryPersistenceDeclaration['addSubscriptions']>[1][number]
/** aedes passes a Client; the store reads only its id (tests pass `{ id }`). */
type ClientRef = Pick<Client, 'id'>
/** aedes passes a packet; looking up by packet id reads only its messageId. */
type PacketIdRef = { messageId?: number | undefined }

/** A subscription as aedes added it; replaying these rebuilds the trie exactly. */
interface StoredSubscription {
  topic: string
  qos: Subscription['qos']
  rh?: number | undefined
  rap?: boolean | undefined
  nl?: boolean | undefined
  subscriptionIdentifier?: number | undefined
}

interface ClientPacket {
  clientId: string
  packet: AedesPacket
}

interface ClientSubscription {
  clientId: string
  sub: StoredSubscription
}

interface OutgoingEntry {
  seq: number
  packet: AedesPacket
}

// LMDB's default maximum key size is 1978 bytes; MQTT topics and client ids may
// be up to 65535. Keys longer than this are replaced by a digest.
const MAX_NATURAL_KEY_BYTES = 1024

/**
 * The LMDB key for a tuple of client ids, topics and packet ids. JSON of an
 * array of strings and numbers is injective; keys too long for LMDB become
 * '#' + SHA-256 of that JSON, and no JSON array starts with '#'. Neither form
 * contains characters below U+0020 or lone surrogates (JSON.stringify escapes
 * them), which lmdb-js's ordered-binary encoding would otherwise rewrite.
 */
function identityKey(parts: readonly (string | number)[]): string {
  const natural = JSON.stringify(parts)
  if (Buffer.byteLength(natural) <= MAX_NATURAL_KEY_BYTES) return natural
  return `#${createHash('sha256').update(natural).digest('base64url')}`
}

/** A shallow copy without function-valued fields (aedes's QoSPacket carries a write callback). */
function storable<T extends object>(packet: T): T {
  // Object.fromEntries loses the type; the copy has T's data fields only.
  return Object.fromEntries(Object.entries(packet).filter(([, value]) => typeof value !== 'function')) as T
}

function noSuchPacket(): Error {
  return new Error('no such packet')
}

export interface SessionStoreLimits {
  /**
   * Packets queued towards one client (offline persistent sessions). Beyond it
   * the oldest are dropped ("drop-oldest"): these are live deliveries; every
   * record stays in the log, readable with `tributary tail`.
   */
  readonly maxQueuedPerSession?: number
  /** Told about every drop, to log and count it. */
  readonly onDrop?: (clientId: string, dropped: number) => void
}

export class LmdbSessionStore extends MemoryPersistence {
  #retainedDb: Database<AedesPacket, string>
  #subscriptionsDb: Database<ClientSubscription, string>
  #outgoingDb: Database<ClientPacket, number>
  #incomingDb: Database<ClientPacket, string>
  #willsDb: Database<WillPacket, string>

  // clientId -> topics stored in mqtt-subscriptions, so cleanSubscriptions can
  // remove them in the same synchronous step as the in-memory trie update.
  #subscriptionTopics = new Map<string, Set<string>>()
  // clientId -> queue in delivery order; seq is the entry's key in mqtt-outgoing.
  #outgoing = new Map<string, OutgoingEntry[]>()
  #nextSeq = 0
  // clientId -> messageId -> packet
  #incoming = new Map<string, Map<number, AedesPacket>>()
  #wills = new Map<string, WillPacket>()

  #broker: { readonly id: string } | undefined
  #pendingWrites = new Set<Promise<unknown>>()
  #destroyed: Promise<void> | undefined

  readonly #limits: SessionStoreLimits

  constructor(env: NodeEnvironment, limits: SessionStoreLimits = {}) {
    super()
    this.#limits = limits
    this.#retainedDb = env.database('mqtt-retained')
    this.#subscriptionsDb = env.database('mqtt-subscriptions')
    this.#outgoingDb = env.database('mqtt-outgoing')
    this.#incomingDb = env.database('mqtt-incoming')
    this.#willsDb = env.database('mqtt-wills')
  }

  /**
   * Called by aedes in listen(): remembers the broker and, the first time,
   * reloads all state from LMDB (a second load would queue every packet twice).
   */
  override async setup(broker: { readonly id: string }): Promise<void> {
    const firstSetup = this.#broker === undefined
    this.#broker = broker
    await super.setup(broker)
    if (firstSetup) await this.#reload()
  }

  async #reload(): Promise<void> {
    for (const { value } of this.#retainedDb.getRange()) {
      await super.storeRetained(value)
    }
    await this.#reloadSubscriptions()
    for (const { key, value } of this.#outgoingDb.getRange()) {
      this.#outgoingQueue(value.clientId).push({ seq: key, packet: value.packet })
      this.#nextSeq = key + 1
    }
    for (const { value } of this.#incomingDb.getRange()) {
      this.#incomingStore(value.clientId).set(value.packet.messageId ?? 0, value.packet)
    }
    // Wills keep the brokerId they were stored with, so after a crash aedes's
    // will sweep sees them as wills of a dead broker and publishes them. That
    // needs a broker id that differs from the previous run's: aedes counts its
    // own id as alive, so with a fixed id these wills are never swept.
    for (const { value } of this.#willsDb.getRange()) {
      this.#wills.set(value.clientId, value)
    }
  }

  async #reloadSubscriptions(): Promise<void> {
    const byClient = new Map<string, StoredSubscription[]>()
    for (const { value } of this.#subscriptionsDb.getRange()) {
      const subs = byClient.get(value.clientId) ?? []
      subs.push(value.sub)
      byClient.set(value.clientId, subs)
    }
    for (const [clientId, subs] of byClient) {
      this.#subscriptionTopics.set(clientId, new Set(subs.map((sub) => sub.topic)))
      await super.addSubscriptions({ id: clientId } as Client, subs)
    }
  }

  override async storeRetained(packet: AedesPacket): Promise<void> {
    this.#assertOpen()
    const topic = 'topic' in packet ? packet.topic : ''
    const empty = 'payload' in packet && packet.payload.length === 0
    const key = identityKey([topic])
    const memory = super.storeRetained(packet)
    await this.#commit(
      memory,
      empty ? this.#retainedDb.remove(key) : this.#retainedDb.put(key, storable(packet)),
    )
  }

  override async addSubscriptions(client: ClientRef, subs: Subscription[]): Promise<void> {
    this.#assertOpen()
    const memory = super.addSubscriptions(client as Client, subs)
    const topics = this.#subscriptionTopics.get(client.id) ?? new Set<string>()
    this.#subscriptionTopics.set(client.id, topics)
    const writes = subs.map((sub) => {
      topics.add(sub.topic)
      const stored: StoredSubscription = {
        topic: sub.topic,
        qos: sub.qos,
        rh: sub.rh,
        rap: sub.rap,
        nl: sub.nl,
      }
      const { subscriptionIdentifier } = sub as { subscriptionIdentifier?: number }
      if (subscriptionIdentifier !== undefined) stored.subscriptionIdentifier = subscriptionIdentifier
      return this.#subscriptionsDb.put(identityKey([client.id, sub.topic]), {
        clientId: client.id,
        sub: stored,
      })
    })
    await this.#commit(memory, Promise.all(writes))
  }

  override async removeSubscriptions(client: ClientRef, topics: string[]): Promise<void> {
    this.#assertOpen()
    const memory = super.removeSubscriptions(client as Client, topics)
    const stored = this.#subscriptionTopics.get(client.id)
    const writes: Promise<boolean>[] = []
    for (const topic of topics) {
      if (stored?.delete(topic)) writes.push(this.#subscriptionsDb.remove(identityKey([client.id, topic])))
    }
    if (stored?.size === 0) this.#subscriptionTopics.delete(client.id)
    await this.#commit(memory, Promise.all(writes))
  }

  /**
   * aedes calls this when a clean session starts or ends: the moment MQTT
   * discards the whole session state [MQTT-3.1.2-6], so the client's queued
   * outgoing packets and unfinished incoming QoS 2 packets go with its
   * subscriptions (otherwise a reused packet id would be taken for a retransmit).
   */
  override async cleanSubscriptions(client: ClientRef): Promise<void> {
    this.#assertOpen()
    const memory = super.cleanSubscriptions(client as Client)
    const stored = this.#subscriptionTopics.get(client.id) ?? new Set<string>()
    this.#subscriptionTopics.delete(client.id)
    const writes = [...stored].map((topic) => this.#subscriptionsDb.remove(identityKey([client.id, topic])))
    for (const entry of this.#outgoing.get(client.id) ?? []) writes.push(this.#outgoingDb.remove(entry.seq))
    this.#outgoing.delete(client.id)
    for (const messageId of this.#incoming.get(client.id)?.keys() ?? []) {
      writes.push(this.#incomingDb.remove(identityKey([client.id, messageId])))
    }
    this.#incoming.delete(client.id)
    await this.#commit(memory, Promise.all(writes))
  }

  override async outgoingEnqueue(sub: { clientId: string }, packet: AedesPacket): Promise<void> {
    await this.outgoingEnqueueCombi([sub], packet)
  }

  override async outgoingEnqueueCombi(subs: { clientId: string }[], packet: AedesPacket): Promise<void> {
    // aedes calls this for every QoS > 0 publish, mostly with no offline subscriber.
    if (subs.length === 0) return
    this.#assertOpen()
    const max = this.#limits.maxQueuedPerSession ?? Number.POSITIVE_INFINITY
    const writes = subs.map(({ clientId }) => {
      const entry = { seq: this.#nextSeq++, packet: new Packet(packet) }
      const queue = this.#outgoingQueue(clientId)
      queue.push(entry)
      const dropped = queue.length > max ? queue.splice(0, queue.length - max) : []
      if (dropped.length > 0) this.#limits.onDrop?.(clientId, dropped.length)
      return Promise.all([
        this.#outgoingDb.put(entry.seq, { clientId, packet: storable(entry.packet) }),
        ...dropped.map((old) => this.#outgoingDb.remove(old.seq)),
      ])
    })
    await this.#write(Promise.all(writes))
  }

  /**
   * Records the packet id given to a queued PUBLISH (same brokerId and
   * brokerCounter), or replaces the entry holding that packet id (PUBLISH ->
   * PUBREL). The same search as aedes-persistence's in-memory store.
   */
  override async outgoingUpdate(client: ClientRef, packet: AedesPacket): Promise<void> {
    this.#assertOpen()
    const queue = this.#outgoing.get(client.id) ?? []
    for (const entry of queue) {
      const queued = entry.packet
      if (queued.brokerId === packet.brokerId) {
        // packet ids wrap at 65535, so a differing brokerCounter with the same
        // packet id is another message: keep searching.
        if (queued.brokerCounter !== packet.brokerCounter) continue
        queued.messageId = packet.messageId
      } else if (queued.messageId === packet.messageId) {
        entry.packet = packet
      } else {
        continue
      }
      await this.#write(
        this.#outgoingDb.put(entry.seq, { clientId: client.id, packet: storable(entry.packet) }),
      )
      return
    }
    throw noSuchPacket()
  }

  /** Removes the first queued packet with this packet id; resolves to it, or undefined. */
  override async outgoingClearMessageId(client: ClientRef, packet: PacketIdRef): Promise<AedesPacket> {
    this.#assertOpen()
    const queue = this.#outgoing.get(client.id) ?? []
    const index = queue.findIndex((entry) => entry.packet.messageId === packet.messageId)
    const [entry] = index === -1 ? [] : queue.splice(index, 1)
    if (queue.length === 0) this.#outgoing.delete(client.id)
    if (entry === undefined) {
      // The base declaration says AedesPacket, the in-memory store resolves to
      // undefined when nothing matches, and aedes handles both.
      return undefined as unknown as AedesPacket
    }
    await this.#write(this.#outgoingDb.remove(entry.seq))
    return entry.packet
  }

  override outgoingStream(client: ClientRef): Readable {
    const queue = this.#outgoing.get(client.id) ?? []
    return Readable.from(queue.map((entry) => entry.packet))
  }

  override async incomingStorePacket(client: ClientRef, packet: AedesPacket): Promise<void> {
    this.#assertOpen()
    const messageId = packet.messageId ?? 0
    const stored = new Packet(packet)
    stored.messageId = packet.messageId
    this.#incomingStore(client.id).set(messageId, stored)
    const key = identityKey([client.id, messageId])
    await this.#write(this.#incomingDb.put(key, { clientId: client.id, packet: storable(stored) }))
  }

  override async incomingGetPacket(client: ClientRef, packet: PacketIdRef): Promise<AedesPacket> {
    const stored = this.#incoming.get(client.id)?.get(packet.messageId ?? 0)
    if (stored === undefined) throw noSuchPacket()
    return stored
  }

  override async incomingDelPacket(client: ClientRef, packet: PacketIdRef): Promise<void> {
    this.#assertOpen()
    const messageId = packet.messageId ?? 0
    const store = this.#incoming.get(client.id)
    if (!store?.delete(messageId)) throw noSuchPacket()
    if (store.size === 0) this.#incoming.delete(client.id)
    await this.#write(this.#incomingDb.remove(identityKey([client.id, messageId])))
  }

  /** Stamps the will with this broker's id and the client id, in place, as the in-memory store does. */
  override async putWill(client: ClientRef, packet: AedesPacket): Promise<void> {
    this.#assertOpen()
    const will: WillPacket = Object.assign(packet, { brokerId: this.#brokerId(), clientId: client.id })
    const stored = storable(will)
    this.#wills.set(client.id, stored)
    await this.#write(this.#willsDb.put(identityKey([client.id]), stored))
  }

  override async getWill(client: ClientRef): Promise<WillPacket | undefined> {
    return this.#wills.get(client.id)
  }

  override async delWill(client: ClientRef): Promise<WillPacket | undefined> {
    this.#assertOpen()
    const will = this.#wills.get(client.id)
    if (will === undefined) return undefined
    this.#wills.delete(client.id)
    await this.#write(this.#willsDb.remove(identityKey([client.id])))
    return will
  }

  /** Wills whose broker is not in `brokers` (the live brokers aedes has heard from). */
  override streamWill(brokers: Brokers = {}): Readable {
    const wills = [...this.#wills.values()].filter((will) => brokers[will.brokerId] === undefined)
    return Readable.from(wills)
  }

  /**
   * Stops accepting mutations and resolves once every write already queued has
   * committed, so the caller can close the environment. Idempotent.
   */
  override destroy(): Promise<void> {
    this.#destroyed ??= (async () => {
      await Promise.allSettled(this.#pendingWrites)
      await super.destroy()
    })()
    return this.#destroyed
  }

  #assertOpen(): void {
    if (this.#destroyed !== undefined) throw new Error('session store is destroyed: no more writes accepted')
  }

  #brokerId(): string {
    if (this.#broker === undefined) throw new Error('session store used before setup(broker)')
    return this.#broker.id
  }

  /** Waits for an LMDB commit; destroy() waits for every commit still in flight. */
  async #write(commit: Promise<unknown>): Promise<void> {
    this.#pendingWrites.add(commit)
    try {
      await commit
    } finally {
      this.#pendingWrites.delete(commit)
    }
  }

  /** Waits for the base class's in-memory update and the LMDB commit queued with it. */
  async #commit(memory: Promise<void>, commit: Promise<unknown>): Promise<void> {
    await Promise.all([memory, this.#write(commit)])
  }

  #outgoingQueue(clientId: string): OutgoingEntry[] {
    let queue = this.#outgoing.get(clientId)
    if (queue === undefined) {
      queue = []
      this.#outgoing.set(clientId, queue)
    }
    return queue
  }

  #incomingStore(clientId: string): Map<number, AedesPacket> {
    let store = this.#incoming.get(clientId)
    if (store === undefined) {
      store = new Map()
      this.#incoming.set(clientId, store)
    }
    return store
  }
}
