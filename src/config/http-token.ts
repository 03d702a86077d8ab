// The admin API's bearer token: `http.token`, or the first line of
// `http.tokenFile`, read once at start so that a missing or short file stops
// the start before anything is opened.

import { readFileSync } from 'node:fs'
import { TributaryError } from '../errors.ts'
import type { Config } from './schema.ts'

/** The token from http.token or the first line of http.tokenFile; null when none is set (loopback only). */
export function readToken(http: Readonly<Config['http']>): string | null {
  if (http.token !== undefined) return http.token
  if (http.tokenFile === undefined) return null
  let text: string
  try {
    text = readFileSync(http.tokenFile, 'utf8')
  } catch (err) {
    throw new TributaryError(
      'TRIB_CONFIG_UNREADABLE',
      `http.tokenFile ${http.tokenFile}: ${(err as Error).message}`,
    )
  }
  const token = text.split('\n')[0]?.trim() ?? ''
  if (token.length < 16)
    throw new TributaryError(
      'TRIB_CONFIG_INVALID',
      `http.tokenFile ${http.tokenFile}: the token needs at least 16 characters`,
    )
  return token
}
