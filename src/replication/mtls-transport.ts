// Mutual TLS between the nodes of a cluster: the PeerTransport for operators
// who run a CA rather than share a secret. In: this node's certificate and
// key and the CA (PEM) that signs every node's certificate; out, as from
// TlsPskTransport (transport.ts, whose TlsTransport holds everything but the
// handshake): a Duplex over which nothing flows before both ends have
// verified each other.
//
// Both ends present a certificate and verify the other's against the CA,
// TLS 1.3 only, ALPN `tributary/1` as the protocol version. Host names are
// not checked (peers are found by address, often a DHCP one); instead each
// certificate must name the cluster in a subjectAltName URI,
// `tributary://<cluster name>`. Why: a CA is often shared (a site's internal
// CA signs web servers and laptops too); without that name any certificate
// of that CA could join the cluster and read or inject every partition. The
// link's hello also names the cluster, but a hello is the peer's word; the
// certificate is the CA's.
//
// Tried on Node 24 / OpenSSL 3.5: the server side is a tls.Server that never
// listens, fed each raw socket from TlsTransport's net.Server with
// emit('connection') (the documented way to hand it a socket). A TLSSocket
// made by hand with isServer requests a certificate but never checks it:
// Node verifies the chain only in tls.Server's own 'secure' handler. With
// rejectUnauthorized: true, tls.Server destroys an unverified peer without
// saying why; so the server runs with requestCert: true and
// rejectUnauthorized: false, and refuses in 'secureConnection' every socket
// that is not `authorized`, with its authorizationError (the same check
// Node makes, and a reason for the log). Nothing is read from or written to
// such a socket. The dialing side keeps rejectUnauthorized: true.
//
// TLS 1.3 lets the client finish its handshake before the server has
// checked the client's certificate: a dialer whose certificate the other
// node refuses sees connect() succeed and the link close at once (the
// refusing node logs and counts it). A dialer that does not trust the other
// node's certificate refuses it itself, before sending its own.
//
// setCredentials() replaces certificate, key and CA for the connections
// made after it (SIGHUP); links already up keep going.

import { X509Certificate } from 'node:crypto'
import type { Socket } from 'node:net'
import {
  type ConnectionOptions,
  createSecureContext,
  createServer as createTlsServer,
  type PeerCertificate,
  type SecureContext,
  type SecureContextOptions,
  type TLSSocket,
  type Server as TlsServer,
} from 'node:tls'
import { TributaryError } from '../errors.ts'
import {
  commonClientReason,
  type HandshakeRefusal,
  type ServerHandshake,
  TLS_MAX_VERSION,
  TLS_MIN_VERSION,
  TlsTransport,
  type TlsTransportOptions,
} from './transport.ts'

/** PEM bytes: this node's certificate (chain) and key, and the CA every node's certificate is signed by. */
export interface ClusterCredentials {
  readonly cert: Buffer
  readonly key: Buffer
  readonly ca: Buffer
}

export interface MutualTlsTransportOptions extends TlsTransportOptions {
  readonly cluster: string
  readonly credentials: ClusterCredentials
}

/** The subjectAltName URI a node certificate of `cluster` carries. */
export function clusterUri(cluster: string): string {
  return `tributary://${cluster}`
}

/** Null when the certificate names the cluster; else why not, for a reason. */
export function clusterNameProblem(subjectAltName: string | undefined, cluster: string): string | null {
  const want = `URI:${clusterUri(cluster)}`
  // Node lists entries as "DNS:a, URI:b"; an entry with a comma or quote in it comes JSON-quoted.
  if ((subjectAltName ?? '').split(', ').includes(want)) return null
  return `its certificate does not name cluster "${cluster}" (subjectAltName ${want})`
}

const closedDuringMutualHandshake: HandshakeRefusal = {
  kind: 'not-a-peer',
  reason:
    "closed the connection during the handshake (as a peer that does not trust this node's certificate does)",
}

export class MutualTlsTransport extends TlsTransport {
  readonly #cluster: string
  readonly #tls: TlsServer
  #context: SecureContext
  /** Inbound handshakes in progress, by the peer's address:port (what tls.Server's events carry). */
  readonly #inbound = new Map<string, ServerHandshake>()

  constructor(options: MutualTlsTransportOptions) {
    super(options)
    this.#cluster = options.cluster
    this.#context = checkedContext(options.credentials, options.cluster)
    this.#tls = createTlsServer({
      ...contextOptions(options.credentials),
      requestCert: true,
      // Checked in 'secureConnection' below, with the reason (see the header).
      rejectUnauthorized: false,
      ALPNCallback: ({ protocols }) => (protocols.includes(this.protocol) ? this.protocol : undefined),
    })
    this.#tls.on('secureConnection', (socket) => {
      const outcome = this.#take(socket)
      if (outcome === undefined) return
      const refusal = this.#verifyClient(socket)
      if (refusal === null) outcome.accepted(socket)
      else outcome.refused(refusal)
    })
    this.#tls.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
      this.#take(socket)?.refused(serverReason(err))
    })
  }

  /** New certificate, key and CA for the connections made from now on; throws if they do not fit together. */
  setCredentials(credentials: ClusterCredentials): void {
    const context = checkedContext(credentials, this.#cluster)
    this.#tls.setSecureContext(contextOptions(credentials))
    this.#context = context
  }

  protected override clientOptions(): ConnectionOptions {
    return {
      secureContext: this.#context,
      rejectUnauthorized: true,
      // No host name check (peers are found by address); the certificate must name the cluster.
      checkServerIdentity: (_host: string, cert: PeerCertificate) => {
        const problem = clusterNameProblem(cert.subjectaltname, this.#cluster)
        return problem === null ? undefined : Object.assign(new Error(problem), { code: CLUSTER_NOT_NAMED })
      },
    }
  }

  protected override clientReason(err: NodeJS.ErrnoException): string {
    if (err.code === CLUSTER_NOT_NAMED) return `the peer's ${err.message.replace(/^its /, '')}`
    if (err.code !== undefined && VERIFY_ERRORS.has(err.code))
      return `the peer's certificate does not verify against cluster.tls.caFile (${err.code})`
    switch (err.code) {
      case 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED':
        return 'the peer wants a certificate from this node'
      case 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA':
      case 'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE':
        return "the peer does not trust this node's certificate (another CA?)"
      default:
        return commonClientReason(err)
    }
  }

  protected override serverHandshake(raw: Socket, outcome: ServerHandshake): void {
    const key = `${raw.remoteAddress}:${raw.remotePort}`
    this.#inbound.set(key, outcome)
    raw.once('close', () => {
      if (this.#inbound.get(key) !== outcome) return
      this.#inbound.delete(key)
      outcome.refused(closedDuringMutualHandshake)
    })
    this.#tls.emit('connection', raw)
  }

  /** The handshake waiting for this socket's outcome, once. */
  #take(socket: TLSSocket): ServerHandshake | undefined {
    const key = `${socket.remoteAddress}:${socket.remotePort}`
    const outcome = this.#inbound.get(key)
    this.#inbound.delete(key)
    return outcome
  }

  #verifyClient(socket: TLSSocket): HandshakeRefusal | null {
    const cert = socket.getPeerCertificate()
    if (Object.keys(cert).length === 0)
      return { kind: 'no-certificate', reason: 'the peer presented no certificate' }
    if (!socket.authorized)
      return {
        kind: 'bad-certificate',
        reason: `its certificate (subject ${cert.subject?.CN ?? '?'}) does not verify against cluster.tls.caFile (${String(socket.authorizationError)})`,
      }
    const problem = clusterNameProblem(cert.subjectaltname, this.#cluster)
    return problem === null ? null : { kind: 'wrong-cluster', reason: problem }
  }
}

/** Marks the error checkServerIdentity returns when the peer's certificate names another cluster. */
const CLUSTER_NOT_NAMED = 'ERR_TLS_CERT_ALTNAME_INVALID'

/** OpenSSL's verification results, as Node names them (a dialer's certificate check). */
const VERIFY_ERRORS = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'INVALID_PURPOSE',
])

function contextOptions(credentials: ClusterCredentials): SecureContextOptions {
  const { cert, key, ca } = credentials
  return { cert, key, ca, minVersion: TLS_MIN_VERSION, maxVersion: TLS_MAX_VERSION }
}

function serverReason(err: NodeJS.ErrnoException): HandshakeRefusal {
  switch (err.code) {
    case 'ERR_SSL_NO_APPLICATION_PROTOCOL':
      return { kind: 'protocol-version', reason: 'the peer speaks another protocol version' }
    case 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA':
    case 'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE':
      return {
        kind: 'bad-certificate',
        reason: "the peer does not trust this node's certificate (another CA?)",
      }
    case 'ECONNRESET':
      return closedDuringMutualHandshake
    default:
      return { kind: 'not-a-peer', reason: `not a mutual-TLS peer (${err.code ?? err.message})` }
  }
}

/**
 * The context for `credentials`, once they fit: PEM that parses, a key that is
 * the certificate's, a certificate that names the cluster and (when certFile
 * holds no chain) is signed by a certificate of the CA file. Otherwise
 * TRIB_CLUSTER_TLS_INVALID at start, not a refusal by every peer later.
 */
function checkedContext(credentials: ClusterCredentials, cluster: string): SecureContext {
  let context: SecureContext
  try {
    context = createSecureContext(contextOptions(credentials))
  } catch (err) {
    const detail = (err as NodeJS.ErrnoException).code ?? (err as Error).message
    throw invalid(`certificate, key and CA do not fit together (${detail})`, err)
  }
  const chain = certificatesIn(credentials.cert)
  const leaf = chain[0]
  if (leaf === undefined) throw invalid('cluster.tls.certFile holds no PEM certificate')
  const problem = clusterNameProblem(leaf.subjectAltName, cluster)
  if (problem !== null) throw invalid(`cluster.tls.certFile: ${problem}`)
  const signed = (ca: X509Certificate) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey)
  if (chain.length === 1 && !certificatesIn(credentials.ca).some(signed))
    throw invalid(
      `cluster.tls.certFile (subject ${leaf.subject}) is not signed by the CA in cluster.tls.caFile`,
    )
  return context
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g

function certificatesIn(pem: Buffer): X509Certificate[] {
  return (pem.toString('latin1').match(PEM_CERTIFICATE) ?? []).map((block) => new X509Certificate(block))
}

function invalid(detail: string, cause?: unknown): TributaryError {
  return new TributaryError('TRIB_CLUSTER_TLS_INVALID', detail, { cause })
}
