// The last warn and error log events of this process, for the status page
// and /v1/status (`recentErrors`). A pino destination stream: the logger
// writes each line at warn or above to it (createLogger's multistream), it
// keeps the newest `limit` of them and drops the oldest (a bound on every
// buffer: the count of dropped events is kept, so "more happened" shows).
// Only what the logger emits is seen: at logLevel silent, nothing.

export const DEFAULT_RECENT_LOG_EVENTS = 50
/** Longest message kept; a longer one is cut (one bad line must not hold kilobytes). */
const MAX_MESSAGE_CHARS = 500

export interface LogEvent {
  readonly time: string
  readonly level: 'warn' | 'error' | 'fatal'
  readonly msg: string
  /** The error's code (TRIB_*), from `code` or `err.code` of the log object, when there is one. */
  readonly code: string | null
  readonly component: string | null
}

const LEVELS: Record<number, LogEvent['level']> = { 40: 'warn', 50: 'error', 60: 'fatal' }

function text(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null
}

export class RecentLogEvents {
  readonly #limit: number
  readonly #events: LogEvent[] = []
  #dropped = 0

  constructor(limit = DEFAULT_RECENT_LOG_EVENTS) {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`limit must be a positive integer: ${limit}`)
    this.#limit = limit
  }

  /** pino's DestinationStream: one JSON line per call. Lines below warn, or not JSON, are ignored. */
  write(line: string): void {
    let o: Record<string, unknown>
    try {
      o = JSON.parse(line) as Record<string, unknown>
    } catch {
      return
    }
    const level = typeof o.level === 'number' ? LEVELS[o.level] : undefined
    if (level === undefined) return
    const err = typeof o.err === 'object' && o.err !== null ? (o.err as Record<string, unknown>) : {}
    const msg = text(o.msg) ?? text(err.message) ?? ''
    this.#events.push({
      time: new Date(typeof o.time === 'number' ? o.time : Date.now()).toISOString(),
      level,
      msg: msg.length > MAX_MESSAGE_CHARS ? `${msg.slice(0, MAX_MESSAGE_CHARS)}…` : msg,
      code: text(o.code) ?? text(err.code),
      component: text(o.component) ?? text(o.sink),
    })
    if (this.#events.length > this.#limit) {
      this.#events.shift()
      this.#dropped++
    }
  }

  /** Newest first. */
  events(): LogEvent[] {
    return this.#events.toReversed()
  }

  /** Events pushed out of the ring since start. */
  get dropped(): number {
    return this.#dropped
  }
}
