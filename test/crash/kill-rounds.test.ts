// kill -9 under QoS 1 and QoS 2 load: every message whose PUBACK (QoS 1) or
// PUBREC (QoS 2) reached the publisher is in the log after the broker is
// SIGKILLed at a random moment and its data dir reopened, round after round on
// the same, growing data dir (TESTING.md: "acked but missing" must be 0 in
// `durable` mode). No message, acked or not, may be stored twice: nothing is
// retransmitted across rounds, so a second copy could only come from the
// broker. SIGKILL keeps the page cache, so this shows what a process crash may
// lose, not the disk's durability: fsync-before-ack.test.ts proves the ordering.

import { afterEach, describe, expect, it } from 'vitest'
import type { ChildBroker } from '../helpers/child.ts'
import { formatRound, restartAndStop, runKillRounds, writeCrashConfig } from '../helpers/kill-rounds.ts'
import { tempDir } from '../helpers/temp-dir.ts'

const ROUNDS = 10

describe.each([1, 2] as const)('kill -9 during QoS %i load', (qos) => {
  let broker: ChildBroker | null = null
  let dir: Awaited<ReturnType<typeof tempDir>> | null = null
  const track = (b: ChildBroker | null): void => {
    broker = b
  }

  afterEach(async () => {
    // Only the child this test started, by its pid.
    if (broker !== null) await broker.kill('SIGKILL')
    broker = null
    await dir?.remove()
    dir = null
  })

  it(`loses and duplicates no acked message over ${ROUNDS} kills on one data dir`, async () => {
    dir = await tempDir(`tributary-crash-q${qos}-`)
    const config = writeCrashConfig(dir.path)
    const label = `qos${qos}`
    const { reports, everAcked } = await runKillRounds(
      { dataDir: dir.path, qos, rounds: ROUNDS, publishers: 4, window: 16, minKillMs: 200, maxKillMs: 1500 },
      config,
      (r) => console.log(formatRound(label, r, ROUNDS)),
      track,
    )
    for (const r of reports) {
      expect(r.missing, `round ${r.round}: acked but missing`).toEqual([])
      expect(r.ackedDuplicates, `round ${r.round}: acked and stored twice`).toEqual([])
      expect(r.anyDuplicates, `round ${r.round}: messages stored twice`).toBe(0)
      expect(r.cumulativeMissing, `round ${r.round}: acked in an earlier round, now missing`).toBe(0)
      expect(r.phantoms, `round ${r.round}: records nobody sent`).toEqual([])
      expect(r.corruptBatches, `round ${r.round}: damaged batches`).toBe(0)
      expect(r.gaps, `round ${r.round}: offset gaps`).toBe(0)
      expect(r.damageAtStart, `round ${r.round}: damage reported at start`).toBe(0)
      expect(r.acked, `round ${r.round}: the load never got going`).toBeGreaterThan(0)
    }
    const last = await restartAndStop(dir.path, config, everAcked, track)
    console.log(
      `${label} after a clean restart: ${everAcked.size} acked in all rounds, ${last.ackedMissing} missing`,
    )
    expect(last).toEqual({ damageAtStart: 0, exitCode: 0, ackedMissing: 0 })
  })
})
