// Starts a real tributary node in this process on 127.0.0.1:0 with a temp
// data dir (or a given one, to restart on the same data).

import { validateConfig } from '../../src/config/load.ts'
import type { Config } from '../../src/config/schema.ts'
import { sinkFromUrl } from '../../src/config/sink-url.ts'
import { createNode, type TributaryNode } from '../../src/index.ts'
import { createLogger } from '../../src/observability/logger.ts'
import { RecentLogEvents } from '../../src/observability/recent-log.ts'
import { tempDir } from './temp-dir.ts'

export interface RunningNode {
  readonly node: TributaryNode
  readonly port: number
  readonly url: string
  /** The admin API's base URL, e.g. http://127.0.0.1:40123 (null when http.port is null). */
  readonly httpUrl: string | null
  readonly dataDir: string
  readonly config: Readonly<Config>
  /** Clean shutdown (SIGTERM path). */
  stop(): Promise<void>
}

export interface NodeOptions {
  readonly dataDir?: string
  /** The config file's tree. */
  readonly config?: Record<string, unknown>
  /** As `--sink URL` flags. */
  readonly sinks?: readonly string[]
}

/** Builds a full config from a partial tree, as the YAML file would give it. */
export function testConfig(
  dataDir: string,
  tree: Record<string, unknown> = {},
  sinkUrls: readonly string[] = [],
): Readonly<Config> {
  const fileSinks = Array.isArray(tree.sinks) ? tree.sinks : []
  const result = validateConfig({
    dataDir,
    logLevel: process.env.TRIBUTARY_TEST_LOG_LEVEL ?? 'silent',
    ...tree,
    sinks: [...fileSinks, ...sinkUrls.map(sinkFromUrl)],
    mqtt: { host: '127.0.0.1', port: 0 },
    // The admin API on a free loopback port, unless the test sets its own http section.
    http: { host: '127.0.0.1', port: 0, ...(typeof tree.http === 'object' ? tree.http : {}) },
  })
  if (result.config === null) throw new Error(`bad test config: ${JSON.stringify(result.problems)}`)
  return result.config
}

export async function startNode(options: NodeOptions = {}): Promise<RunningNode> {
  const dataDir = options.dataDir ?? (await tempDir()).path
  const config = testConfig(dataDir, options.config, options.sinks)
  const recent = new RecentLogEvents()
  const node = createNode(config, createLogger(config.logLevel, undefined, recent), recent)
  const { mqtt, http } = await node.start()
  return {
    node,
    port: mqtt.port,
    url: `mqtt://127.0.0.1:${mqtt.port}`,
    httpUrl: http === null ? null : `http://127.0.0.1:${http.port}`,
    dataDir,
    config,
    stop: () => node.close(),
  }
}
