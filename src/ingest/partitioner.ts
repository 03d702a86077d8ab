// Kafka's default partitioner for keyed records: murmur2 of the key bytes
// (org.apache.kafka.common.utils.Utils.murmur2), made positive with
// `& 0x7fffffff` (Utils.toPositive), modulo the partition count. Matching it
// bit for bit means a key lands in the same partition number here and in the
// upstream Kafka topic. Hand-written because the JS ports differ: kafkajs'
// default is its non-Java "legacy" hash and @platformatic/kafka's default
// partitioner uses `>>> 0` instead of toPositive; test vectors in
// test/unit/partitioner.test.ts come from Kafka's own Java code.

const SEED = 0x9747b28c
const M = 0x5bd1e995
const R = 24

export function murmur2(data: Uint8Array): number {
  const length = data.length
  let h = SEED ^ length
  const whole = length & ~3
  for (let i = 0; i < whole; i += 4) {
    // Little-endian int, as Java's murmur2 assembles it byte by byte.
    let k =
      (data[i] ?? 0) | ((data[i + 1] ?? 0) << 8) | ((data[i + 2] ?? 0) << 16) | ((data[i + 3] ?? 0) << 24)
    k = Math.imul(k, M)
    k ^= k >>> R
    k = Math.imul(k, M)
    h = Math.imul(h, M) ^ k
  }
  const rest = length & 3
  if (rest === 3) h ^= (data[whole + 2] ?? 0) << 16
  if (rest >= 2) h ^= (data[whole + 1] ?? 0) << 8
  if (rest >= 1) {
    h ^= data[whole] ?? 0
    h = Math.imul(h, M)
  }
  h ^= h >>> 13
  h = Math.imul(h, M)
  h ^= h >>> 15
  return h | 0
}

/** Kafka's Utils.toPositive(murmur2(key)) % partitions. */
export function partitionForKey(key: Uint8Array, partitions: number): number {
  return (murmur2(key) & 0x7fffffff) % partitions
}
