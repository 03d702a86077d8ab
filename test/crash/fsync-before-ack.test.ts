// The durability half a kill -9 test cannot show (SIGKILL keeps the page
// cache): in `durable` mode, every PUBACK leaves the broker only after the
// message's record was written to its segment file under <dataDir>/segments/
// and a sync of that file (fdatasync, issued on a libuv worker thread) completed.
// Proven from the broker's own syscalls, traced with strace; the checker is
// then shown to flag the same trace with the syncs removed or with each
// PUBACK moved ahead of its sync, so it cannot pass vacuously.

import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type ChildBroker, spawnBroker } from '../helpers/child.ts'
import { withTimeout } from '../helpers/integration.ts'
import { readLogContents } from '../helpers/log-contents.ts'
import { RawMqtt } from '../helpers/raw-mqtt.ts'
import {
  type AckAnalysis,
  checkAcksAfterSync,
  describeOrder,
  type ExpectedMessage,
  parseStrace,
  type SyscallEvent,
} from '../helpers/strace-trace.ts'
import { tempDir } from '../helpers/temp-dir.ts'

const MESSAGES = 30
const TOPIC = 'proof/dev-1/reading'
const TRACED =
  'fdatasync,fsync,msync,sync_file_range,pwrite64,pwritev,pwritev2,write,writev,sendto,sendmsg,read,readv,recvfrom,recvmsg'

function straceWrapper(output: string): string[] {
  // -s 16384: every byte of each frame written must be in the trace.
  return ['strace', '-f', '-ttt', '-xx', '-yy', '-s', '16384', '-e', `trace=${TRACED}`, '-o', output]
}

/**
 * The process strace started (the broker itself). It gets the signals: strace
 * blocks fatal signals when it runs a command with -o (its -I3 default).
 */
function tracedPid(stracePid: number): number {
  const children = new Set<number>()
  try {
    const listed = readFileSync(`/proc/${stracePid}/task/${stracePid}/children`, 'utf8').trim()
    for (const pid of listed.split(/\s+/)) if (pid !== '') children.add(Number(pid))
  } catch {
    // Kernels without CONFIG_PROC_CHILDREN: find the children by their parent pid.
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
        if (ppid === stracePid) children.add(Number(entry))
      } catch {
        // The process ended while we looked.
      }
    }
  }
  const [only, ...more] = children
  if (only === undefined || more.length > 0)
    throw new Error(`strace ${stracePid} has children [${[...children]}]`)
  return only
}

function requireStrace(): void {
  const probe = spawnSync('strace', ['-V'], { encoding: 'utf8' })
  if (probe.error !== undefined || probe.status !== 0)
    throw new Error(
      'strace is required for this test: scripts/install-test-deps installs it (Debian package strace)',
    )
}

describe('durable acks wait for the sync', () => {
  let broker: ChildBroker | null = null
  let brokerPid: number | null = null
  let dir: Awaited<ReturnType<typeof tempDir>> | null = null

  afterEach(async () => {
    // Only the processes this test started, by pid: the traced broker, then strace.
    if (brokerPid !== null) {
      try {
        process.kill(brokerPid, 'SIGKILL')
      } catch {
        // Already gone.
      }
    }
    if (broker !== null) await broker.kill('SIGKILL')
    broker = null
    brokerPid = null
    await dir?.remove()
    dir = null
  })

  it(`writes each of ${MESSAGES} PUBACKs only after an fdatasync of the segment file that covers the message`, async () => {
    requireStrace()
    dir = await tempDir('tributary-crash-fsync-')
    const dataDir = join(dir.path, 'data')
    const traceFile = join(dir.path, 'broker.strace')
    const config = join(dir.path, 'proof.yaml')
    writeFileSync(
      config,
      [
        'unmatched: live-only',
        'streams:',
        '  - name: proof',
        '    match: ["proof/#"]',
        '    ack: durable',
        '',
      ].join('\n'),
    )
    broker = await spawnBroker(dataDir, {
      args: ['--config', config],
      wrapper: straceWrapper(traceFile),
      timeoutMs: 60_000,
    })
    brokerPid = tracedPid(broker.pid)

    const tag = Date.now().toString(36)
    const messages: ExpectedMessage[] = Array.from({ length: MESSAGES }, (_, i) => ({
      messageId: i + 1,
      payload: Buffer.from(
        `fsync-proof ${tag} message ${String(i + 1).padStart(3, '0')} temperature=21.${i}`,
      ),
    }))
    const { conn, connack } = await RawMqtt.connect(broker.port, { clientId: `fsync-proof-${tag}` })
    expect(connack.returnCode).toBe(0)
    const clientPort = conn.socket.localPort ?? -1
    for (const m of messages) {
      conn.send({
        cmd: 'publish',
        topic: TOPIC,
        payload: m.payload,
        qos: 1,
        messageId: m.messageId,
        dup: false,
        retain: false,
      })
      const puback = await conn.next('puback')
      expect(puback.messageId).toBe(m.messageId)
    }
    conn.send({ cmd: 'disconnect' })
    await conn.waitClosed()
    process.kill(brokerPid, 'SIGTERM')
    const exit = await withTimeout(broker.exited, 30_000, 'the traced broker to stop')
    broker = null
    brokerPid = null
    expect(exit.code, 'the broker (and strace) exit cleanly').toBe(0)

    const stored = await readLogContents(dataDir, ['proof'])
    expect(stored.records.map((r) => r.record.payload.toString())).toEqual(
      messages.map((m) => m.payload.toString()),
    )

    const events = parseStrace(readFileSync(traceFile, 'utf8'))
    // Every record of this short run is in the first segment.
    const segments = readdirSync(join(dataDir, 'segments')).filter((f) => f.endsWith('.seg'))
    expect(segments).toHaveLength(1)
    const dataFile = join(dataDir, 'segments', segments[0] ?? '')
    const options = { clientPort, dataFile, messages }
    const analysis = checkAcksAfterSync(events, options)
    report(analysis)
    expect(analysis.orders.filter((o) => o.problem !== null).map(describeOrder)).toEqual([])
    expect(analysis.orders.every((o) => o.sync !== null && o.dataWrite !== null && o.puback !== null)).toBe(
      true,
    )

    // The checker must be able to fail on this very trace.
    const isDataSync = (e: SyscallEvent): boolean =>
      (e.name === 'fdatasync' || e.name === 'fsync') && e.fdPath === dataFile
    const withoutSyncs = checkAcksAfterSync(
      events.filter((e) => !isDataSync(e)),
      options,
    )
    expect(withoutSyncs.orders.filter((o) => o.problem !== null)).toHaveLength(MESSAGES)
    const ackedEarly = checkAcksAfterSync(pubacksBeforeTheirSync(events, analysis), options)
    expect(ackedEarly.orders.map((o) => o.problem)).toEqual(
      messages.map(
        () => 'PUBACK written before a sync of the data file completed after the record was written',
      ),
    )
  })
})

/** The same trace with each PUBACK's write moved to just after the record's data write, before its sync. */
function pubacksBeforeTheirSync(events: readonly SyscallEvent[], analysis: AckAnalysis): SyscallEvent[] {
  const moved = new Map<SyscallEvent, number>()
  for (const order of analysis.orders) {
    if (order.puback !== null && order.dataWrite !== null)
      moved.set(order.puback, order.dataWrite.endLine + 0.5)
  }
  return events.map((e) => {
    const at = moved.get(e)
    return at === undefined ? e : { ...e, index: at, endLine: at }
  })
}

function report(analysis: AckAnalysis): void {
  const { summary, orders } = analysis
  console.log(`sync syscalls in the trace: ${JSON.stringify(summary.syncCalls)}`)
  console.log(
    `data file synced by thread(s) ${summary.syncThreads.join(', ')}; MQTT socket served by thread ${summary.mainThread}`,
  )
  const ok = orders.filter((o) => o.problem === null).length
  console.log(`${ok}/${orders.length} PUBACKs written after write + completed sync of the segment file`)
  const first = orders[0]
  if (first !== undefined) console.log(`e.g. ${describeOrder(first)}`)
}
