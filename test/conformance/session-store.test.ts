// Conformance suite for the MQTT session persistence seam (LmdbSessionStore).
//
// 1. aedes-persistence's own suite (abstract.js, written for node:test) runs
//    unchanged through a small adapter that gives it node:test's `t` (assert,
//    plan, diagnostic) on top of vitest, with a fresh LMDB environment per test.
// 2. Restart tests: write every kind of session state, close the environment,
//    reopen the same path with a new store and find it all again byte-exact.
// 3. aedes itself accepts the store, and its will sweep publishes a will left
//    behind by a broker that died.

import { deepEqual, deepStrictEqual, equal, notEqual, ok, strictEqual } from 'node:assert'
import { createRequire } from 'node:module'
import type { Readable } from 'node:stream'
import { Aedes, type AedesPublishPacket, type Client } from 'aedes'
import { afterEach, describe, expect, test } from 'vitest'
import { LmdbSessionStore } from '../../src/broker/session-store.ts'
import { NodeEnvironment } from '../../src/log/node-environment.ts'
import { tempDir as makeTempDir } from '../helpers/temp-dir.ts'

type StoredPacket = Parameters<LmdbSessionStore['storeRetained']>[0]

/** The store takes aedes's packet union; these tests build packets field by field. */
function asPacket(fields: Record<string, unknown>): StoredPacket {
  return fields as unknown as StoredPacket
}

/** The store reads only a client's id. */
function client(id: string): Client {
  return { id } as Client
}

// ---------------------------------------------------------------------------
// Temp environments, closed and removed after every test.

const openRoots = new Set<NodeEnvironment>()
const tempDirs: { remove: () => Promise<void> }[] = []

async function tempDir(): Promise<string> {
  const dir = await makeTempDir('tributary-session-store-')
  tempDirs.push(dir)
  return dir.path
}

function openRoot(dir: string): NodeEnvironment {
  const root = NodeEnvironment.open(dir)
  openRoots.add(root)
  return root
}

async function closeRoot(root: NodeEnvironment): Promise<void> {
  openRoots.delete(root)
  await root.close()
}

afterEach(async () => {
  for (const root of [...openRoots]) await closeRoot(root)
  for (const dir of tempDirs.splice(0)) await dir.remove()
})

// ---------------------------------------------------------------------------
// aedes-persistence's abstract suite through a node:test-shaped adapter.

interface NodeTestContext {
  plan(count: number): void
  diagnostic(message: string): void
  assert: {
    equal: typeof equal
    deepEqual: typeof deepEqual
    notEqual: typeof notEqual
    ok: (value: unknown, message?: string) => void
  }
}

type AbstractPersistence = (opts: {
  test: (name: string, fn: (t: NodeTestContext) => Promise<void>) => void
  persistence: () => Promise<LmdbSessionStore>
  testAsync: boolean
}) => void

// abstract.js is CommonJS without a type declaration; the shape it takes is above.
const abstractPersistence = createRequire(import.meta.url)(
  'aedes-persistence/abstract.js',
) as AbstractPersistence

/**
 * node:test's `t` for the suite: `t.assert` is node:assert's top-level (loose)
 * functions, as in node:test, and `t.plan(n)` fails the test unless exactly n
 * assertions ran.
 */
function nodeTestContext(): { t: NodeTestContext; checkPlan: () => void } {
  let planned: number | undefined
  let ran = 0
  const counted =
    <A extends unknown[]>(assertion: (...args: A) => void) =>
    (...args: A): void => {
      ran++
      assertion(...args)
    }
  const t: NodeTestContext = {
    plan: (count) => {
      planned = count
    },
    diagnostic: () => {},
    assert: {
      equal: counted(equal),
      deepEqual: counted(deepEqual),
      notEqual: counted(notEqual),
      ok: counted((value: unknown, message?: string) => ok(value, message)),
    },
  }
  const checkPlan = (): void => {
    if (planned !== undefined) strictEqual(ran, planned, `planned ${planned} assertions, ran ${ran}`)
  }
  return { t, checkPlan }
}

describe('aedes-persistence abstract suite', () => {
  abstractPersistence({
    test: (name, fn) => {
      // 'store multiple retained messages in order' awaits 1000 commits in a row.
      test(name, { timeout: 60_000 }, async () => {
        const { t, checkPlan } = nodeTestContext()
        await fn(t)
        checkPlan()
      })
    },
    persistence: async () => new LmdbSessionStore(openRoot(await tempDir())),
    testAsync: true,
  })
})

// ---------------------------------------------------------------------------
// Restart: close the environment, reopen the same path, find everything again.

function fakeBroker(id: string): { id: string } {
  return { id }
}

async function streamed<T>(stream: Readable): Promise<T[]> {
  return (await stream.toArray()) as T[]
}

/** Own enumerable fields only: the store hands out aedes-packet instances before a restart, plain objects after. */
function fields(packet: object): Record<string, unknown> {
  return { ...packet }
}

const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
const longTopic = `long/${'x'.repeat(1100)}`
const longClientId = `client-${'é'.repeat(600)}`
const mqtt5Properties = {
  payloadFormatIndicator: false,
  messageExpiryInterval: 3600,
  responseTopic: 'reply/here',
  correlationData: Buffer.from([0, 255, 1, 254]),
  userProperties: { origin: 'sensor-7', tags: ['a', 'b'] },
  contentType: 'application/octet-stream',
}

function publishPacket(overrides: Record<string, unknown>): StoredPacket {
  return asPacket({
    cmd: 'publish',
    topic: 'sensors/1/temperature',
    payload: allBytes,
    qos: 1,
    retain: false,
    dup: false,
    brokerId: 'broker-before',
    brokerCounter: 1,
    ...overrides,
  })
}

function byTopic<T extends { topic?: unknown }>(items: T[]): T[] {
  return items.toSorted((a, b) => String(a.topic).localeCompare(String(b.topic)))
}

/**
 * Everything a store says about the state written by writeSessionState().
 * Retained messages and a client's subscriptions come back in key order after
 * a restart (MQTT orders neither), so they are sorted by topic here.
 */
async function snapshot(store: LmdbSessionStore) {
  const c1 = client('c1')
  const long = client(longClientId)
  return {
    retained: byTopic((await streamed<StoredPacket>(store.createRetainedStream('#'))).map(fields)),
    subsC1: byTopic(await store.subscriptionsByClient(c1)),
    subsLong: await store.subscriptionsByClient(long),
    subsGone: await store.subscriptionsByClient(client('c-cleaned')),
    matching: (await store.subscriptionsByTopic('sensors/1/temperature')).map((s) => s.clientId).sort(),
    offline: await store.countOffline(),
    outgoingC1: (await streamed<StoredPacket>(store.outgoingStream(c1))).map(fields),
    outgoingLong: (await streamed<StoredPacket>(store.outgoingStream(long))).map(fields),
    incoming7: fields(await store.incomingGetPacket(c1, { messageId: 7 })),
    incomingLong: fields(await store.incomingGetPacket(long, { messageId: 65535 })),
    willC1: await store.getWill(c1),
    willC2: await store.getWill({ id: 'c2' }),
  }
}

async function writeSessionState(store: LmdbSessionStore): Promise<void> {
  const c1 = client('c1')
  const long = client(longClientId)

  await store.storeRetained(publishPacket({ retain: true, qos: 0, properties: mqtt5Properties }))
  await store.storeRetained(publishPacket({ topic: longTopic, retain: true, payload: Buffer.from('long') }))
  await store.storeRetained(publishPacket({ topic: 'cleared', retain: true, payload: Buffer.from('gone') }))
  await store.storeRetained(publishPacket({ topic: 'cleared', retain: true, payload: Buffer.alloc(0) }))

  await store.addSubscriptions(c1, [
    { topic: 'sensors/+/temperature', qos: 1, rh: 0, rap: true, nl: false },
    { topic: 'sensors/#', qos: 0, rh: 2, rap: false, nl: true },
    { topic: 'removed', qos: 2 },
    { topic: longTopic, qos: 2, subscriptionIdentifier: 42 } as Parameters<
      LmdbSessionStore['addSubscriptions']
    >[1][number],
  ])
  await store.removeSubscriptions(c1, ['removed'])
  await store.addSubscriptions(long, [{ topic: 'sensors/1/temperature', qos: 2 }])
  await store.addSubscriptions({ id: 'c-cleaned' }, [{ topic: 'x', qos: 1 }])
  await store.cleanSubscriptions({ id: 'c-cleaned' })

  // c1's queue: p1 gets packet id 1 and then becomes a PUBREL, p2 is acked,
  // p3 waits without a packet id.
  const p1 = publishPacket({
    brokerCounter: 1,
    qos: 2,
    properties: mqtt5Properties,
    messageExpiry: 1_900_000_000_123,
  })
  const p2 = publishPacket({ brokerCounter: 2, payload: Buffer.from('second') })
  const p3 = publishPacket({ brokerCounter: 3, payload: 'a string payload' })
  await store.outgoingEnqueueCombi([{ clientId: 'c1' }, { clientId: longClientId }], p1)
  await store.outgoingEnqueue({ clientId: 'c1' }, p2)
  await store.outgoingEnqueue({ clientId: 'c1' }, p3)
  // aedes passes its QoSPacket, which carries a write callback.
  await store.outgoingUpdate(c1, asPacket({ ...p1, messageId: 1, writeCallback: () => {} }))
  await store.outgoingUpdate(c1, asPacket({ cmd: 'pubrel', messageId: 1 }))
  await store.outgoingUpdate(c1, asPacket({ ...p2, messageId: 2 }))
  await store.outgoingClearMessageId(c1, { messageId: 2 })

  await store.incomingStorePacket(c1, publishPacket({ qos: 2, messageId: 7, properties: mqtt5Properties }))
  await store.incomingStorePacket(c1, publishPacket({ qos: 2, messageId: 8 }))
  await store.incomingDelPacket(c1, { messageId: 8 })
  await store.incomingStorePacket(long, publishPacket({ qos: 2, messageId: 65535, topic: longTopic }))

  const will = publishPacket({ topic: 'clients/c1/status', payload: Buffer.from([0, 0, 7]), retain: true })
  await store.putWill(c1, asPacket({ ...will, properties: { willDelayInterval: 5, contentType: 'x' } }))
  await store.putWill({ id: 'c2' }, publishPacket({ topic: 'clients/c2/status' }))
  await store.delWill({ id: 'c2' })
}

describe('LmdbSessionStore across a restart', () => {
  test('finds retained messages, subscriptions, queues, incoming packets and wills again, byte-exact', async () => {
    const dir = await tempDir()
    const root1 = openRoot(dir)
    const before = new LmdbSessionStore(root1)
    await before.setup(fakeBroker('broker-before'))
    await writeSessionState(before)
    const expected = await snapshot(before)
    await before.destroy()
    await closeRoot(root1)

    const after = new LmdbSessionStore(openRoot(dir))
    await after.setup(fakeBroker('broker-after'))
    const actual = await snapshot(after)
    deepStrictEqual(actual, expected)

    // The snapshot itself holds what was written, not just the same thing twice.
    deepStrictEqual(
      actual.retained.map((p) => p.topic),
      [longTopic, 'sensors/1/temperature'],
    )
    const retained = actual.retained.find((p) => p.topic === 'sensors/1/temperature')
    deepStrictEqual(retained?.payload, allBytes)
    ok(Buffer.isBuffer(retained?.payload))
    deepStrictEqual(retained?.properties, mqtt5Properties)
    deepStrictEqual(
      actual.subsC1.map((s) => s.topic),
      [longTopic, 'sensors/#', 'sensors/+/temperature'],
    )
    strictEqual((actual.subsC1[0] as { subscriptionIdentifier?: number }).subscriptionIdentifier, 42)
    deepStrictEqual(actual.subsLong, [
      { topic: 'sensors/1/temperature', qos: 2, rh: undefined, rap: undefined, nl: undefined },
    ])
    deepStrictEqual(actual.subsGone, [])
    deepStrictEqual(actual.matching, ['c1', longClientId].sort())
    // QoS 0 subscriptions are kept per client but not in the offline trie.
    deepStrictEqual(actual.offline, { subsCount: 3, clientsCount: 2 })
    deepStrictEqual(actual.outgoingC1, [
      { cmd: 'pubrel', messageId: 1 },
      fields(publishPacket({ brokerCounter: 3, payload: 'a string payload', messageId: undefined })),
    ])
    strictEqual(actual.outgoingLong.length, 1)
    strictEqual(actual.outgoingLong[0]?.messageExpiry, 1_900_000_000_123)
    deepStrictEqual(actual.outgoingLong[0]?.properties, mqtt5Properties)
    deepStrictEqual(actual.incoming7.payload, allBytes)
    deepStrictEqual(actual.incoming7.properties, mqtt5Properties)
    strictEqual(actual.incomingLong.topic, longTopic)
    await expect(after.incomingGetPacket({ id: 'c1' }, { messageId: 8 })).rejects.toThrow('no such packet')
    strictEqual(actual.willC2, undefined)

    // A will restored from the previous run keeps its old brokerId, so the
    // will sweep of the new broker treats it as the will of a dead broker.
    strictEqual(actual.willC1?.brokerId, 'broker-before')
    strictEqual(actual.willC1?.clientId, 'c1')
    deepStrictEqual(actual.willC1?.payload, Buffer.from([0, 0, 7]))
    const sweep = await streamed<StoredPacket>(after.streamWill({ 'broker-after': new Date() }))
    deepStrictEqual(sweep, [actual.willC1])
    deepStrictEqual(await streamed(after.streamWill({ 'broker-before': new Date() })), [])
  })

  test('keeps working on restored state: queue order, packet ids, removals', async () => {
    const dir = await tempDir()
    const root1 = openRoot(dir)
    const first = new LmdbSessionStore(root1)
    await first.setup(fakeBroker('broker-1'))
    await writeSessionState(first)
    await first.destroy()
    await closeRoot(root1)

    const root2 = openRoot(dir)
    const second = new LmdbSessionStore(root2)
    await second.setup(fakeBroker('broker-2'))
    const c1 = client('c1')
    await second.outgoingEnqueue(
      { clientId: 'c1' },
      publishPacket({ brokerId: 'broker-2', brokerCounter: 9 }),
    )
    await second.outgoingUpdate(
      c1,
      publishPacket({ brokerCounter: 3, payload: 'a string payload', messageId: 3 }),
    )
    await second.outgoingClearMessageId(c1, { messageId: 1 })
    await second.removeSubscriptions(c1, ['sensors/#'])
    await second.cleanSubscriptions(client(longClientId))
    await second.storeRetained(publishPacket({ topic: longTopic, retain: true, payload: Buffer.alloc(0) }))
    await second.incomingDelPacket(c1, { messageId: 7 })
    await second.delWill(c1)
    await second.destroy()
    await closeRoot(root2)

    const third = new LmdbSessionStore(openRoot(dir))
    await third.setup(fakeBroker('broker-3'))
    const queue = await streamed<StoredPacket>(third.outgoingStream(c1))
    deepStrictEqual(
      queue.map(fields).map((p) => [p.brokerId, p.brokerCounter, p.messageId]),
      [
        ['broker-before', 3, 3],
        ['broker-2', 9, undefined],
      ],
    )
    deepStrictEqual(
      byTopic(await third.subscriptionsByClient(c1)).map((s) => s.topic),
      [longTopic, 'sensors/+/temperature'],
    )
    deepStrictEqual(await third.subscriptionsByClient(client(longClientId)), [])
    deepStrictEqual(
      (await streamed<StoredPacket>(third.createRetainedStream('#'))).map((p) => fields(p).topic),
      ['sensors/1/temperature'],
    )
    await expect(third.incomingGetPacket(c1, { messageId: 7 })).rejects.toThrow('no such packet')
    strictEqual(await third.getWill(c1), undefined)
  })

  test('destroy waits for queued writes, is idempotent, and refuses later writes', async () => {
    const dir = await tempDir()
    const root = openRoot(dir)
    const store = new LmdbSessionStore(root)
    await store.setup(fakeBroker('b'))
    // Not awaited on purpose: destroy() must wait for it before resolving.
    const pending = store.storeRetained(publishPacket({ retain: true }))
    const destroyed = store.destroy()
    strictEqual(store.destroy(), destroyed)
    await destroyed
    await pending
    await expect(store.storeRetained(publishPacket({ retain: true }))).rejects.toThrow('destroyed')
    await closeRoot(root)

    const reopened = new LmdbSessionStore(openRoot(dir))
    await reopened.setup(fakeBroker('b'))
    strictEqual((await streamed(reopened.createRetainedStream('#'))).length, 1)
  })
})

// ---------------------------------------------------------------------------
// aedes accepts the store and acts on restored state.

describe('LmdbSessionStore limits', () => {
  test('keeps at most maxQueuedPerSession packets per client, dropping the oldest, also on disk', async () => {
    const dir = await tempDir()
    const drops: Array<[string, number]> = []
    const limits = { maxQueuedPerSession: 3, onDrop: (id: string, n: number) => drops.push([id, n]) }
    const root1 = openRoot(dir)
    const store = new LmdbSessionStore(root1, limits)
    await store.setup(fakeBroker('broker-before'))
    for (let i = 0; i < 5; i++) {
      await store.outgoingEnqueueCombi(
        [{ clientId: 'slow' }, { clientId: 'other' }],
        publishPacket({ brokerCounter: i }),
      )
    }
    const counters = async (s: LmdbSessionStore, id: string) =>
      (await streamed<StoredPacket>(s.outgoingStream({ id }))).map((p) => p.brokerCounter)
    expect(await counters(store, 'slow')).toEqual([2, 3, 4])
    expect(drops).toEqual([
      ['slow', 1],
      ['other', 1],
      ['slow', 1],
      ['other', 1],
    ])
    await store.destroy()
    await closeRoot(root1)

    const reopened = new LmdbSessionStore(openRoot(dir), limits)
    await reopened.setup(fakeBroker('broker-after'))
    expect(await counters(reopened, 'slow')).toEqual([2, 3, 4])
    expect(await counters(reopened, 'other')).toEqual([2, 3, 4])
  })
})

async function closeBroker(broker: Aedes): Promise<void> {
  await new Promise<void>((resolve) => broker.close(resolve))
}

describe('LmdbSessionStore under aedes', () => {
  test('is accepted as opts.persistence, and the will sweep publishes a will of a dead broker', async () => {
    const dir = await tempDir()
    const root1 = openRoot(dir)
    const crashed = new LmdbSessionStore(root1)
    await crashed.setup(fakeBroker('crashed-broker'))
    await crashed.putWill({ id: 'sensor-9' }, publishPacket({ topic: 'clients/sensor-9/status', qos: 0 }))
    await crashed.destroy()
    await closeRoot(root1)

    const store = new LmdbSessionStore(openRoot(dir))
    const broker = await Aedes.createBroker({ persistence: store, heartbeatInterval: 20 })
    try {
      const will = await new Promise<AedesPublishPacket>((resolve) => {
        broker.subscribe(
          'clients/+/status',
          (packet, done) => {
            resolve(packet)
            done()
          },
          () => {},
        )
      })
      strictEqual(will.topic, 'clients/sensor-9/status')
      deepStrictEqual(will.payload, allBytes)
      // The sweep removes a will once it is published.
      await expect.poll(() => store.getWill({ id: 'sensor-9' })).toBeUndefined()
    } finally {
      await closeBroker(broker)
      await store.destroy()
    }
  })
})
