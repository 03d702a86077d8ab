import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, checkConfigFile, loadConfig } from '../../src/config/load.ts'
import { isTributaryError } from '../../src/errors.ts'
import { tempDir } from '../helpers/temp-dir.ts'

let dir: Awaited<ReturnType<typeof tempDir>>
const file = (name: string, text: string): string => {
  const path = join(dir.path, name)
  writeFileSync(path, text)
  return path
}

beforeAll(async () => {
  dir = await tempDir()
})
afterAll(() => dir.remove())

describe('config', () => {
  it('works with no file at all: one default stream keyed by client id', () => {
    const config = loadConfig({ dataDir: '/tmp/d' }, {})
    expect(config.mqtt).toEqual({ host: '0.0.0.0', port: 1883 })
    expect(config.streams).toEqual([
      expect.objectContaining({ name: 'default', partitions: 1, key: { from: 'client-id' } }),
    ])
    expect(Object.isFrozen(config.streams[0])).toBe(true)
  })

  it('layers defaults < file < environment < flags', () => {
    const path = file('layers.yaml', 'mqtt:\n  port: 1000\n  host: 10.0.0.1\nlogLevel: warn\n')
    const config = loadConfig(
      { config: path, mqttPort: 3000 },
      { TRIBUTARY_MQTT_PORT: '2000', TRIBUTARY_LOG_LEVEL: 'debug', TRIBUTARY_DATA_DIR: '/tmp/e' },
    )
    expect(config.mqtt).toEqual({ host: '10.0.0.1', port: 3000 })
    expect(config.logLevel).toBe('debug')
    expect(config.dataDir).toBe('/tmp/e')
  })

  it('lists every problem with its path', () => {
    const path = file(
      'bad.yaml',
      [
        'mqtt:',
        '  port: 70000',
        'colour: blue',
        'streams:',
        '  - name: temps',
        '    match: ["sensors/#/x"]',
        '    partitions: 0',
        '  - name: temps',
        '    match: ["a"]',
        '    key: { from: topic-level }',
        '    ack: sometimes',
      ].join('\n'),
    )
    const problems = checkConfigFile(path)
    const paths = problems.map((p) => p.path)
    expect(paths).toEqual(
      expect.arrayContaining([
        'mqtt.port',
        '(top level)',
        'streams.0.match.0',
        'streams.0.partitions',
        'streams.1.key.level',
        'streams.1.ack',
      ]),
    )
    expect(() => loadConfig({ config: path }, {})).toThrow(ConfigError)
  })

  it('reports duplicate stream names and streams without filters', () => {
    const path = file(
      'dup.yaml',
      'streams:\n  - { name: a, match: [x] }\n  - { name: a, match: [y] }\n  - { name: b }\n',
    )
    expect(checkConfigFile(path).map((p) => p.path)).toEqual(['streams.1.name', 'streams.2.match'])
  })

  it('rejects bad environment values and unknown TRIBUTARY_ variables', () => {
    try {
      loadConfig({ dataDir: '/tmp/d' }, { TRIBUTARY_MQTT_PORT: 'abc', TRIBUTARY_COLOUR: 'blue' })
      expect.unreachable()
    } catch (err) {
      expect(isTributaryError(err, 'TRIB_CONFIG_INVALID')).toBe(true)
      expect((err as ConfigError).problems.map((p) => p.path)).toEqual([
        'env TRIBUTARY_MQTT_PORT',
        'env TRIBUTARY_COLOUR',
      ])
    }
  })

  it('has the admin API on loopback by default, set by file, environment and flags', () => {
    expect(loadConfig({ dataDir: '/tmp/d' }, {}).http).toMatchObject({ host: '127.0.0.1', port: 8080 })
    const path = file('http.yaml', 'http:\n  port: 9000\n  token: file-token-0123456789\n')
    expect(loadConfig({ config: path }, { TRIBUTARY_HTTP_PORT: '9001' }).http.port).toBe(9001)
    expect(loadConfig({ config: path, httpPort: 9002 }, { TRIBUTARY_HTTP_PORT: '9001' }).http.port).toBe(9002)
    expect(loadConfig({ dataDir: '/tmp/d' }, { TRIBUTARY_HTTP_PORT: 'off' }).http.port).toBeNull()
    expect(loadConfig({ dataDir: '/tmp/d', httpPort: 'off' }, {}).http.port).toBeNull()
    expect(loadConfig({ config: path, httpHost: '0.0.0.0' }, {}).http.host).toBe('0.0.0.0')
  })

  it('refuses an admin API beyond loopback without a token', () => {
    const problemsOf = (flags: Parameters<typeof loadConfig>[0], env: NodeJS.ProcessEnv = {}) => {
      try {
        loadConfig({ dataDir: '/tmp/d', ...flags }, env)
        return []
      } catch (err) {
        expect(isTributaryError(err, 'TRIB_CONFIG_INVALID')).toBe(true)
        return (err as ConfigError).problems.map((p) => p.path)
      }
    }
    expect(problemsOf({ httpHost: '0.0.0.0' })).toEqual(['http.token'])
    expect(problemsOf({ httpHost: '192.168.1.5' })).toEqual(['http.token'])
    expect(problemsOf({ httpHost: '0.0.0.0' }, { TRIBUTARY_HTTP_TOKEN: 'env-token-0123456789' })).toEqual([])
    expect(problemsOf({ httpHost: '0.0.0.0' }, { TRIBUTARY_HTTP_TOKEN_FILE: '/run/secrets/t' })).toEqual([])
    expect(problemsOf({ httpHost: '0.0.0.0', httpPort: null })).toEqual([])
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost'])
      expect(problemsOf({ httpHost: host })).toEqual([])
    expect(problemsOf({}, { TRIBUTARY_HTTP_TOKEN: 'short' })).toEqual(['http.token'])
    expect(problemsOf({}, { TRIBUTARY_HTTP_PORT: 'eighty' })).toEqual(['env TRIBUTARY_HTTP_PORT'])
  })

  it('gives unreadable and non-YAML files their own code', () => {
    expect(() => checkConfigFile(join(dir.path, 'missing.yaml'))).toThrow(
      expect.objectContaining({ code: 'TRIB_CONFIG_UNREADABLE' }),
    )
    const broken = file('broken.yaml', 'streams: [\n')
    expect(() => checkConfigFile(broken)).toThrow(expect.objectContaining({ code: 'TRIB_CONFIG_UNREADABLE' }))
  })
})

describe('docs/tributary.example.yaml', () => {
  it('is a valid config', () => {
    expect(checkConfigFile(join(import.meta.dirname, '..', '..', 'docs', 'tributary.example.yaml'))).toEqual(
      [],
    )
  })
})

describe('replicas', () => {
  const cluster = 'cluster: { name: plant, secretFile: /tmp/none.secret, mdns: false }'

  it('defaults to 2 in a cluster (minInsync 2) and to 1 alone; minInsync follows a smaller replicas', () => {
    const alone = loadConfig({ config: file('alone.yaml', 'streams: [{ name: a, match: [a] }]\n') }, {})
    expect(alone.streams.map((s) => [s.name, s.replicas])).toEqual([
      ['a', 1],
      ['default', 1],
    ])
    const clustered = loadConfig(
      {
        config: file(
          'clustered.yaml',
          `${cluster}\nstreams: [{ name: a, match: [a] }, { name: b, match: [b], replicas: 1 }, { name: c, match: [c], replicas: 3 }]\n`,
        ),
      },
      {},
    )
    expect(clustered.streams.map((s) => [s.name, s.replicas, s.minInsync])).toEqual([
      ['a', 2, 2],
      ['b', 1, 1],
      ['c', 3, 2],
      ['default', 2, 2],
    ])
  })

  it('refuses minInsync above replicas, replicas below 1, ack: replicated with one replica, and replicas alone', () => {
    const problems = (name: string, text: string) =>
      checkConfigFile(file(name, text)).map((p) => `${p.path}: ${p.message}`)
    expect(
      problems('over.yaml', `${cluster}\nstreams: [{ name: a, match: [a], replicas: 2, minInsync: 3 }]\n`),
    ).toEqual([expect.stringMatching(/^streams\.0\.minInsync: 3 is more than replicas \(2\)/)])
    expect(problems('zero.yaml', `${cluster}\nstreams: [{ name: a, match: [a], replicas: 0 }]\n`)).toEqual([
      expect.stringMatching(/^streams\.0\.replicas: /),
    ])
    expect(
      problems('one.yaml', `${cluster}\nstreams: [{ name: a, match: [a], ack: replicated, replicas: 1 }]\n`),
    ).toEqual([expect.stringMatching(/^streams\.0\.replicas: ack: replicated needs a copy on another node/)])
    expect(problems('lone.yaml', 'streams: [{ name: a, match: [a], replicas: 2 }]\n')).toEqual([
      expect.stringMatching(/^streams\.0\.replicas: 2 replicas need a cluster/),
    ])
    let thrown: unknown
    try {
      loadConfig(
        { config: file('throw.yaml', `${cluster}\nstreams: [{ name: a, match: [a], minInsync: 3 }]\n`) },
        {},
      )
    } catch (err) {
      thrown = err
    }
    expect(thrown).toBeInstanceOf(ConfigError)
    expect(isTributaryError(thrown, 'TRIB_CONFIG_INVALID')).toBe(true)
  })
})
