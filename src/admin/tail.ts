// Live tail over Server-Sent Events: each record of the stream's partitions
// from the chosen start (default: only records appended after connecting) as
//   id: <partition>:<next offset>,<partition>:<next offset>,...
//   event: record
//   data: <the record as JSON, src/log/record-json.ts>
// The id is where the tail stands in every partition after this record, so a
// client that reconnects with it as Last-Event-ID (EventSource does that by
// itself) goes on exactly where it was, in each partition (lastEventCursors).
// A comment line every KEEPALIVE_MS keeps proxies from closing an idle tail.
// Bounded: at most `maxClients` tails at once (503 TRIB_HTTP_BUSY beyond),
// each reading at most READ_RECORDS per partition per poll, and none reads
// further while its socket has not drained (a slow client slows only itself).

import type { ServerResponse } from 'node:http'
import { TributaryError } from '../errors.ts'
import type { LogStore } from '../log/log-store.ts'
import { recordJson } from '../log/record-json.ts'

export const TAIL_POLL_MS = 100
const KEEPALIVE_MS = 15_000
const READ_RECORDS = 500

export interface TailRequest {
  readonly stream: string
  readonly origin: string
  /** Start offset per partition. */
  readonly from: ReadonlyMap<number, number>
  readonly encoding: 'base64' | null
}

/** `0:5,1:7` -> {0 => 5, 1 => 7}; null when the header is not such a list. */
export function lastEventCursors(header: string | undefined): Map<number, number> | null {
  if (header === undefined || !/^\d+:\d+(,\d+:\d+)*$/.test(header.trim())) return null
  return new Map(
    header
      .trim()
      .split(',')
      .map((pair) => pair.split(':').map(Number) as [number, number]),
  )
}

export class Tails {
  readonly #max: number
  readonly #open = new Set<() => void>()
  #closed = false

  constructor(maxClients: number) {
    this.#max = maxClients
  }

  get open(): number {
    return this.#open.size
  }

  /** Throws TRIB_HTTP_BUSY when the limit is reached; call before taking over the response. */
  admit(): void {
    if (this.#closed) throw new TributaryError('TRIB_NOT_READY', 'the node is shutting down')
    if (this.#open.size >= this.#max)
      throw new TributaryError('TRIB_HTTP_BUSY', `${this.#open.size} tails open (http.maxTailClients)`)
  }

  /** Streams records to `res` until the client goes or close() is called. */
  async run(log: Pick<LogStore, 'read'>, res: ServerResponse, request: TailRequest): Promise<void> {
    const cursors = new Map(request.from)
    /** Where the client stands: the offset after the last record sent, per partition. */
    const position = new Map(request.from)
    const eventId = (): string => [...position].map(([p, o]) => `${p}:${o}`).join(',')
    let stopped = false
    let wake: (() => void) | null = null
    const stop = (): void => {
      stopped = true
      wake?.()
    }
    this.#open.add(stop)
    res.once('close', stop)
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    })
    const write = async (text: string): Promise<void> => {
      if (res.write(text) || stopped) return
      await new Promise<void>((resolve) => {
        wake = resolve
        res.once('drain', resolve)
      })
      wake = null
    }
    try {
      await write(`: tail ${request.stream} partitions ${[...cursors.keys()].join(',')}\n\n`)
      let lastWriteMs = Date.now()
      while (!stopped) {
        let sent = 0
        for (const [partition, from] of cursors) {
          const result = log.read({ stream: request.stream, origin: request.origin, partition }, from, {
            maxRecords: READ_RECORDS,
            durableOnly: true,
          })
          cursors.set(partition, result.nextOffset)
          for (const record of result.records) {
            if (stopped) break
            const json = recordJson(
              { stream: request.stream, partition, origin: request.origin },
              record,
              request.encoding,
            )
            position.set(partition, record.offset + 1)
            await write(`id: ${eventId()}\nevent: record\ndata: ${JSON.stringify(json)}\n\n`)
            sent++
          }
          for (const damage of result.corrupt)
            await write(`event: corrupt\ndata: ${JSON.stringify(damage)}\n\n`)
        }
        const now = Date.now()
        if (sent > 0) lastWriteMs = now
        else if (now - lastWriteMs >= KEEPALIVE_MS) {
          await write(': keepalive\n\n')
          lastWriteMs = now
        }
        if (sent === 0 && !stopped) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, TAIL_POLL_MS)
            wake = () => {
              clearTimeout(timer)
              resolve()
            }
          })
          wake = null
        }
      }
    } finally {
      this.#open.delete(stop)
      res.end()
    }
  }

  /** Ends every tail (node shutdown); new ones are refused. */
  close(): void {
    this.#closed = true
    for (const stop of this.#open) stop()
  }
}
