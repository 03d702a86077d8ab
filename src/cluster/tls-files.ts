// The files of cluster.tls: this node's certificate and key and the cluster's
// CA, as PEM. Read at start and again on SIGHUP; out flow their bytes for the
// mutual-TLS transport, which checks that they fit together. The key file is
// key material: owner-only, like the cluster secret, and never logged.

import { readFileSync } from 'node:fs'
import { TributaryError } from '../errors.ts'
import { readOwnerOnlyFile } from './owner-only-file.ts'

export interface ClusterTlsFiles {
  readonly certFile: string
  readonly keyFile: string
  readonly caFile: string
}

/** A certificate chain or a CA bundle is a few KiB; far more is not one. */
const MAX_PEM_BYTES = 1024 * 1024

export function readClusterTls(files: ClusterTlsFiles): { cert: Buffer; key: Buffer; ca: Buffer } {
  const key = readOwnerOnlyFile(files.keyFile, MAX_PEM_BYTES, (reason, cause) =>
    invalid(`cluster.tls.keyFile ${files.keyFile}`, reason, cause),
  )
  return {
    cert: readPublic(`cluster.tls.certFile ${files.certFile}`, files.certFile),
    key: Buffer.from(key),
    ca: readPublic(`cluster.tls.caFile ${files.caFile}`, files.caFile),
  }
}

function readPublic(what: string, file: string): Buffer {
  try {
    const pem = readFileSync(file)
    if (pem.length > MAX_PEM_BYTES) throw invalid(what, `it is ${pem.length} bytes, not a PEM file`)
    return pem
  } catch (err) {
    if (err instanceof TributaryError) throw err
    const code = (err as NodeJS.ErrnoException).code
    throw invalid(what, code === 'ENOENT' ? 'no such file' : `cannot be read (${code ?? 'error'})`, err)
  }
}

function invalid(what: string, reason: string, cause?: unknown): TributaryError {
  return new TributaryError('TRIB_CLUSTER_TLS_INVALID', `${what}: ${reason}`, { cause })
}
