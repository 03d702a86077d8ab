// A throwaway PKI for TLS tests, made with Debian's openssl: a CA, a server
// certificate for 127.0.0.1 (IP SAN) and a client certificate, all signed by
// the CA. PEM files in `dir`.

import { execFileSync } from 'node:child_process'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface TestCerts {
  readonly ca: string
  readonly serverCert: string
  readonly serverKey: string
  readonly clientCert: string
  readonly clientKey: string
}

function openssl(dir: string, args: readonly string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore', timeout: 30_000 })
}

const RSA = ['-newkey', 'rsa:2048', '-nodes']
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']

function signed(dir: string, name: string, subject: string, extensions: string, key = RSA): void {
  openssl(dir, ['req', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject])
  writeFileSync(join(dir, `${name}.ext`), extensions)
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    `${name}.crt`,
    '-days',
    '2',
    '-sha256',
    '-extfile',
    `${name}.ext`,
  ])
}

/** A self-signed CA, ca.crt and ca.key, in `dir`. */
function selfSignedCa(dir: string, subject: string, key: readonly string[]): void {
  openssl(dir, [
    'req',
    '-x509',
    ...key,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '2',
    '-subj',
    subject,
  ])
}

export function makeTestCerts(dir: string): TestCerts {
  selfSignedCa(dir, '/CN=tributary test CA', RSA)
  signed(dir, 'server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  signed(dir, 'client', '/CN=tributary-edge', 'extendedKeyUsage=clientAuth\n')
  return {
    ca: join(dir, 'ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.crt'),
    clientKey: join(dir, 'client.key'),
  }
}

export interface ClusterTls {
  readonly certFile: string
  readonly keyFile: string
  readonly caFile: string
}

/**
 * A cluster CA in `dir` and a certificate per node signed by it, as the
 * README tells operators to make them: EC P-256, both TLS uses, and the
 * subjectAltName URI that names the cluster.
 */
export function makeClusterCerts(
  dir: string,
  cluster: string,
  nodes: readonly string[],
): { caFile: string; tls: (node: string) => ClusterTls } {
  selfSignedCa(dir, `/CN=${cluster} CA`, EC)
  const caFile = join(dir, 'ca.crt')
  for (const node of nodes) {
    const extensions = `subjectAltName=URI:tributary://${cluster}\nextendedKeyUsage=serverAuth,clientAuth\n`
    signed(dir, node, `/CN=${node}`, extensions, EC)
    chmodSync(join(dir, `${node}.key`), 0o600)
  }
  const tls = (node: string): ClusterTls => {
    if (!nodes.includes(node)) throw new Error(`no certificate was made for ${node}`)
    return { certFile: join(dir, `${node}.crt`), keyFile: join(dir, `${node}.key`), caFile }
  }
  return { caFile, tls }
}
