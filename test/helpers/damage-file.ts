// Bit rot on demand: finds a unique marker inside a file (a record's payload
// inside a segment file) and inverts bytes right after it, inside the same
// payload, so the file's structure stays intact and only the record's bytes
// (and so its batch's and frame's CRC32C) go wrong. For crash tests of damage
// detection.

import { closeSync, openSync, readFileSync, writeSync } from 'node:fs'

export interface Damage {
  /** File offsets of every copy of the marker that was damaged. */
  readonly offsets: number[]
}

/**
 * Inverts `length` bytes starting `skip` bytes after the end of every copy of
 * `marker` (a file holds each record once; none is fine: the caller checks).
 */
export function invertAfterMarker(path: string, marker: string, skip: number, length: number): Damage {
  const bytes = readFileSync(path)
  const needle = Buffer.from(marker, 'utf8')
  const offsets: number[] = []
  for (let at = bytes.indexOf(needle); at >= 0; at = bytes.indexOf(needle, at + needle.length))
    offsets.push(at)
  // Only the inverted bytes are written back, in place; the rest of the file is untouched.
  const fd = openSync(path, 'r+')
  try {
    for (const at of offsets) {
      const start = at + needle.length + skip
      if (start + length > bytes.length) throw new Error(`${marker} at ${at}: damage would run past the file`)
      const inverted = Buffer.from(bytes.subarray(start, start + length).map((b) => b ^ 0xff))
      writeSync(fd, inverted, 0, length, start)
    }
  } finally {
    closeSync(fd)
  }
  return { offsets }
}
