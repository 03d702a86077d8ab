import { describe, expect, it } from 'vitest'
import { Metrics, procWrittenBytes } from '../../src/observability/metrics.ts'

function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  if (line === undefined) return undefined
  const value = line.slice(name.length + 1)
  return value === '+Inf' ? Number.POSITIVE_INFINITY : Number(value)
}

describe('metrics', () => {
  it('projects the storage endurance from the write rate since start', async () => {
    let written = 1_000
    let now = 0
    const metrics = new Metrics({ storageEnduranceTBW: 1, readWrittenBytes: () => written, nowMs: () => now })
    expect(metrics.enduranceDays(1)).toBeNull()
    expect(sample(await metrics.text(), 'tributary_storage_endurance_days')).toBe(Number.POSITIVE_INFINITY)
    // 1 GB in one day: 1 TB lasts 1000 days.
    written += 1e9
    now += 86_400_000
    expect(metrics.writtenBytes()).toBe(1e9)
    expect(metrics.enduranceDays(1)).toBeCloseTo(1000, 6)
    expect(metrics.enduranceDays(null)).toBeNull()
    const text = await metrics.text()
    expect(sample(text, 'tributary_storage_endurance_days')).toBeCloseTo(1000, 3)
    expect(sample(text, 'tributary_disk_written_bytes_total')).toBe(1e9)
  })

  it('leaves the projection out without a rating, and wear out where /proc/self/io cannot be read', async () => {
    const metrics = new Metrics({ storageEnduranceTBW: null, readWrittenBytes: () => null })
    const text = await metrics.text()
    expect(text).not.toContain('tributary_storage_endurance_days')
    expect(sample(text, 'tributary_disk_written_bytes_total')).toBeUndefined()
    expect(procWrittenBytes('/nonexistent/io')).toBeNull()
  })

  it('reads state from the sources at scrape time, once per scrape', async () => {
    const metrics = new Metrics({ storageEnduranceTBW: null })
    let sinkReads = 0
    let followerReads = 0
    metrics.setSources({
      partitions: () => [{ stream: 's', partition: 0, firstOffset: 2, nextOffset: 9, bytes: 700 }],
      sinks: () => {
        sinkReads++
        return [
          {
            sink: 'hq',
            stream: 's',
            partition: 0,
            state: 'running',
            cursor: 6,
            nextOffset: 9,
            lagRecords: 3,
            lagBytes: 300,
            lagSeconds: 1.5,
            forwarded: 4,
            deadLettered: 1,
            retries: 2,
            stuckRestarts: 0,
            lastError: null,
          },
        ]
      },
      peers: () => [
        {
          nodeId: 'node-b',
          state: 'connected',
          rttMs: 2.5,
          copies: [{ stream: 's', partition: 0, lagRecords: 4 }],
        },
        { nodeId: null, state: 'connecting', rttMs: null, copies: [] },
      ],
      replicated: () => [{ stream: 's', partition: 0, replicatedNext: 8 }],
      followers: () => {
        followerReads++
        return [
          {
            stream: 's',
            partition: 0,
            followers: [
              { follower: 'node-b', inSync: true, lagRecords: 1, lagBytes: 100, lagSeconds: 0.2 },
              { follower: 'node-c', inSync: false, lagRecords: 5, lagBytes: 500, lagSeconds: 9 },
            ],
          },
        ]
      },
      connections: () => 7,
      disk: () => ({ usedPercent: 50, full: false }),
    })
    metrics.replicationRefused('TRIB_PEER_REFUSED')
    metrics.replicaDiverged()
    metrics.replicatedAckWait(0.004, true)
    metrics.replicatedAckWait(5, false)
    metrics.replicationFetchLatency(0.003)
    const text = await metrics.text()
    expect(sinkReads).toBe(1)
    expect(followerReads).toBe(1)
    expect(sample(text, 'tributary_partition_insync_followers{stream="s",partition="0"}')).toBe(1)
    expect(sample(text, 'tributary_follower_lag_records{follower="node-c",stream="s",partition="0"}')).toBe(5)
    expect(sample(text, 'tributary_follower_lag_bytes{follower="node-b",stream="s",partition="0"}')).toBe(100)
    expect(sample(text, 'tributary_follower_lag_seconds{follower="node-c",stream="s",partition="0"}')).toBe(9)
    expect(sample(text, 'tributary_replicated_ack_wait_seconds_count{outcome="copied"}')).toBe(1)
    expect(sample(text, 'tributary_replicated_ack_wait_seconds_count{outcome="timeout"}')).toBe(1)
    expect(sample(text, 'tributary_replication_fetch_latency_seconds_bucket{le="0.005"}')).toBe(1)
    expect(sample(text, 'tributary_partition_bytes{stream="s",partition="0"}')).toBe(700)
    expect(sample(text, 'tributary_stored_bytes')).toBe(700)
    expect(sample(text, 'tributary_mqtt_connections')).toBe(7)
    expect(sample(text, 'tributary_disk_used_ratio')).toBe(0.5)
    expect(sample(text, 'tributary_sink_lag_seconds{sink="hq",stream="s",partition="0"}')).toBe(1.5)
    expect(
      sample(text, 'tributary_sink_dead_lettered_records_total{sink="hq",stream="s",partition="0"}'),
    ).toBe(1)
    expect(sample(text, 'tributary_peers_connected')).toBe(1)
    expect(sample(text, 'tributary_peer_rtt_seconds{peer="node-b"}')).toBe(0.0025)
    expect(sample(text, 'tributary_replica_lag_records{origin="node-b",stream="s",partition="0"}')).toBe(4)
    expect(sample(text, 'tributary_replication_refused_total{code="TRIB_PEER_REFUSED"}')).toBe(1)
    expect(sample(text, 'tributary_replica_divergences_total')).toBe(1)
    expect(sample(text, 'tributary_partition_replicated_next{stream="s",partition="0"}')).toBe(8)
  })
})
