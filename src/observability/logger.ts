// Structured logging (pino) to stdout: one JSON object per line, which
// journald and `journalctl -o cat` keep intact. With a RecentLogEvents ring,
// lines at warn and above also go to it (the status page's recent errors).

import { type DestinationStream, destination, type Logger, multistream, pino } from 'pino'
import type { RecentLogEvents } from './recent-log.ts'

export type { Logger }

// Synchronous writes: log lines are few, and none may be lost when the process exits right after.
export function createLogger(level: string, to?: DestinationStream, recent?: RecentLogEvents): Logger {
  const out = to ?? destination({ dest: 1, sync: true })
  const options = { level, base: { service: 'tributary' } }
  if (recent === undefined) return pino(options, out)
  // multistream hands each line to every stream whose level it reaches; the logger's level still decides what is emitted.
  return pino(
    options,
    multistream([
      { level: 'trace', stream: out },
      { level: 'warn', stream: recent },
    ]),
  )
}
