// Appends frames to the active segment and rolls to the next one: when the
// next frame would pass `segmentBytes`, or when the active segment is suspect
// because an fdatasync failed (on Linux a failed fsync may drop the dirty
// pages, so a later "successful" one proves nothing about them).

import { stampSegment } from './frame-codec.ts'
import { ActiveSegment } from './segment-files.ts'

export class SegmentAppender {
  readonly #dir: string
  readonly #segmentBytes: number
  readonly #onNewSegment: (sequence: number) => void
  #active: ActiveSegment
  #rollNext: boolean
  /** When the oldest frame not yet covered by an fdatasync was written. */
  unsyncedSinceMs: number | null = null

  private constructor(
    dir: string,
    segmentBytes: number,
    active: ActiveSegment,
    onNewSegment: (sequence: number) => void,
  ) {
    this.#dir = dir
    this.#segmentBytes = segmentBytes
    this.#active = active
    this.#onNewSegment = onNewSegment
    this.#rollNext = active.size >= segmentBytes
  }

  /** Appends to segment `sequence` from `size` on (cutting off anything after it). */
  static async open(
    dir: string,
    segmentBytes: number,
    sequence: number,
    size: number,
    onNewSegment: (sequence: number) => void,
  ): Promise<SegmentAppender> {
    const active = await ActiveSegment.open(dir, sequence, size)
    onNewSegment(sequence)
    return new SegmentAppender(dir, segmentBytes, active, onNewSegment)
  }

  /** Where the next frame goes: frames before it are in the segments. */
  get position(): { segment: number; position: number } {
    return { segment: this.#active.sequence, position: this.#active.size }
  }

  /** Bytes of the active segment not yet covered by an fdatasync. */
  get unsyncedBytes(): number {
    return this.#active.size - this.#active.synced
  }

  get synced(): boolean {
    return this.#active.synced >= this.#active.size
  }

  /** Whether appending a frame of this size starts a new segment. */
  rollsFor(frameBytes: number): boolean {
    const size = this.#active.size
    return this.#rollNext || (size > 0 && size + frameBytes > this.#segmentBytes)
  }

  /** Writes one frame; returns where. On failure nothing of it counts and the next frame takes its place. */
  async append(frame: Buffer): Promise<{ segment: number; position: number }> {
    const current = this.#active
    if (this.rollsFor(frame.length)) {
      // Frames not yet synced must be durable before the roll: only the active segment is synced later.
      if (!this.#rollNext) await this.sync()
      const next = await ActiveSegment.open(this.#dir, current.sequence + 1, 0)
      this.#active = next
      this.#rollNext = false
      this.#onNewSegment(next.sequence)
      // The old segment is complete (or suspect and abandoned); a failed close changes nothing on disk.
      await current.close().catch(() => undefined)
    }
    const active = this.#active
    // Encoded for the segment that was active then; a roll just now changes it.
    stampSegment(frame, active.sequence)
    const position = await active.append(frame)
    this.unsyncedSinceMs ??= Date.now()
    return { segment: active.sequence, position }
  }

  /** fdatasync of the active segment; a failure makes it suspect. */
  async sync(): Promise<void> {
    const active = this.#active
    try {
      await active.sync()
    } catch (err) {
      this.#rollNext = true
      throw err
    }
    if (active === this.#active && this.synced) this.unsyncedSinceMs = null
  }

  close(): Promise<void> {
    return this.#active.close()
  }
}
