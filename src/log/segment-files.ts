// The segment files under <dataDir>/segments/: `<sequence, 10 digits>.seg`,
// one global sequence for every stream, so that one group commit is one
// append and one fdatasync. Owns the file handles: the active segment that
// group commits append frames to (writer only), and read descriptors for any
// segment (bounded cache). Knows nothing about frames or batches.

import { closeSync, constants, fstatSync, openSync, readdirSync, readSync, unlinkSync } from 'node:fs'
import { type FileHandle, open } from 'node:fs/promises'
import { join } from 'node:path'

export const SEGMENTS_DIR = 'segments'
export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
/** Positions in the index are u32. */
export const MAX_SEGMENT_BYTES = 2 ** 32 - 1
const MAX_OPEN_READERS = 32
const NAME = /^(\d{10})\.seg$/

function segmentPath(dir: string, sequence: number): string {
  return join(dir, `${String(sequence).padStart(10, '0')}.seg`)
}

/** Sequence numbers of the segment files in `dir`, ascending; none when it does not exist. */
export function listSegments(dir: string): number[] {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return []
  }
  const out: number[] = []
  for (const name of names) {
    const m = NAME.exec(name)
    if (m !== null) out.push(Number(m[1]))
  }
  return out.sort((a, b) => a - b)
}

/** Synchronous reads of any segment, through a small cache of descriptors. */
export class SegmentReader {
  readonly #dir: string
  readonly #fds = new Map<number, number>()

  constructor(dir: string) {
    this.#dir = dir
  }

  #fd(sequence: number): number {
    const cached = this.#fds.get(sequence)
    if (cached !== undefined) return cached
    const fd = openSync(segmentPath(this.#dir, sequence), 'r')
    this.#fds.set(sequence, fd)
    if (this.#fds.size > MAX_OPEN_READERS) {
      const [oldest] = this.#fds.keys()
      if (oldest !== undefined) this.forget(oldest)
    }
    return fd
  }

  /** Exactly `length` bytes at `position`; throws when the file is missing or shorter. */
  read(sequence: number, position: number, length: number): Buffer {
    const buf = Buffer.allocUnsafe(length)
    const fd = this.#fd(sequence)
    let done = 0
    while (done < length) {
      const n = readSync(fd, buf, done, length - done, position + done)
      if (n === 0) throw new Error(`segment ${sequence} ends before byte ${position + length}`)
      done += n
    }
    return buf
  }

  /** Up to `length` bytes at `position` (fewer at the end of the file). */
  readSome(sequence: number, position: number, length: number): Buffer {
    const buf = Buffer.allocUnsafe(length)
    const n = readSync(this.#fd(sequence), buf, 0, length, position)
    return buf.subarray(0, n)
  }

  size(sequence: number): number {
    return fstatSync(this.#fd(sequence)).size
  }

  forget(sequence: number): void {
    const fd = this.#fds.get(sequence)
    if (fd === undefined) return
    this.#fds.delete(sequence)
    closeSync(fd)
  }

  remove(sequence: number): void {
    this.forget(sequence)
    unlinkSync(segmentPath(this.#dir, sequence))
  }

  close(): void {
    for (const sequence of [...this.#fds.keys()]) this.forget(sequence)
  }
}

/**
 * The segment group commits append to. Writes are positional at `size`, so a
 * failed (partial) write is overwritten by the next one; `synced` is how far
 * an fdatasync has covered.
 */
export class ActiveSegment {
  readonly sequence: number
  size: number
  synced: number
  readonly #handle: FileHandle

  private constructor(sequence: number, handle: FileHandle, size: number) {
    this.sequence = sequence
    this.#handle = handle
    this.size = size
    this.synced = size
  }

  /** Opens (creating it if needed) segment `sequence` to append at `size`. */
  static async open(dir: string, sequence: number, size: number): Promise<ActiveSegment> {
    const handle = await open(segmentPath(dir, sequence), constants.O_RDWR | constants.O_CREAT)
    try {
      if ((await handle.stat()).size > size) await handle.truncate(size)
      // A new file's directory entry must be durable before any frame in it is acked.
      const dirHandle = await open(dir, 'r')
      try {
        await dirHandle.sync()
      } finally {
        await dirHandle.close()
      }
      return new ActiveSegment(sequence, handle, size)
    } catch (err) {
      await handle.close().catch(() => undefined)
      throw err
    }
  }

  /** Writes `frame` at the end; returns its position. On failure the segment keeps its size. */
  async append(frame: Buffer): Promise<number> {
    const position = this.size
    let done = 0
    try {
      while (done < frame.length) {
        const { bytesWritten } = await this.#handle.write(frame, done, frame.length - done, position + done)
        done += bytesWritten
      }
    } catch (err) {
      // Best effort: give back the space a partial write took (a full disk); the
      // next frame is written at the same position either way.
      await this.#handle.truncate(position).catch(() => undefined)
      throw err
    }
    this.size = position + frame.length
    return position
  }

  async sync(): Promise<void> {
    const upTo = this.size
    if (this.synced >= upTo) return
    await this.#handle.datasync()
    this.synced = Math.max(this.synced, upTo)
  }

  close(): Promise<void> {
    return this.#handle.close()
  }
}
