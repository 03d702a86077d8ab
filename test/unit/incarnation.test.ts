// The incarnation state file (src/log/incarnation.ts): each start begins an
// incarnation past every one seen, the followers are remembered, and a
// damaged file is moved aside instead of stopping the start.

import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { INCARNATION_FILE, IncarnationFile, nextIncarnation } from '../../src/log/incarnation.ts'
import { tempDir } from '../helpers/temp-dir.ts'

const removals: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const remove of removals.splice(0)) await remove()
})

async function dataDir(): Promise<string> {
  const dir = await tempDir('tributary-incarnation-')
  removals.push(dir.remove)
  return dir.path
}

/** A log whose partitions' last batches were written in `incarnations`. */
function logWith(incarnations: readonly number[]) {
  const begun: number[] = []
  return {
    begun,
    log: {
      origin: 'node-a',
      localPartitions: () =>
        incarnations.map((_, partition) => ({
          stream: 's',
          origin: 'node-a',
          partition,
          firstOffset: 0,
          nextOffset: 5,
          bytes: 0,
          lastTimestampMs: null,
        })),
      lastBatchBefore: (ref: { partition: number }) => ({
        incarnation: incarnations[ref.partition] ?? 0,
        crc: 1,
      }),
      beginIncarnation: (n: number) => {
        begun.push(n)
      },
    },
  }
}

const NO_TAILS = { outcomes: [], unconfirmed: [], mended: [] }

describe('incarnations', () => {
  it('go past every one seen, by a step of 1 to 65536', () => {
    for (let i = 0; i < 200; i++) {
      const next = nextIncarnation([3, 70_000, 12])
      expect(next).toBeGreaterThan(70_000)
      expect(next).toBeLessThanOrEqual(70_000 + 65_536)
    }
    expect(() => nextIncarnation([0xffff_ffff])).toThrow(RangeError)
  })

  it('a start begins one past the file, the log and the peers, and writes it before the log uses it', async () => {
    const dir = await dataDir()
    const first = new IncarnationFile(dir)
    expect(first.state).toEqual({ incarnation: 1, followers: [] })
    const { log, begun } = logWith([40, 7])
    const tails = {
      outcomes: [{ peer: 'node-b', status: 'held-more' as const, records: 3, maxIncarnation: 90 }],
      unconfirmed: [],
      mended: [],
    }
    const report = first.begin(log, tails)
    expect(report.incarnation).toBeGreaterThan(90)
    expect(report).toMatchObject({ previous: 1, recoveredRecords: 3, uncertain: false })
    expect(begun).toEqual([report.incarnation])
    expect(new IncarnationFile(dir).state.incarnation).toBe(report.incarnation)
  })

  it('remembers its followers across starts; one that did not answer makes the start uncertain', async () => {
    const dir = await dataDir()
    const file = new IncarnationFile(dir)
    file.addFollower('node-b')
    file.addFollower('node-b')
    file.addFollower('node-c')
    const again = new IncarnationFile(dir)
    expect(again.state.followers).toEqual(['node-b', 'node-c'])
    const report = again.begin(logWith([]).log, { outcomes: [], unconfirmed: ['node-c'], mended: [] })
    expect(report).toMatchObject({ unconfirmedFollowers: ['node-c'], uncertain: true })
    expect(new IncarnationFile(dir).state.followers).toEqual(['node-b', 'node-c'])
  })

  it('a damaged file is moved aside and the start goes on, uncertain', async () => {
    const dir = await dataDir()
    writeFileSync(join(dir, INCARNATION_FILE), '{"incarnation": "seven"')
    const file = new IncarnationFile(dir)
    expect(file.damaged).toMatch(/not a valid incarnation state/)
    expect(readdirSync(dir).some((f) => f.startsWith(`${INCARNATION_FILE}.damaged-`))).toBe(true)
    const report = file.begin(logWith([5]).log, NO_TAILS)
    expect(report.uncertain).toBe(true)
    expect(report.incarnation).toBeGreaterThan(5)
    expect(existsSync(join(dir, INCARNATION_FILE))).toBe(true)
    expect(JSON.parse(readFileSync(join(dir, INCARNATION_FILE), 'utf8')).incarnation).toBe(report.incarnation)
  })
})
