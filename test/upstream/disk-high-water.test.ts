// The disk high-water mark on a real small disk (a tmpfs the test mounts; CI
// runs as root): a `dropOldest` stream deletes its oldest records, including
// ones the sink had not forwarded, and a gap record with the right range and
// count reaches upstream once the uplink returns; a `reject` stream refuses
// new publishes (TRIB_DISK_FULL) while the disk stays above the mark.

import { execFileSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { GAP_HEADER, type GapRecord } from '../../src/log/gap-record.ts'
import { HttpReceiver } from '../helpers/http-receiver.ts'
import { Cleanup, waitFor } from '../helpers/integration.ts'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

async function smallDisk(megabytes: number): Promise<string> {
  const mountPoint = join(await cleanup.dir('tributary-hwm-'), 'small-disk')
  mkdirSync(mountPoint)
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${megabytes}m`, 'tmpfs', mountPoint])
  cleanup.defer(`umount ${mountPoint}`, () => execFileSync('umount', [mountPoint]))
  return join(mountPoint, 'data')
}

describe('disk high-water mark', () => {
  it('reject: a publish to the stream is refused with TRIB_DISK_FULL while the disk is above the mark', async () => {
    // A mark of 1%: every disk is above it, so the guard says full from the start.
    const { url, node } = await cleanup.node({
      config: {
        limits: { diskHighWaterPercent: 1, diskCheckMs: 100 },
        streams: [{ name: 'alarms', match: ['alarms/#'], onFull: 'reject' }],
      },
    })
    expect(node.disk.full).toBe(true)
    const client = await cleanup.mqtt(url, { protocolVersion: 5 })
    const reasons: string[] = []
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'puback' && packet.properties?.reasonString !== undefined)
        reasons.push(packet.properties.reasonString)
    })
    await expect(client.publishAsync('alarms/a1', 'fire', { qos: 1 })).rejects.toThrow()
    expect(reasons).toEqual([expect.stringMatching(/^TRIB_DISK_FULL: /)])
    expect(node.store.partitions().find((p) => p.stream === 'alarms')?.nextOffset).toBe(0)
  })

  it('dropOldest deletes unforwarded records and sends a gap record upstream', async () => {
    const dataDir = await smallDisk(24)
    const rx = new HttpReceiver()
    await rx.start()
    cleanup.defer('stop receiver', () => rx.stop())
    await rx.stop()
    const { url, node } = await cleanup.node({
      dataDir,
      config: {
        limits: { diskHighWaterPercent: 50, diskCheckMs: 100, segmentBytes: 1024 * 1024 },
        streams: [{ name: 'sensors', match: ['sensors/#'], onFull: 'dropOldest', key: { from: 'none' } }],
        sinks: [{ name: 'hq', type: 'http', url: rx.url, lingerMs: 0, retry: { initialMs: 50, maxMs: 200 } }],
      },
    })
    const client = await cleanup.mqtt(url, { protocolVersion: 5 })
    const payload = Buffer.alloc(50_000, 7)
    const sensors = () => node.store.partitions().find((p) => p.stream === 'sensors')
    // Fill until the guard has dropped the oldest records (it runs every 100 ms).
    let published = 0
    for (; published < 400 && (sensors()?.firstOffset ?? 0) === 0; published++) {
      await client.publishAsync('sensors/bulk', payload, { qos: 1 })
    }
    await waitFor(() => (sensors()?.firstOffset ?? 0) > 0, 'the guard dropping the oldest records')
    await waitFor(() => !node.disk.full, 'the guard freeing the disk', { timeoutMs: 20_000 })

    await rx.start()
    const isGap = (headers: readonly (readonly [string, string])[]): boolean =>
      headers.some(([n]) => n === GAP_HEADER)
    await client.endAsync()
    const next = sensors()?.nextOffset ?? 0
    const stored = next - (sensors()?.firstOffset ?? 0)
    await waitFor(
      () => new Set(rx.delivered.map((r) => r.offset)).size >= stored,
      'every stored record upstream',
    )

    // Every offset of the partition is accounted for once: delivered (data or gap record) or inside a gap.
    const gaps = rx.delivered.filter((r) => isGap(r.headers))
    expect(gaps.length).toBeGreaterThan(0)
    const ranges = gaps.map((r) => JSON.parse(r.payload) as GapRecord)
    for (const [i, row] of gaps.entries()) {
      expect(row.topic).toBe('$tributary/gap/sensors/0')
      expect(ranges[i]).toMatchObject({ stream: 'sensors', partition: 0 })
      expect(ranges[i]?.count).toBe((ranges[i]?.to ?? 0) - (ranges[i]?.from ?? 0) + 1)
    }
    expect(ranges[0]?.from).toBe(0)
    const accounted = new Map<number, number>()
    const count = (offset: number): void => {
      accounted.set(offset, (accounted.get(offset) ?? 0) + 1)
    }
    for (const r of rx.delivered) count(r.offset)
    for (const g of ranges) for (let o = g.from; o <= g.to; o++) count(o)
    expect([...accounted.keys()].sort((a, b) => a - b)).toEqual([...Array(next).keys()])
    expect([...accounted.values()].every((n) => n === 1)).toBe(true)
    expect(published).toBeGreaterThan(10)
  })
})
