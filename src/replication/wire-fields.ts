// The replication protocol's field encodings (frame-codec.ts has the message
// layouts built from them): big-endian unsigned integers, u64 limited to safe
// JS integers, u16-length UTF-8 strings, u32-length blobs. A body is encoded
// in two passes over one description: FieldMeasure checks every value and
// sums the bytes, FieldWriter writes them into a buffer of exactly that size.

import { isUtf8 } from 'node:buffer'
import { TributaryError } from '../errors.ts'

export const MAX_U64 = Number.MAX_SAFE_INTEGER
const U32_RANGE = 2 ** 32

export function protocolError(detail: string): TributaryError {
  return new TributaryError('TRIB_REPLICATION_PROTOCOL', detail)
}

/** Values that do not fit are programmer errors: RangeError. */
export function checkUint(value: number, max: number, field: string): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`replication frame: ${field} must be an integer from 0 to ${max}, not ${value}`)
  }
}

/** Where a body's fields go; `field` names the value in errors. */
export interface FieldSink {
  u8(value: number, field: string): void
  u16(value: number, field: string): void
  u32(value: number, field: string): void
  u64(value: number, field: string): void
  string(value: string, field: string): void
  blob(value: Uint8Array, field: string): void
}

// A lone UTF-16 surrogate would be written as U+FFFD and read back changed.
const LONE_SURROGATE = /\p{Cs}/u

export class FieldMeasure implements FieldSink {
  bytes = 0

  u8(value: number, field: string): void {
    checkUint(value, 0xff, field)
    this.bytes += 1
  }

  u16(value: number, field: string): void {
    checkUint(value, 0xffff, field)
    this.bytes += 2
  }

  u32(value: number, field: string): void {
    checkUint(value, 0xffff_ffff, field)
    this.bytes += 4
  }

  u64(value: number, field: string): void {
    checkUint(value, MAX_U64, field)
    this.bytes += 8
  }

  string(value: string, field: string): void {
    const length = Buffer.byteLength(value, 'utf8')
    if (length > 0xffff) throw new RangeError(`replication frame: ${field} is ${length} bytes, over 65535`)
    if (LONE_SURROGATE.test(value)) {
      throw new RangeError(`replication frame: ${field} holds a lone UTF-16 surrogate (no UTF-8 for it)`)
    }
    this.bytes += 2 + length
  }

  blob(value: Uint8Array, field: string): void {
    checkUint(value.length, 0xffff_ffff, `${field} length`)
    this.bytes += 4 + value.length
  }
}

/** Writes values FieldMeasure has checked. */
export class FieldWriter implements FieldSink {
  #pos: number
  readonly #buf: Buffer

  constructor(buf: Buffer, pos: number) {
    this.#buf = buf
    this.#pos = pos
  }

  get pos(): number {
    return this.#pos
  }

  u8(value: number): void {
    this.#pos = this.#buf.writeUInt8(value, this.#pos)
  }

  u16(value: number): void {
    this.#pos = this.#buf.writeUInt16BE(value, this.#pos)
  }

  u32(value: number): void {
    this.#pos = this.#buf.writeUInt32BE(value, this.#pos)
  }

  u64(value: number): void {
    this.#pos = this.#buf.writeUInt32BE(Math.floor(value / U32_RANGE), this.#pos)
    this.#pos = this.#buf.writeUInt32BE(value % U32_RANGE, this.#pos)
  }

  string(value: string): void {
    const length = this.#buf.write(value, this.#pos + 2, 'utf8')
    this.#buf.writeUInt16BE(length, this.#pos)
    this.#pos += 2 + length
  }

  blob(value: Uint8Array): void {
    this.#pos = this.#buf.writeUInt32BE(value.length, this.#pos)
    this.#buf.set(value, this.#pos)
    this.#pos += value.length
  }
}

/**
 * Reads one frame's body. Anything that does not hold together (a field
 * running past the end, an unsafe u64, bad UTF-8, a count the bytes left
 * cannot hold, bytes left over) is TRIB_REPLICATION_PROTOCOL naming the field.
 */
export class FieldReader {
  #pos = 0
  readonly #buf: Buffer
  readonly #what: string

  /** `what` names the message in errors. */
  constructor(buf: Buffer, what: string) {
    this.#buf = buf
    this.#what = what
  }

  #need(n: number, field: string): void {
    if (this.#pos + n > this.#buf.length) {
      throw protocolError(
        `${this.#what} frame truncated: ${field} needs ${n} bytes at body byte ${this.#pos}, ` +
          `the body has ${this.#buf.length}`,
      )
    }
  }

  u8(field: string): number {
    this.#need(1, field)
    return this.#buf.readUInt8(this.#pos++)
  }

  u16(field: string): number {
    this.#need(2, field)
    const v = this.#buf.readUInt16BE(this.#pos)
    this.#pos += 2
    return v
  }

  u32(field: string): number {
    this.#need(4, field)
    const v = this.#buf.readUInt32BE(this.#pos)
    this.#pos += 4
    return v
  }

  u64(field: string): number {
    this.#need(8, field)
    const value = this.#buf.readUInt32BE(this.#pos) * U32_RANGE + this.#buf.readUInt32BE(this.#pos + 4)
    if (value > MAX_U64) {
      throw protocolError(`${this.#what} frame: ${field} is above 2^53 - 1, the largest safe integer`)
    }
    this.#pos += 8
    return value
  }

  string(field: string): string {
    const length = this.u16(`${field} length`)
    this.#need(length, field)
    const bytes = this.#buf.subarray(this.#pos, this.#pos + length)
    if (!isUtf8(bytes)) throw protocolError(`${this.#what} frame: ${field} is not valid UTF-8`)
    this.#pos += length
    return bytes.toString('utf8')
  }

  /** A view into the body (the decoder's own copy, never reused). */
  blob(field: string): Buffer {
    const length = this.u32(`${field} length`)
    this.#need(length, field)
    const bytes = this.#buf.subarray(this.#pos, this.#pos + length)
    this.#pos += length
    return bytes
  }

  /** A count of entries, each at least `minBytes` long, checked against the bytes left before any is read. */
  count(field: string, minBytes: number, bits: 16 | 32): number {
    const n = bits === 16 ? this.u16(field) : this.u32(field)
    const left = this.#buf.length - this.#pos
    if (n * minBytes > left) {
      throw protocolError(`${this.#what} frame: ${field} is ${n}, more than the ${left} bytes left can hold`)
    }
    return n
  }

  end(): void {
    const left = this.#buf.length - this.#pos
    if (left !== 0) throw protocolError(`${this.#what} frame: ${left} trailing bytes after the last field`)
  }
}
