// Loads the configuration once at start-up from its sources, in order:
// defaults < config file < TRIBUTARY_* environment < command-line flags.
// The result is validated against the schema and deep-frozen; a bad config
// fails here with every problem listed (path and expectation), never later.

import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseDocument } from 'yaml'
import type { z } from 'zod'
import { TributaryError } from '../errors.ts'
import {
  type ClusterConfig,
  type Config,
  configSchema,
  DEAD_LETTER_SUFFIX,
  DEFAULT_CLUSTER_REPLICAS,
  DEFAULT_MIN_INSYNC,
  DEFAULT_STREAM_NAME,
  type StreamConfig,
  streamSchema,
} from './schema.ts'
import { sinkFromUrl } from './sink-url.ts'

export const DEFAULT_CONFIG_PATH = '/etc/tributary/tributary.yaml'
export const SYSTEM_DATA_DIR = '/var/lib/tributary'

export interface ConfigFlags {
  readonly config?: string | undefined
  readonly dataDir?: string | undefined
  readonly mqttPort?: number | undefined
  readonly mqttHost?: string | undefined
  readonly logLevel?: string | undefined
  /** `--http-port`: `off` (or null) runs without the admin API. */
  readonly httpPort?: number | 'off' | null | undefined
  readonly httpHost?: string | undefined
  /** `--sink URL`, repeatable: added to the config file's sinks. */
  readonly sinks?: readonly string[] | undefined
  readonly cluster?: string | undefined
  readonly clusterSecretFile?: string | undefined
  readonly clusterCert?: string | undefined
  readonly clusterKey?: string | undefined
  readonly clusterCa?: string | undefined
  /** `--peer HOST:PORT`, repeatable: added to cluster.peers. */
  readonly peers?: readonly string[] | undefined
  readonly replicationPort?: number | undefined
}

export interface ConfigProblem {
  /** Dotted path of the offending field, e.g. `streams.0.partitions`, or the source (`env TRIBUTARY_MQTT_PORT`). */
  readonly path: string
  readonly message: string
}

export class ConfigError extends TributaryError {
  readonly problems: readonly ConfigProblem[]

  constructor(problems: readonly ConfigProblem[], source: string) {
    super('TRIB_CONFIG_INVALID', `${source}\n${problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`)
    this.problems = problems
  }
}

type Tree = { [key: string]: unknown }

function isTree(value: unknown): value is Tree {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function merge(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base }
  for (const [key, value] of Object.entries(over)) {
    const prev = out[key]
    out[key] = isTree(prev) && isTree(value) ? merge(prev, value) : value
  }
  return out
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}

/** The repository root when running from a git checkout, else null. */
function checkoutRoot(): string | null {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
  return existsSync(join(root, '.git')) ? root : null
}

/** `./data` of the checkout when run from one, the system state directory otherwise. */
export function defaultDataDir(): string {
  const root = checkoutRoot()
  return root === null ? SYSTEM_DATA_DIR : join(root, 'data')
}

/** Parses a YAML config file into a plain tree, reporting YAML errors with line numbers. */
export function readConfigFile(path: string): Tree {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new TributaryError('TRIB_CONFIG_UNREADABLE', `${path}: ${(err as Error).message}`, { cause: err })
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true })
  if (doc.errors.length > 0) {
    throw new TributaryError(
      'TRIB_CONFIG_UNREADABLE',
      `${path}: ${doc.errors.map((e) => e.message).join('; ')}`,
    )
  }
  const tree: unknown = doc.toJS() ?? {}
  if (!isTree(tree)) {
    throw new TributaryError('TRIB_CONFIG_UNREADABLE', `${path}: the top level must be a mapping of settings`)
  }
  return tree
}

const ENV_FIELDS: Record<string, { path: readonly string[]; type: 'string' | 'int' | 'port-or-off' }> = {
  TRIBUTARY_DATA_DIR: { path: ['dataDir'], type: 'string' },
  TRIBUTARY_LOG_LEVEL: { path: ['logLevel'], type: 'string' },
  TRIBUTARY_MQTT_HOST: { path: ['mqtt', 'host'], type: 'string' },
  TRIBUTARY_MQTT_PORT: { path: ['mqtt', 'port'], type: 'int' },
  TRIBUTARY_MAX_PAYLOAD_BYTES: { path: ['limits', 'maxPayloadBytes'], type: 'int' },
  TRIBUTARY_UNMATCHED: { path: ['unmatched'], type: 'string' },
  TRIBUTARY_HTTP_HOST: { path: ['http', 'host'], type: 'string' },
  TRIBUTARY_HTTP_PORT: { path: ['http', 'port'], type: 'port-or-off' },
  TRIBUTARY_HTTP_TOKEN: { path: ['http', 'token'], type: 'string' },
  TRIBUTARY_HTTP_TOKEN_FILE: { path: ['http', 'tokenFile'], type: 'string' },
  TRIBUTARY_CLUSTER_NAME: { path: ['cluster', 'name'], type: 'string' },
  TRIBUTARY_CLUSTER_SECRET_FILE: { path: ['cluster', 'secretFile'], type: 'string' },
  TRIBUTARY_CLUSTER_CERT_FILE: { path: ['cluster', 'tls', 'certFile'], type: 'string' },
  TRIBUTARY_CLUSTER_KEY_FILE: { path: ['cluster', 'tls', 'keyFile'], type: 'string' },
  TRIBUTARY_CLUSTER_CA_FILE: { path: ['cluster', 'tls', 'caFile'], type: 'string' },
  TRIBUTARY_REPLICATION_PORT: { path: ['cluster', 'replicationPort'], type: 'int' },
}

/** `off` (any case) disables the admin API; anything else must be an integer port. */
export function parsePortOrOff(raw: string): number | null | undefined {
  if (raw.trim().toLowerCase() === 'off') return null
  const n = Number(raw)
  return raw.trim() !== '' && Number.isInteger(n) ? n : undefined
}

/** True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1')
  return (
    h === 'localhost' ||
    h === '::1' ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) ||
    /^::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)
  )
}
/** Read by the CLI to find the config file, not a setting itself. */
const ENV_CONFIG_PATH = 'TRIBUTARY_CONFIG'

function setPath(tree: Tree, path: readonly string[], value: unknown): Tree {
  const [head, ...rest] = path
  if (head === undefined) return tree
  if (rest.length === 0) return { ...tree, [head]: value }
  const child = tree[head]
  return { ...tree, [head]: setPath(isTree(child) ? child : {}, rest, value) }
}

function fromEnv(env: NodeJS.ProcessEnv, problems: ConfigProblem[]): Tree {
  let tree: Tree = {}
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('TRIBUTARY_') || raw === undefined || name === ENV_CONFIG_PATH) continue
    const field = ENV_FIELDS[name]
    if (field === undefined) {
      problems.push({
        path: `env ${name}`,
        message: `unknown setting; known: ${Object.keys(ENV_FIELDS).join(', ')}`,
      })
      continue
    }
    if (field.type === 'port-or-off') {
      const port = parsePortOrOff(raw)
      if (port === undefined) {
        problems.push({ path: `env ${name}`, message: `expected a port number or "off", got "${raw}"` })
        continue
      }
      tree = setPath(tree, field.path, port)
    } else if (field.type === 'int') {
      const n = Number(raw)
      if (!Number.isInteger(n)) {
        problems.push({ path: `env ${name}`, message: `expected an integer, got "${raw}"` })
        continue
      }
      tree = setPath(tree, field.path, n)
    } else {
      tree = setPath(tree, field.path, raw)
    }
  }
  return tree
}

function fromFlags(flags: ConfigFlags): Tree {
  let tree: Tree = {}
  if (flags.dataDir !== undefined) tree = setPath(tree, ['dataDir'], flags.dataDir)
  if (flags.logLevel !== undefined) tree = setPath(tree, ['logLevel'], flags.logLevel)
  if (flags.mqttHost !== undefined) tree = setPath(tree, ['mqtt', 'host'], flags.mqttHost)
  if (flags.mqttPort !== undefined) tree = setPath(tree, ['mqtt', 'port'], flags.mqttPort)
  if (flags.httpHost !== undefined) tree = setPath(tree, ['http', 'host'], flags.httpHost)
  if (flags.httpPort !== undefined)
    tree = setPath(tree, ['http', 'port'], flags.httpPort === 'off' ? null : flags.httpPort)
  if (flags.cluster !== undefined) tree = setPath(tree, ['cluster', 'name'], flags.cluster)
  if (flags.clusterSecretFile !== undefined)
    tree = setPath(tree, ['cluster', 'secretFile'], flags.clusterSecretFile)
  if (flags.clusterCert !== undefined) tree = setPath(tree, ['cluster', 'tls', 'certFile'], flags.clusterCert)
  if (flags.clusterKey !== undefined) tree = setPath(tree, ['cluster', 'tls', 'keyFile'], flags.clusterKey)
  if (flags.clusterCa !== undefined) tree = setPath(tree, ['cluster', 'tls', 'caFile'], flags.clusterCa)
  if (flags.replicationPort !== undefined)
    tree = setPath(tree, ['cluster', 'replicationPort'], flags.replicationPort)
  return tree
}

/** The --peer addresses, appended to the file's cluster.peers. */
function peersFromFlags(flags: ConfigFlags, file: Tree): Tree {
  if (flags.peers === undefined || flags.peers.length === 0) return {}
  const fileCluster = isTree(file.cluster) ? file.cluster : {}
  const peers = Array.isArray(fileCluster.peers) ? [...fileCluster.peers, ...flags.peers] : [...flags.peers]
  return { cluster: { peers } }
}

/** The --sink URLs as `sinks:` entries, appended to those of the file. */
function sinksFromFlags(flags: ConfigFlags, file: Tree, problems: ConfigProblem[]): Tree {
  if (flags.sinks === undefined || flags.sinks.length === 0) return {}
  const sinks: unknown[] = Array.isArray(file.sinks) ? [...file.sinks] : []
  for (const url of flags.sinks) {
    try {
      sinks.push(sinkFromUrl(url))
    } catch (err) {
      problems.push({ path: `--sink ${url}`, message: (err as Error).message })
    }
  }
  return { sinks }
}

function toProblems(issues: readonly z.core.$ZodIssue[]): ConfigProblem[] {
  return issues.map((issue) => ({
    path: issue.path.length === 0 ? '(top level)' : issue.path.map(String).join('.'),
    message: issue.message,
  }))
}

/** The implicit "default" stream that catches unmatched publishes when `unmatched: store`. */
function withDefaultStream(config: Config): Config {
  if (config.unmatched !== 'store' || config.streams.some((s) => s.name === DEFAULT_STREAM_NAME))
    return config
  const implicit: StreamConfig = streamSchema.parse({
    ...clusterStreamDefaults(config.cluster !== null, {}),
    name: DEFAULT_STREAM_NAME,
  })
  return { ...config, streams: [...config.streams, implicit] }
}

/** The stream a stream's undeliverable records go to. */
export function deadLetterStreamOf(stream: StreamConfig): string {
  return stream.deadLetter ?? `${stream.name}${DEAD_LETTER_SUFFIX}`
}

/**
 * With sinks configured, every stream gets its dead-letter stream: one
 * partition, no topic filter (only sinks write to it), the parent's retention.
 * Named ones that are declared streams are left as declared.
 */
function withDeadLetterStreams(config: Config): Config {
  if (config.sinks.length === 0) return config
  const declared = new Set(config.streams.map((s) => s.name))
  const implicit: StreamConfig[] = []
  for (const stream of config.streams) {
    const name = deadLetterStreamOf(stream)
    if (declared.has(name)) continue
    declared.add(name)
    implicit.push(
      streamSchema.parse({
        ...clusterStreamDefaults(config.cluster !== null, {}),
        name,
        deadLetter: name,
        retention: stream.retention,
      }),
    )
  }
  return { ...config, streams: [...config.streams, ...implicit] }
}

/**
 * In a cluster a stream's partitions are held by `replicas` nodes (default
 * 2) and `minInsync` defaults to 2 unless it holds fewer: filled in on the
 * raw tree, before the schema's own defaults (1 replica alone).
 */
function clusterStreamDefaults(clustered: boolean, stream: Tree): Tree {
  if (!clustered) return stream
  const replicas = stream.replicas ?? DEFAULT_CLUSTER_REPLICAS
  const minInsync =
    stream.minInsync ??
    (typeof replicas === 'number' && replicas >= 1 ? Math.min(DEFAULT_MIN_INSYNC, replicas) : undefined)
  return { ...stream, replicas, ...(minInsync === undefined ? {} : { minInsync }) }
}

function withClusterStreamDefaults(tree: Tree): Tree {
  const clustered = isTree(tree.cluster)
  if (!clustered || !Array.isArray(tree.streams)) return tree
  const streams: unknown[] = tree.streams
  return { ...tree, streams: streams.map((s) => (isTree(s) ? clusterStreamDefaults(clustered, s) : s)) }
}

/**
 * Streams that acknowledge after replication need a cluster to replicate in
 * and a copy on another node; minInsync counts nodes among the `replicas`;
 * a cluster authenticates one way (clusterAuthProblems).
 */
function clusterProblems(config: Config): ConfigProblem[] {
  const auth = config.cluster === null ? [] : clusterAuthProblems(config.cluster)
  return [
    ...auth,
    ...config.streams.flatMap((stream, i): ConfigProblem[] => {
      if (config.cluster === null) {
        if (stream.ack === 'replicated')
          return [
            { path: `streams.${i}.ack`, message: 'replicated needs a cluster: section (or --cluster NAME)' },
          ]
        if (stream.replicas > 1)
          return [
            {
              path: `streams.${i}.replicas`,
              message: `${stream.replicas} replicas need a cluster: section (or --cluster NAME); alone it is 1`,
            },
          ]
        return []
      }
      if (stream.ack === 'replicated' && stream.replicas < 2)
        return [
          {
            path: `streams.${i}.replicas`,
            message: 'ack: replicated needs a copy on another node: replicas of at least 2 (or ack: durable)',
          },
        ]
      if (stream.minInsync > stream.replicas)
        return [
          {
            path: `streams.${i}.minInsync`,
            message: `${stream.minInsync} is more than replicas (${stream.replicas}): at most the nodes that hold the partition can hold a record`,
          },
        ]
      return []
    }),
  ]
}

/** A cluster authenticates its links one way: a shared secret or certificates, exactly one. */
function clusterAuthProblems(cluster: ClusterConfig): ConfigProblem[] {
  if (cluster.secretFile !== undefined && cluster.tls !== undefined)
    return [
      {
        path: 'cluster.tls',
        message: 'give cluster.secretFile (a shared secret) or cluster.tls (certificates), not both',
      },
    ]
  if (cluster.secretFile === undefined && cluster.tls === undefined)
    return [
      {
        path: 'cluster.secretFile',
        message:
          'required: cluster.secretFile (tributary cluster init writes one) or cluster.tls { certFile, keyFile, caFile }',
      },
    ]
  return []
}

/** Checks that need the parsed config: what sinks refer to. */
function sinkProblems(config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const streams = new Set(config.streams.map((s) => s.name))
  const names = new Set<string>()
  config.sinks.forEach((sink, i) => {
    if (names.has(sink.name))
      problems.push({ path: `sinks.${i}.name`, message: `sink "${sink.name}" is declared twice` })
    names.add(sink.name)
    sink.streams.forEach((name, j) => {
      if (name !== '*' && !streams.has(name))
        problems.push({ path: `sinks.${i}.streams.${j}`, message: `no stream "${name}"` })
    })
    if (sink.type === 'kafka' && sink.exactlyOnce && sink.drainOrder === 'newest-first')
      problems.push({
        path: `sinks.${i}.drainOrder`,
        message: 'exactly-once keeps one forward position per partition: use oldest-first',
      })
    if (sink.retry.maxMs < sink.retry.initialMs)
      problems.push({ path: `sinks.${i}.retry.maxMs`, message: 'must be at least retry.initialMs' })
  })
  return problems
}

/**
 * Checks across fields, run on the raw tree so they are reported together with
 * the schema's problems (zod skips refinements once any field is invalid).
 */
function crossFieldProblems(tree: Tree): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const streams = tree.streams
  if (!Array.isArray(streams)) return problems
  const seen = new Set<string>()
  const deadLetters = new Set(
    streams.flatMap((s: unknown) => (isTree(s) && typeof s.deadLetter === 'string' ? [s.deadLetter] : [])),
  )
  streams.forEach((stream: unknown, i) => {
    if (!isTree(stream) || typeof stream.name !== 'string') return
    if (seen.has(stream.name)) {
      problems.push({ path: `streams.${i}.name`, message: `stream "${stream.name}" is declared twice` })
    }
    seen.add(stream.name)
    const match = stream.match
    const noFilter = match === undefined || (Array.isArray(match) && match.length === 0)
    if (noFilter && stream.name !== DEFAULT_STREAM_NAME && !deadLetters.has(stream.name)) {
      problems.push({
        path: `streams.${i}.match`,
        message: 'at least one MQTT topic filter (only "default" and dead-letter streams may have none)',
      })
    }
  })
  return problems
}

/**
 * The admin API off loopback serves records and metrics to the network: it
 * must have a bearer token, and only one source of it.
 */
function httpProblems(config: Config): ConfigProblem[] {
  const { http } = config
  if (http.token !== undefined && http.tokenFile !== undefined)
    return [{ path: 'http.tokenFile', message: 'give http.token or http.tokenFile, not both' }]
  if (http.port === null || isLoopbackHost(http.host)) return []
  if (http.token === undefined && http.tokenFile === undefined)
    return [
      {
        path: 'http.token',
        message: `the admin API listens on ${http.host}, beyond loopback: set http.token or http.tokenFile (or listen on 127.0.0.1)`,
      },
    ]
  return []
}

/** Validates a merged tree; returns the config or the list of problems. */
export function validateConfig(
  tree: Tree,
): { config: Config; problems: [] } | { config: null; problems: ConfigProblem[] } {
  const result = configSchema.safeParse(withClusterStreamDefaults(tree))
  const problems = [...(result.success ? [] : toProblems(result.error.issues)), ...crossFieldProblems(tree)]
  if (!result.success || problems.length > 0) return { config: null, problems }
  const config = withDeadLetterStreams(withDefaultStream(result.data))
  const late = [...sinkProblems(config), ...httpProblems(config), ...clusterProblems(config)]
  if (late.length > 0) return { config: null, problems: late }
  return { config, problems: [] }
}

/** Which config file applies: the flag, then TRIBUTARY_CONFIG, then the system path when present. */
export function configPath(flags: ConfigFlags, env: NodeJS.ProcessEnv): string | null {
  if (flags.config !== undefined) return flags.config
  const fromEnvPath = env[ENV_CONFIG_PATH]
  if (fromEnvPath !== undefined && fromEnvPath !== '') return fromEnvPath
  return existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : null
}

/** Loads, merges, validates and freezes the configuration. Throws ConfigError listing every problem. */
export function loadConfig(flags: ConfigFlags, env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const path = configPath(flags, env)
  const problems: ConfigProblem[] = []
  let tree: Tree = { dataDir: defaultDataDir() }
  if (path !== null) tree = merge(tree, readConfigFile(path))
  tree = merge(tree, fromEnv(env, problems))
  tree = merge(tree, fromFlags(flags))
  tree = { ...tree, ...sinksFromFlags(flags, tree, problems) }
  tree = merge(tree, peersFromFlags(flags, tree))
  const result = validateConfig(tree)
  problems.push(...result.problems)
  if (result.config === null || problems.length > 0) {
    throw new ConfigError(problems, path === null ? 'configuration' : `configuration from ${path}`)
  }
  return deepFreeze(result.config)
}

/** `tributary config check FILE`: every problem of one file on its own (defaults applied). */
export function checkConfigFile(path: string): ConfigProblem[] {
  const tree = merge({ dataDir: defaultDataDir() }, readConfigFile(path))
  return validateConfig(tree).problems
}
