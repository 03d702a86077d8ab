import { describe, expect, it } from 'vitest'
import { loadConfig, validateConfig } from '../../src/config/load.ts'
import { sinkFromUrl } from '../../src/config/sink-url.ts'

const streams = [{ name: 'sensors', match: ['sensors/#'] }]

describe('--sink URLs', () => {
  it('names the sink after its address so its cursors survive a restart with the same flag', () => {
    expect(sinkFromUrl('kafka://10.0.0.5:9092')).toEqual({
      name: 'kafka-10.0.0.5-9092',
      type: 'kafka',
      brokers: ['10.0.0.5:9092'],
    })
    expect(sinkFromUrl('http://hq.example:8080/api/ingest?format=json')).toEqual({
      name: 'http-hq.example-8080-api-ingest',
      type: 'http',
      url: 'http://hq.example:8080/api/ingest',
      format: 'json',
    })
    expect(sinkFromUrl('mqtts://hq:8883?name=central')).toMatchObject({ name: 'central', type: 'mqtt' })
  })

  it('types query parameters as the schema expects them', () => {
    expect(sinkFromUrl('kafka://k:9092?exactlyOnce=true&maxBatchBytes=65536&compression=lz4')).toMatchObject({
      exactlyOnce: true,
      maxBatchBytes: 65536,
      compression: 'lz4',
    })
  })

  it('refuses what is not a sink URL, with a reason', () => {
    expect(() => sinkFromUrl('localhost:9092')).toThrow(/not supported|not a URL/)
    expect(() => sinkFromUrl('ftp://h:21')).toThrow('"ftp:" sinks are not supported')
    expect(() => sinkFromUrl('kafka://h')).toThrow('needs a port')
  })

  it('are added to the config file sinks and validated like them', () => {
    const config = loadConfig({ dataDir: '/tmp/d', sinks: ['http://127.0.0.1:9/x'] }, {})
    expect(config.sinks).toHaveLength(1)
    expect(config.sinks[0]).toMatchObject({
      type: 'http',
      lingerMs: 100,
      maxInFlight: 4,
      stuckAfterMs: 60_000,
    })
    expect(() => loadConfig({ dataDir: '/tmp/d', sinks: ['http://127.0.0.1:9/x?format=xml'] }, {})).toThrow(
      /sinks\.0\.format/,
    )
  })
})

describe('sinks in the config', () => {
  it('give every stream a dead-letter stream, unless the stream names one', () => {
    const result = validateConfig({
      dataDir: '/tmp/d',
      streams: [...streams, { name: 'alarms', match: ['alarms/#'], deadLetter: 'rejects' }],
      sinks: [{ name: 'hq', type: 'http', url: 'http://127.0.0.1:9/' }],
    })
    const names = result.config?.streams.map((s) => s.name)
    expect(names).toEqual([
      'sensors',
      'alarms',
      'default',
      'sensors.dead-letter',
      'rejects',
      'default.dead-letter',
    ])
    const dlq = result.config?.streams.find((s) => s.name === 'sensors.dead-letter')
    expect(dlq).toMatchObject({ partitions: 1, match: [] })
  })

  it('add no dead-letter streams when there is no sink', () => {
    const result = validateConfig({ dataDir: '/tmp/d', streams })
    expect(result.config?.streams.map((s) => s.name)).toEqual(['sensors', 'default'])
  })

  it('report duplicate names, unknown streams and bad retry bounds together', () => {
    const result = validateConfig({
      dataDir: '/tmp/d',
      streams,
      sinks: [
        { name: 'hq', type: 'http', url: 'http://127.0.0.1:9/', streams: ['nope'] },
        { name: 'hq', type: 'mqtt', url: 'mqtt://127.0.0.1:1', retry: { initialMs: 500, maxMs: 10 } },
      ],
    })
    expect(result.problems).toEqual([
      { path: 'sinks.0.streams.0', message: 'no stream "nope"' },
      { path: 'sinks.1.name', message: 'sink "hq" is declared twice' },
      { path: 'sinks.1.retry.maxMs', message: 'must be at least retry.initialMs' },
    ])
  })

  it('refuse newest-first draining for an exactly-once Kafka sink', () => {
    const result = validateConfig({
      dataDir: '/tmp/d',
      sinks: [
        { name: 'k', type: 'kafka', brokers: ['h:9092'], exactlyOnce: true, drainOrder: 'newest-first' },
      ],
    })
    expect(result.problems).toEqual([
      {
        path: 'sinks.0.drainOrder',
        message: 'exactly-once keeps one forward position per partition: use oldest-first',
      },
    ])
  })

  it('check each type its own fields', () => {
    const result = validateConfig({
      dataDir: '/tmp/d',
      sinks: [
        { name: 'k', type: 'kafka', brokers: ['no-port'] },
        { name: 'm', type: 'mqtt', url: 'http://x' },
        { name: 'h', type: 'http', url: 'http://x', format: 'xml' },
      ],
    })
    expect(result.problems.map((p) => p.path)).toEqual(['sinks.0.brokers.0', 'sinks.1.url', 'sinks.2.format'])
  })
})
