// Start-up replay for SegmentLogStore: the frames written after the last
// index commit ("segment-position" in log-meta) are read back in order and
// handed to the store as index entries and marker changes. A damaged batch
// inside a readable frame is quarantined; records that no readable frame
// holds show up as a gap before the partition's next batch and are reported;
// bytes after the last intact frame of the last segment are a torn write that
// was never acknowledged and are cut off by the caller.

import { renameSync } from 'node:fs'
import { readBatchHeader, verifyBatch } from './batch-codec.ts'
import type { IndexEntry } from './batch-index.ts'
import type { MarkerChange } from './frame-codec.ts'
import type { CorruptBatch } from './log-store.ts'
import { errorText } from './partition-reads.ts'
import { listSegments, type SegmentReader } from './segment-files.ts'
import { type ScannedFrame, scanSegment } from './segment-scan.ts'

export const NEXT_PARTITION_ID = 'next-partition-id'
export const SEGMENT_POSITION = 'segment-position'

export interface PartitionMeta {
  id: number
  stream: string
  origin: string
  partition: number
  firstOffset: number
  nextOffset: number
  bytes: number
  lastTimestampMs: number | null
}

/** Frames before this point are in the index. */
export interface SegmentPosition {
  readonly segment: number
  readonly position: number
}

/** What of a segment the index still refers to. */
export interface SegmentUse {
  batches: number
  bytes: number
}

export interface ReplayTarget {
  readonly reader: SegmentReader
  readonly partition: (id: number) => PartitionMeta | undefined
  readonly addEntry: (meta: PartitionMeta, entry: IndexEntry) => void
  readonly markerChange: (change: MarkerChange) => void
  /** The batch fills a hole below the partition's end (a repair written after the last index commit). */
  readonly isHole: (meta: PartitionMeta, batch: Buffer) => boolean
}

export interface Quarantined {
  readonly meta: PartitionMeta
  readonly damage: CorruptBatch
  readonly batch: Buffer
}

export interface ReplayResult {
  /** The last segment and where its readable frames end (the next frame goes there). */
  readonly last: SegmentPosition | null
  /** False when the last segment could not be read: appends go to a new one. */
  readonly appendable: boolean
  readonly frames: number
  readonly damaged: CorruptBatch[]
  readonly quarantine: Quarantined[]
}

export function partitionKey(stream: string, origin: string, partition: number): string {
  return `partition:${stream}:${origin}:${partition}`
}

/**
 * lmdb-js rejects a failed commit's writes with a generic error whose
 * `commitError` is a second, already rejected promise holding the cause (ENOSPC,
 * EIO). Nobody else handles that promise, so it is read here: otherwise the
 * process would die of an unhandled rejection on a full disk.
 */
export async function commitErrorText(err: unknown): Promise<string> {
  const commitError = (err as { commitError?: Promise<unknown> } | null)?.commitError
  if (!(commitError instanceof Promise)) return errorText(err)
  try {
    await commitError
    return errorText(err)
  } catch (cause) {
    return errorText(cause)
  }
}

/**
 * A new LMDB environment owns no segments: files left in the directory belong
 * to a log that is gone (its environment was moved aside or deleted) and are
 * moved aside in turn, never replayed into the new one.
 */
export function moveForeignSegments(dir: string): string | null {
  if (listSegments(dir).length === 0) return null
  const aside = `${dir}.orphaned-${Date.now()}`
  renameSync(dir, aside)
  return aside
}

function applyFrame(
  target: ReplayTarget,
  segment: number,
  scanned: ScannedFrame,
  out: { damaged: CorruptBatch[]; quarantine: Quarantined[] },
): void {
  if (scanned.frame === null) return
  for (const { partitionId, batch, at } of scanned.frame.batches) {
    const meta = target.partition(partitionId)
    if (meta === undefined) continue
    const ref = { stream: meta.stream, origin: meta.origin, partition: meta.partition }
    let header: ReturnType<typeof verifyBatch>
    try {
      header = verifyBatch(batch)
    } catch (err) {
      let readable: ReturnType<typeof readBatchHeader> | null = null
      try {
        readable = readBatchHeader(batch)
      } catch {
        // Unreadable header: the batch's offsets show up as a gap instead.
      }
      if (readable === null || readable.baseOffset < meta.nextOffset) continue
      const damage = {
        ...ref,
        baseOffset: readable.baseOffset,
        recordCount: readable.recordCount,
        error: errorText(err),
      }
      out.damaged.push(damage)
      out.quarantine.push({ meta, damage, batch: Buffer.from(batch) })
      meta.nextOffset = readable.baseOffset + readable.recordCount
      continue
    }
    const entry = {
      baseOffset: header.baseOffset,
      recordCount: header.recordCount,
      maxTimestampMs: header.maxTimestampMs,
      segment,
      position: scanned.position + at,
      length: batch.length,
    }
    if (header.baseOffset < meta.nextOffset) {
      if (target.isHole(meta, Buffer.from(batch))) target.addEntry(meta, entry)
      continue
    }
    if (header.baseOffset > meta.nextOffset) {
      out.damaged.push({
        ...ref,
        baseOffset: meta.nextOffset,
        recordCount: header.baseOffset - meta.nextOffset,
        error: `records missing before segment ${segment} position ${scanned.position}: unreadable frame`,
      })
    }
    target.addEntry(meta, entry)
    meta.nextOffset = header.baseOffset + header.recordCount
    meta.lastTimestampMs = Math.max(meta.lastTimestampMs ?? 0, header.maxTimestampMs)
  }
  if (scanned.intact) for (const change of scanned.frame.markers) target.markerChange(change)
}

/** Replays every frame from `from` on, in order. */
export function replaySegments(target: ReplayTarget, dir: string, from: SegmentPosition): ReplayResult {
  const segments = listSegments(dir)
  const out = { damaged: [] as CorruptBatch[], quarantine: [] as Quarantined[] }
  let last: SegmentPosition | null = null
  let frames = 0
  let appendable = true
  for (const segment of segments) {
    if (segment < from.segment) continue
    let result: { end: number }
    try {
      result = scanSegment(
        target.reader,
        segment,
        segment === from.segment ? from.position : 0,
        (scanned) => {
          frames++
          applyFrame(target, segment, scanned, out)
        },
      )
      appendable = true
    } catch {
      // The file cannot be read (I/O error): what it held shows up as gaps, and
      // it is never truncated or appended to.
      result = { end: 0 }
      appendable = false
    }
    last = { segment, position: result.end }
  }
  return { last, appendable, frames, ...out }
}
