// Structured logging (pino) to stdout: one JSON object per line, which
// journald and `journalctl -o cat` keep intact.

import { type DestinationStream, destination, type Logger, pino } from 'pino'

export type { Logger }

// Synchronous writes: log lines are few, and none may be lost when the process exits right after.
export function createLogger(level: string, to?: DestinationStream): Logger {
  return pino({ level, base: { service: 'tributary' } }, to ?? destination({ dest: 1, sync: true }))
}
