// The kill -9 experiment of the crash tier, shared by the QoS 1 and QoS 2
// tests: rounds on one data dir, each starting a child broker (a restart on
// the data the previous rounds left), loading it from several connections,
// SIGKILLing it after a random delay, then reading the log back read-only and
// counting acked, found, missing, duplicated and phantom messages.
// SIGKILL keeps the page cache: this shows crash consistency and recovery,
// not that acked data reached the disk (fsync-before-ack.test.ts does that).

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type ChildBroker, spawnBroker } from './child.ts'
import { withTimeout } from './integration.ts'
import { readLogContents } from './log-contents.ts'
import { clientIdFor, publisherOf, startLoad, topicFor } from './publish-load.ts'

export const CRASH_STREAM = 'crash'

export interface KillRoundsOptions {
  readonly dataDir: string
  readonly qos: 1 | 2
  readonly rounds: number
  readonly publishers: number
  readonly window: number
  readonly minKillMs: number
  readonly maxKillMs: number
}

export interface RoundReport {
  readonly round: number
  readonly killAfterMs: number
  readonly sent: number
  readonly acked: number
  /** QoS 2: of the acked, those whose PUBCOMP arrived too. */
  readonly completed: number
  readonly found: number
  /** Acked in this round, not in the log. */
  readonly missing: string[]
  /** Acked in this round, in the log more than once. */
  readonly ackedDuplicates: string[]
  /** Any message of this round in the log more than once (acked or not). */
  readonly anyDuplicates: number
  /** Sent, not acked (in flight at the kill), yet in the log: allowed. */
  readonly landedUnacked: number
  /** Records of this round that were never sent, or whose topic, client id or QoS is wrong. */
  readonly phantoms: string[]
  /** Every message acked in any round so far, and those of them no longer in the log. */
  readonly cumulativeAcked: number
  readonly cumulativeMissing: number
  readonly lateAcks: number
  readonly corruptBatches: number
  readonly gaps: number
  /** Log lines of the restarted child that report damage found at start. */
  readonly damageAtStart: number
}

/** A config with one 4-partition stream for the load; the group commit then writes several batches at once. */
export function writeCrashConfig(dir: string): string {
  const path = join(dir, 'crash.yaml')
  writeFileSync(
    path,
    [
      'unmatched: live-only',
      'streams:',
      `  - name: ${CRASH_STREAM}`,
      '    match: ["crash/#"]',
      '    partitions: 4',
      '    ack: durable',
      '',
    ].join('\n'),
  )
  return path
}

function damageLines(broker: ChildBroker): number {
  return broker.logs.filter((l) => l.code === 'TRIB_BATCH_CORRUPT' || l.code === 'TRIB_STORE_DAMAGED').length
}

export function formatRound(label: string, r: RoundReport, rounds: number): string {
  return (
    `${label} round ${r.round}/${rounds} kill@${r.killAfterMs}ms: sent ${r.sent} acked ${r.acked} ` +
    (label === 'qos2' ? `(pubcomp ${r.completed}) ` : '') +
    `found ${r.found} missing ${r.missing.length} acked-dup ${r.ackedDuplicates.length} ` +
    `any-dup ${r.anyDuplicates} landed-unacked ${r.landedUnacked} phantom ${r.phantoms.length} ` +
    `late-acks ${r.lateAcks} | cumulative acked ${r.cumulativeAcked} missing ${r.cumulativeMissing} | ` +
    `corrupt ${r.corruptBatches} gaps ${r.gaps} damage-at-start ${r.damageAtStart}`
  )
}

/** Runs the rounds; each round's report is passed to onRound as soon as it is known. */
export async function runKillRounds(
  options: KillRoundsOptions,
  configPath: string,
  onRound: (report: RoundReport) => void,
  track: (broker: ChildBroker | null) => void,
): Promise<{ reports: RoundReport[]; everAcked: ReadonlySet<string> }> {
  const reports: RoundReport[] = []
  const everAcked = new Set<string>()
  const runId = Date.now().toString(36)
  for (let round = 1; round <= options.rounds; round++) {
    const tag = `q${options.qos}-${runId}-r${String(round).padStart(2, '0')}`
    const topicPrefix = `crash/q${options.qos}`
    const broker = await spawnBroker(options.dataDir, { args: ['--config', configPath] })
    track(broker)
    const damageAtStart = damageLines(broker)
    const load = await startLoad({
      url: broker.url,
      qos: options.qos,
      publishers: options.publishers,
      window: options.window,
      tag,
      topicPrefix,
      maxPerPublisher: 200_000,
      maxMs: 20_000,
    })
    const killAfterMs =
      options.minKillMs + Math.floor(Math.random() * (options.maxKillMs - options.minKillMs + 1))
    // The delay runs from the first ack: the load is flowing when the kill comes.
    await withTimeout(load.flowing, 15_000, `round ${round}: the first ack`)
    await new Promise((resolve) => setTimeout(resolve, killAfterMs))
    const exit = await broker.kill('SIGKILL')
    track(null)
    if (exit.signal !== 'SIGKILL')
      throw new Error(`round ${round}: the broker exited ${JSON.stringify(exit)}`)
    const snapshot = await load.settle()

    const contents = await readLogContents(options.dataDir, [CRASH_STREAM])
    const count = new Map<string, number>()
    const phantoms: string[] = []
    for (const { record } of contents.records) {
      const payload = record.payload.toString('utf8')
      count.set(payload, (count.get(payload) ?? 0) + 1)
      const publisher = publisherOf(tag, payload)
      if (publisher === null) continue
      const wrong =
        !snapshot.sent.has(payload) ||
        record.topic !== topicFor(topicPrefix, publisher) ||
        record.clientId !== clientIdFor(tag, publisher) ||
        record.qos !== options.qos
      if (wrong) phantoms.push(`${payload} topic=${record.topic} client=${record.clientId} qos=${record.qos}`)
    }
    const missing: string[] = []
    const ackedDuplicates: string[] = []
    for (const payload of snapshot.acked) {
      const n = count.get(payload) ?? 0
      if (n === 0) missing.push(payload)
      if (n > 1) ackedDuplicates.push(payload)
      everAcked.add(payload)
    }
    let anyDuplicates = 0
    let landedUnacked = 0
    for (const payload of snapshot.sent) {
      const n = count.get(payload) ?? 0
      if (n > 1) anyDuplicates++
      if (n > 0 && !snapshot.acked.has(payload)) landedUnacked++
    }
    let cumulativeMissing = 0
    for (const payload of everAcked) if (!count.has(payload)) cumulativeMissing++
    const report: RoundReport = {
      round,
      killAfterMs,
      sent: snapshot.sent.size,
      acked: snapshot.acked.size,
      completed: snapshot.completed,
      found: snapshot.acked.size - missing.length,
      missing,
      ackedDuplicates,
      anyDuplicates,
      landedUnacked,
      phantoms,
      cumulativeAcked: everAcked.size,
      cumulativeMissing,
      lateAcks: snapshot.lateAcks,
      corruptBatches: contents.verify.corrupt.length + contents.corrupt.length,
      gaps: contents.verify.gaps.length,
      damageAtStart,
    }
    reports.push(report)
    onRound(report)
  }
  return { reports, everAcked }
}

/**
 * A last restart on the data of every round: it must start clean and stop with
 * exit 0, and every message ever acked must still be in the log after it.
 */
export async function restartAndStop(
  dataDir: string,
  configPath: string,
  everAcked: ReadonlySet<string>,
  track: (broker: ChildBroker | null) => void,
): Promise<{ damageAtStart: number; exitCode: number | null; ackedMissing: number }> {
  const broker = await spawnBroker(dataDir, { args: ['--config', configPath] })
  track(broker)
  const damageAtStart = damageLines(broker)
  const exit = await broker.kill('SIGTERM')
  track(null)
  const stored = new Set(
    (await readLogContents(dataDir, [CRASH_STREAM])).records.map((r) => r.record.payload.toString('utf8')),
  )
  let ackedMissing = 0
  for (const payload of everAcked) if (!stored.has(payload)) ackedMissing++
  return { damageAtStart, exitCode: exit.code, ackedMissing }
}
