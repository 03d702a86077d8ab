// Errors over HTTP: the same stable TRIB_* codes as everywhere (src/errors.ts),
// as `{ "error": { "code", "message", "retriable", ...details } }` with the
// HTTP status that fits the code.

import type { FastifyReply } from 'fastify'
import { type ErrorCode, isTributaryError, TributaryError } from '../errors.ts'

const STATUS: Partial<Record<ErrorCode, number>> = {
  TRIB_HTTP_BAD_REQUEST: 400,
  TRIB_HTTP_UNAUTHORIZED: 401,
  TRIB_HTTP_NOT_FOUND: 404,
  TRIB_STREAM_UNKNOWN: 404,
  TRIB_PARTITION_UNKNOWN: 404,
  TRIB_GROUP_UNKNOWN: 404,
  TRIB_OFFSET_OUT_OF_RANGE: 416,
  TRIB_HTTP_BUSY: 503,
  TRIB_NOT_READY: 503,
  TRIB_STORE_CLOSED: 503,
}

export interface ErrorBody {
  readonly error: {
    readonly code: ErrorCode
    readonly message: string
    readonly retriable: boolean
    readonly [detail: string]: unknown
  }
}

export function statusOf(code: ErrorCode): number {
  return STATUS[code] ?? 500
}

export function errorBody(err: TributaryError, details: Record<string, unknown> = {}): ErrorBody {
  return { error: { code: err.code, message: err.message, retriable: err.retriable, ...details } }
}

/** An error with extra fields for the body (e.g. the partition's offsets beside OFFSET_OUT_OF_RANGE). */
export class ApiError extends TributaryError {
  readonly details: Record<string, unknown>

  constructor(code: ErrorCode, detail: string, details: Record<string, unknown> = {}) {
    super(code, detail)
    this.details = details
  }
}

export function sendError(reply: FastifyReply, err: TributaryError): FastifyReply {
  const details = err instanceof ApiError ? err.details : {}
  if (err.code === 'TRIB_HTTP_UNAUTHORIZED') reply.header('www-authenticate', 'Bearer')
  return reply.code(statusOf(err.code)).send(errorBody(err, details))
}

/** Anything thrown in a route, as a TributaryError (validation errors become TRIB_HTTP_BAD_REQUEST). */
export function asTributaryError(err: unknown): { error: TributaryError; unexpected: boolean } {
  if (isTributaryError(err)) return { error: err, unexpected: false }
  const e = err as { validation?: unknown; statusCode?: number; message?: string }
  if (e.validation !== undefined || (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500))
    return { error: new TributaryError('TRIB_HTTP_BAD_REQUEST', e.message), unexpected: false }
  return {
    error: new TributaryError('TRIB_INTERNAL', e.message ?? String(err)),
    unexpected: true,
  }
}
