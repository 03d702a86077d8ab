// Reads an strace log of the broker and checks, message by message, that the
// PUBACK went out only after the record was written to the data file and that
// write was made durable by a completed fdatasync/fsync of the same file.
//
// The trace must come from `strace -f -xx -yy -s <big> -o FILE`:
//   -f   follows threads: lmdb-js commits and syncs on a libuv worker thread,
//        not on the thread that reads the socket and writes the PUBACK;
//   -xx  prints every string byte as \xHH, so no byte of the data can be
//        mistaken for strace's own syntax;
//   -yy  prints each fd's file path or TCP endpoints next to the fd.
// strace stops each thread at every traced syscall's entry and exit and logs
// the stops in the order it handles them, so a syscall that only runs because
// another completed (the ack waits for the sync) comes later in the file.
// Event order here is line order: `index` is where a syscall entered, `endLine`
// where it returned (the same line unless strace split it into
// "<unfinished ...>" and "<... resumed>").

export interface SyscallEvent {
  /** Line (0-based) where the syscall was entered. */
  readonly index: number
  /** Line where it returned. */
  readonly endLine: number
  readonly tid: number
  readonly timeS: number
  readonly name: string
  readonly fd: number | null
  /** The fd's file path, or its socket description such as `TCP:[127.0.0.1:1883->127.0.0.1:40000]`. */
  readonly fdPath: string | null
  /** The bytes of every string argument, concatenated (a writev's iovecs in order). */
  readonly data: Buffer
  /** Some string was cut short by strace's -s limit. */
  readonly truncated: boolean
  /** Return value; null when strace printed `?`. */
  readonly ret: number | null
}

const LINE = /^(\d+)\s+(\d+\.\d+)\s+(.*)$/
const RESUMED = /^<\.\.\. (\w+) resumed>(.*)$/
const UNFINISHED = /^(\w+)\((.*) <unfinished \.\.\.>$/
const CALL = /^(\w+)\((.*)$/
const RETURN = /\) = (-?\d+|\?)(?: .*)?$/
const HEX_STRING = /"((?:\\x[0-9a-f]{2})*)"(\.\.\.)?/g
const FD = /^(\d+)<([A-Z0-9-]+:\[[^\]]*\]|[^>]*)>/

function unhex(text: string): Buffer {
  const bytes: number[] = []
  for (const m of text.matchAll(/\\x([0-9a-f]{2})/g)) bytes.push(Number.parseInt(m[1] ?? '0', 16))
  return Buffer.from(bytes)
}

/** With -xx, strace prints the path beside an fd in \xHH form too; sockets come out plain. */
function fdDescription(text: string): string {
  return text.includes('\\x') ? unhex(text).toString('utf8') : text
}

function toEvent(
  tid: number,
  timeS: number,
  name: string,
  body: string,
  index: number,
  endLine: number,
): SyscallEvent {
  const ret = RETURN.exec(body)
  const args = ret === null ? body : body.slice(0, ret.index)
  const chunks: Buffer[] = []
  let truncated = false
  for (const m of args.matchAll(HEX_STRING)) {
    chunks.push(unhex(m[1] ?? ''))
    if (m[2] !== undefined) truncated = true
  }
  const fd = FD.exec(args)
  const value = ret?.[1]
  return {
    index,
    endLine,
    tid,
    timeS,
    name,
    fd: fd === null ? null : Number(fd[1]),
    fdPath: fd === null ? null : fdDescription(fd[2] ?? ''),
    data: Buffer.concat(chunks),
    truncated,
    ret: value === undefined || value === '?' ? null : Number(value),
  }
}

/** Parses an `strace -f -ttt -xx -yy` log into syscalls, joining split lines. */
export function parseStrace(text: string): SyscallEvent[] {
  const events: SyscallEvent[] = []
  const open = new Map<number, { name: string; body: string; index: number; timeS: number }>()
  const lines = text.split('\n')
  lines.forEach((line, index) => {
    const m = LINE.exec(line)
    if (m === null) return
    const tid = Number(m[1])
    const timeS = Number(m[2])
    const rest = m[3] ?? ''
    const resumed = RESUMED.exec(rest)
    if (resumed !== null) {
      const started = open.get(tid)
      open.delete(tid)
      if (started === undefined || started.name !== resumed[1]) return
      events.push(
        toEvent(tid, started.timeS, started.name, started.body + (resumed[2] ?? ''), started.index, index),
      )
      return
    }
    const unfinished = UNFINISHED.exec(rest)
    if (unfinished !== null) {
      open.set(tid, { name: unfinished[1] ?? '', body: unfinished[2] ?? '', index, timeS })
      return
    }
    const call = CALL.exec(rest)
    if (call !== null) events.push(toEvent(tid, timeS, call[1] ?? '', call[2] ?? '', index, index))
  })
  return events.sort((a, b) => a.index - b.index)
}

export interface MqttPacketSeen {
  readonly type: number
  readonly messageId: number | null
  readonly topic: string | null
  readonly payload: Buffer | null
  /** The syscall that carried the packet's first byte. */
  readonly first: SyscallEvent
  /** The syscall that carried its last byte. */
  readonly last: SyscallEvent
}

const READS = new Set(['read', 'recvfrom', 'recvmsg', 'readv'])
const WRITES_TO_SOCKET = new Set(['write', 'writev', 'sendto', 'sendmsg'])
const WRITES_TO_FILE = new Set(['write', 'writev', 'pwrite64', 'pwritev', 'pwritev2'])
const SYNCS = new Set(['fdatasync', 'fsync'])

/** Splits one direction of an MQTT 3.1.1 connection into packets (fixed header, varint length). */
function mqttPackets(events: readonly SyscallEvent[]): MqttPacketSeen[] {
  const packets: MqttPacketSeen[] = []
  let pending = Buffer.alloc(0)
  let sources: SyscallEvent[] = []
  for (const event of events) {
    if (event.ret === null || event.ret <= 0) continue
    if (event.truncated)
      throw new Error(`strace cut the data of ${event.name} at line ${event.index + 1}; raise -s`)
    pending = Buffer.concat([pending, event.data.subarray(0, event.ret)])
    sources.push(event)
    for (;;) {
      if (pending.length < 2) break
      let length = 0
      let multiplier = 1
      let pos = 1
      let complete = false
      for (; pos < pending.length && pos <= 4; pos++) {
        const byte = pending[pos] ?? 0
        length += (byte & 0x7f) * multiplier
        multiplier *= 128
        if ((byte & 0x80) === 0) {
          complete = true
          pos++
          break
        }
      }
      if (!complete || pending.length < pos + length) break
      const header = pending[0] ?? 0
      const body = pending.subarray(pos, pos + length)
      const type = header >> 4
      let messageId: number | null = null
      let topic: string | null = null
      let payload: Buffer | null = null
      if (type === 3) {
        const qos = (header >> 1) & 3
        const topicLength = body.readUInt16BE(0)
        topic = body.toString('utf8', 2, 2 + topicLength)
        let at = 2 + topicLength
        if (qos > 0) {
          messageId = body.readUInt16BE(at)
          at += 2
        }
        payload = Buffer.from(body.subarray(at))
      } else if (type >= 4 && type <= 7 && body.length >= 2) {
        messageId = body.readUInt16BE(0)
      }
      const first = sources[0] ?? event
      packets.push({ type, messageId, topic, payload, first, last: event })
      pending = Buffer.from(pending.subarray(pos + length))
      sources = pending.length > 0 ? [event] : []
    }
  }
  return packets
}

export interface ExpectedMessage {
  readonly messageId: number
  readonly payload: Buffer
}

export interface AckOrder {
  readonly messageId: number
  readonly publishRead: SyscallEvent | null
  /** The first write to the data file after the PUBLISH was read whose bytes hold the payload. */
  readonly dataWrite: SyscallEvent | null
  /** The first completed sync of the data file after that write. */
  readonly sync: SyscallEvent | null
  readonly puback: SyscallEvent | null
  /** Why the order is wrong, or null when write, sync and ack came in that order. */
  readonly problem: string | null
}

export interface SyncSummary {
  /** `name path -> count` for every sync-family syscall in the trace (msync has no fd: path "-"). */
  readonly syncCalls: Record<string, number>
  /** Threads that synced the data file, and the broker's main thread for comparison. */
  readonly syncThreads: number[]
  readonly mainThread: number | null
}

export interface AckAnalysis {
  readonly orders: AckOrder[]
  readonly summary: SyncSummary
}

/** A socket whose description names this client port as the peer: the broker's end of that connection. */
function isClientSocket(event: SyscallEvent, clientPort: number): boolean {
  const path = event.fdPath ?? ''
  return path.startsWith('TCP:[') && path.endsWith(`:${clientPort}]`)
}

export function checkAcksAfterSync(
  events: readonly SyscallEvent[],
  options: {
    readonly clientPort: number
    readonly dataFile: string
    readonly messages: readonly ExpectedMessage[]
  },
): AckAnalysis {
  const sorted = [...events].sort((a, b) => a.index - b.index)
  const onClient = sorted.filter((e) => isClientSocket(e, options.clientPort))
  const inbound = mqttPackets(onClient.filter((e) => READS.has(e.name)))
  const outbound = mqttPackets(onClient.filter((e) => WRITES_TO_SOCKET.has(e.name)))
  const fileWrites = sorted.filter((e) => WRITES_TO_FILE.has(e.name) && e.fdPath === options.dataFile)
  const cut = fileWrites.find((e) => e.truncated)
  if (cut !== undefined)
    throw new Error(`strace cut the data of ${cut.name} at line ${cut.index + 1}; raise -s`)
  const syncs = sorted.filter((e) => SYNCS.has(e.name) && e.fdPath === options.dataFile && e.ret === 0)

  const orders = options.messages.map((message): AckOrder => {
    const publish = inbound.find(
      (p) => p.type === 3 && p.messageId === message.messageId && p.payload?.equals(message.payload) === true,
    )
    const base = {
      messageId: message.messageId,
      publishRead: null,
      dataWrite: null,
      sync: null,
      puback: null,
    }
    if (publish === undefined) return { ...base, problem: 'PUBLISH not found in what the broker read' }
    const readAt = publish.last.endLine
    const ack = outbound.find(
      (p) => p.type === 4 && p.messageId === message.messageId && p.first.index > readAt,
    )
    if (ack === undefined)
      return { ...base, publishRead: publish.last, problem: 'no PUBACK written after the PUBLISH was read' }
    const ackAt = ack.first.index
    // The write that completed first among those after the read that carry the payload.
    const carrying = fileWrites.filter((e) => e.index > readAt && e.data.includes(message.payload))
    const write = carrying.filter((e) => e.endLine < ackAt).sort((a, b) => a.endLine - b.endLine)[0]
    if (write === undefined)
      return {
        ...base,
        publishRead: publish.last,
        dataWrite: carrying[0] ?? null,
        puback: ack.first,
        problem: 'PUBACK written before the record reached the data file',
      }
    const sync = syncs.find((e) => e.index > write.endLine && e.endLine < ackAt)
    if (sync === undefined)
      return {
        ...base,
        publishRead: publish.last,
        dataWrite: write,
        sync: syncs.find((e) => e.index > write.endLine) ?? null,
        puback: ack.first,
        problem: 'PUBACK written before a sync of the data file completed after the record was written',
      }
    return {
      messageId: message.messageId,
      publishRead: publish.last,
      dataWrite: write,
      sync,
      puback: ack.first,
      problem: null,
    }
  })

  const syncCalls: Record<string, number> = {}
  for (const e of sorted) {
    if (!['fdatasync', 'fsync', 'msync', 'sync_file_range'].includes(e.name)) continue
    const key = `${e.name} ${e.fdPath ?? '-'}`
    syncCalls[key] = (syncCalls[key] ?? 0) + 1
  }
  const firstRead = inbound[0]?.last.tid ?? null
  return {
    orders,
    summary: {
      syncCalls,
      syncThreads: [...new Set(syncs.map((e) => e.tid))].sort((a, b) => a - b),
      mainThread: firstRead,
    },
  }
}

/** One order as a line of text: syscall, thread and line of each step. */
export function describeOrder(order: AckOrder): string {
  const step = (label: string, e: SyscallEvent | null): string =>
    e === null ? `${label} -` : `${label} ${e.name}@line${e.index + 1}(tid ${e.tid})`
  return [
    `msg ${order.messageId}:`,
    step('read', order.publishRead),
    step('-> write', order.dataWrite),
    step('-> sync', order.sync),
    step('-> puback', order.puback),
    order.problem === null ? 'ok' : `PROBLEM: ${order.problem}`,
  ].join(' ')
}
