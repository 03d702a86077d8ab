// Cluster nodes as child processes on 127.0.0.1 for the link and clock
// tests: a broker started from a config file (cluster with mDNS off, static
// peers only: the network rule), its admin API's address read from its log,
// and typed reads of its /v1/peers. The caller stops it (cleanup.defer).

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { type ChildBroker, type SpawnOptions, spawnBroker } from './child.ts'

const START_WAIT_MS = 60_000

export interface PeersAnswer {
  readonly cluster: {
    readonly partitions: ReadonlyArray<{
      readonly stream: string
      readonly partition: number
      readonly durableNext: number
      readonly replicatedNext: number
    }>
  }
  readonly peers: ReadonlyArray<{
    readonly nodeId: string | null
    readonly state: string
    readonly lastError: string | null
    readonly copies: ReadonlyArray<{
      readonly stream: string
      readonly partition: number
      readonly nextOffset: number
    }>
    readonly synced: ReadonlyArray<{
      readonly stream: string
      readonly partition: number
      readonly syncedNext: number
    }>
  }>
}

export interface ClusterChild {
  readonly broker: ChildBroker
  readonly dataDir: string
  readonly nodeId: string
  readonly httpUrl: string
  peers(): Promise<PeersAnswer>
}

/** Starts a broker on `dataDir`; resolves once its MQTT listener and admin API are up. */
export async function startClusterChild(dataDir: string, options: SpawnOptions): Promise<ClusterChild> {
  const broker = await spawnBroker(dataDir, { timeoutMs: START_WAIT_MS, ...options })
  const deadline = Date.now() + START_WAIT_MS
  let http: string | undefined
  while (http === undefined) {
    const line = broker.logs.find((l) => l.msg === 'admin API listening')
    if (typeof line?.http === 'string') http = line.http
    else if (Date.now() > deadline) throw new Error('the admin API did not start')
    else await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const httpUrl = `http://${http}`
  return {
    broker,
    dataDir,
    nodeId: readFileSync(join(dataDir, 'node-id'), 'utf8').trim(),
    httpUrl,
    peers: async () => (await (await fetch(`${httpUrl}/v1/peers`)).json()) as PeersAnswer,
  }
}

/** Polls `check` every 200 ms until it holds; fails after `waitMs` naming `what`. */
export async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  waitMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + waitMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${waitMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}
