import { describe, expect, it } from 'vitest'
import { murmur2, partitionForKey } from '../../src/ingest/partitioner.ts'

// Produced by Kafka's own code: org.apache.kafka.common.utils.Utils.murmur2 and
// Utils.toPositive(hash) % 12 from kafka-clients 4.1.0 (Maven Central), run on
// the UTF-8 bytes of each key. [key, murmur2, partition of 12]
const KAFKA_VECTORS: ReadonlyArray<readonly [string, number, number]> = [
  ['', 275646681, 9],
  ['a', -1563381124, 4],
  ['ab', 316155434, 2],
  ['abc', 479470107, 3],
  ['abcd', -1323649548, 8],
  ['sensor-17', -837888613, 7],
  ['device/42', -1744353602, 6],
  ['21', -973932308, 0],
  ['foobar', -790332482, 6],
  ['a-little-bit-long-string', -985981536, 8],
  ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971, 5],
  ['été-温度', -1293554513, 3],
]

describe('partitioner', () => {
  it.each(KAFKA_VECTORS)('murmur2(%j) matches Kafka', (key, hash, partition) => {
    const bytes = Buffer.from(key, 'utf8')
    expect(murmur2(bytes)).toBe(hash)
    expect(partitionForKey(bytes, 12)).toBe(partition)
  })

  it('always yields a partition in range', () => {
    for (let i = 0; i < 1000; i++) {
      const p = partitionForKey(Buffer.from(`k${i}`), 7)
      expect(p).toBeGreaterThanOrEqual(0)
      expect(p).toBeLessThan(7)
    }
  })
})
