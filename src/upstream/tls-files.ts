// Reads a sink's TLS settings (PEM file paths in the config) into the options
// Node's tls module takes. Read when the sink connects, so renewed
// certificates are picked up on the next reconnect.

import { readFileSync } from 'node:fs'
import type { TlsConfig } from '../config/schema.ts'
import { TributaryError } from '../errors.ts'

export interface TlsOptions {
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
  rejectUnauthorized: boolean
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path)
  } catch (err) {
    throw new TributaryError('TRIB_CONFIG_INVALID', `sink TLS ${what} file ${path} cannot be read`, {
      cause: err,
    })
  }
}

export function tlsOptions(tls: TlsConfig | undefined): TlsOptions | undefined {
  if (tls === undefined) return undefined
  const options: TlsOptions = { rejectUnauthorized: tls.rejectUnauthorized }
  if (tls.ca !== undefined) options.ca = readPem(tls.ca, 'ca')
  if (tls.cert !== undefined) options.cert = readPem(tls.cert, 'cert')
  if (tls.key !== undefined) options.key = readPem(tls.key, 'key')
  return options
}

/** A password given inline or in a file (trailing newline dropped). */
export function secret(
  inline: string | undefined,
  file: string | undefined,
  what: string,
): string | undefined {
  if (file === undefined) return inline
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '')
  } catch (err) {
    throw new TributaryError('TRIB_CONFIG_INVALID', `${what} file ${file} cannot be read`, { cause: err })
  }
}
