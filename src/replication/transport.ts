// The peer transport: how two nodes of a cluster get a byte stream to each
// other. In: a host and port to listen on or dial. Out: a PeerConnection, a
// Duplex over which nothing flows before both ends have proved they hold the
// same cluster secret for the same cluster name and protocol version, and
// which is encrypted after. The replication protocol runs over any Duplex
// (tests wire peers with node:stream's duplexPair); this seam is what a
// LAN needs.
//
// TlsPskTransport: TLS 1.3 with an external pre-shared key (RFC 8446 §2.2,
// §4.2.11), no certificates. Tried on Node 24.21 / OpenSSL 3.5.8:
// - TLS 1.3 PSK through Node's `pskCallback` works, in psk_dhe_ke mode (the
//   PSK authenticates, an ephemeral (EC)DHE share gives forward secrecy:
//   `getEphemeralKeyInfo()` shows X25519MLKEM768 here). OpenSSL offers and
//   accepts psk_ke (no DHE) only with SSL_OP_ALLOW_NO_DHE_KEX, never set here.
// - Node hands the key to OpenSSL's TLS 1.2-style PSK callback, which binds it
//   to SHA-256: only TLS_AES_128_GCM_SHA256 and TLS_CHACHA20_POLY1305_SHA256
//   can be negotiated; with TLS_AES_256_GCM_SHA384 alone the PSK is ignored
//   and the handshake fails (ERR_SSL_NO_SUITABLE_SIGNATURE_ALGORITHM).
// - TLS 1.2 ECDHE-PSK-CHACHA20-POLY1305 works too, and plain PSK-* (no forward
//   secrecy) as well; DHE-PSK-* finds no shared cipher. TLS 1.2 is not
//   enabled: both ends are tributary, and 1.3 encrypts more of the handshake.
// So: minVersion = maxVersion = TLSv1.3, the two SHA-256 suites above.
//
// The PSK identity is the cluster name (it travels in clear, like a Kafka
// cluster id); the key is HKDF-SHA256(secret, salt = PSK_SALT, info =
// cluster name), so one secret file can serve several clusters without them
// sharing a key, and the secret itself is never used as a key. The protocol
// version is the ALPN protocol (`tributary/1`): a peer that speaks another
// one fails the handshake with no_application_protocol (RFC 7301 §3.2).
//
// Bounds: a TCP connect timeout, a handshake timeout, at most
// `maxPendingHandshakes` inbound connections not yet authenticated (more are
// destroyed at once and reported), TCP keepalive and noDelay on every socket.
// Every inbound refusal goes to `onRefused` with the peer's address and a
// `kind` for a metric label; an outbound one rejects connect() with
// TRIB_PEER_REFUSED (TCP failures: TRIB_PEER_UNREACHABLE). Neither the key
// nor the secret ever appears in a reason or an error.
//
// Inbound TLS sockets are made by hand (net.Server + new TLSSocket with
// isServer) rather than by tls.Server, so that each raw socket, its timer and
// its place in the pending count stay together; the server-side TLSSocket
// signals a finished handshake with its 'secure' event, which tls.Server
// itself relies on (the tests here would fail if that changed).
//
// Not here yet: mutual TLS with certificates (the alternative for
// operators who prefer them) would be a second PeerTransport.

import { hkdfSync } from 'node:crypto'
import { createServer, type Server, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import {
  createSecureContext,
  type SecureContext,
  TLSSocket,
  type TLSSocketOptions,
  type TlsOptions,
  connect as tlsConnect,
} from 'node:tls'
import { TributaryError } from '../errors.ts'

export interface PeerConnection {
  readonly socket: Duplex
  readonly remoteAddress: string
  readonly remotePort: number
}

export interface PeerTransport {
  /** Starts accepting peers; resolves with the address bound (port 0 picks a free one). */
  listen(
    host: string,
    port: number,
    onPeer: (conn: PeerConnection) => void,
  ): Promise<{ host: string; port: number }>
  /** Resolves once the peer is authenticated; rejects with TRIB_PEER_REFUSED or TRIB_PEER_UNREACHABLE. */
  connect(host: string, port: number, signal?: AbortSignal): Promise<PeerConnection>
  /** Stops listening and destroys every open socket, authenticated or not. Idempotent. */
  close(): Promise<void>
}

/** Why an inbound connection was refused, as a bounded set (a metric label). */
export type RefusalKind =
  | 'wrong-secret'
  | 'wrong-cluster'
  | 'protocol-version'
  | 'handshake-timeout'
  | 'not-a-peer'
  | 'too-many-handshakes'

export interface PeerRefusal {
  readonly address: string
  readonly port: number
  readonly kind: RefusalKind
  /** For a log line: what happened, never key material. */
  readonly reason: string
}

export interface TlsPskTransportOptions {
  readonly cluster: string
  readonly secret: Buffer
  /** The replication protocol version spoken, as an ALPN protocol name. */
  readonly protocol?: string
  readonly onRefused?: (info: PeerRefusal) => void
  readonly connectTimeoutMs?: number
  readonly handshakeTimeoutMs?: number
  readonly maxPendingHandshakes?: number
  readonly keepAliveMs?: number
}

export const PEER_PROTOCOL = 'tributary/1'
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000
export const DEFAULT_MAX_PENDING_HANDSHAKES = 16
export const DEFAULT_KEEPALIVE_MS = 10_000
export const TLS_MIN_VERSION = 'TLSv1.3'
export const TLS_MAX_VERSION = 'TLSv1.3'
export const TLS_CIPHERSUITES = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256'
const PSK_SALT = 'tributary cluster psk v1'
const PSK_BYTES = 32
const MIN_SECRET_BYTES = 32
/** OpenSSL's PSK_MAX_IDENTITY_LEN is 128 bytes on the client side. */
const MAX_CLUSTER_NAME_BYTES = 128
/** A peer-supplied string goes into a reason at most this long. */
const MAX_QUOTED = 64

/** The key both ends derive for a cluster: HKDF-SHA256 of the secret with the cluster name as info. */
export function derivePsk(secret: Buffer, cluster: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, PSK_SALT, cluster, PSK_BYTES))
}

export class TlsPskTransport implements PeerTransport {
  readonly #cluster: string
  readonly #key: Buffer
  readonly #protocol: string
  readonly #onRefused: (info: PeerRefusal) => void
  readonly #connectTimeoutMs: number
  readonly #handshakeTimeoutMs: number
  readonly #maxPending: number
  readonly #keepAliveMs: number
  readonly #context: SecureContext
  /** Every socket this transport opened or accepted and that is not closed yet. */
  readonly #sockets = new Set<Socket>()
  #pending = 0
  #server: Server | undefined
  #closing: Promise<void> | undefined

  constructor(options: TlsPskTransportOptions) {
    const nameBytes = Buffer.byteLength(options.cluster, 'utf8')
    if (nameBytes === 0 || nameBytes > MAX_CLUSTER_NAME_BYTES)
      throw new TributaryError(
        'TRIB_CONFIG_INVALID',
        `cluster name must be 1 to ${MAX_CLUSTER_NAME_BYTES} bytes`,
      )
    if (options.secret.length < MIN_SECRET_BYTES)
      throw new TributaryError(
        'TRIB_CLUSTER_SECRET_INVALID',
        `the secret has ${options.secret.length * 8} bits`,
      )
    this.#cluster = options.cluster
    this.#key = derivePsk(options.secret, options.cluster)
    this.#protocol = options.protocol ?? PEER_PROTOCOL
    this.#onRefused = options.onRefused ?? (() => {})
    this.#connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS
    this.#handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS
    this.#maxPending = options.maxPendingHandshakes ?? DEFAULT_MAX_PENDING_HANDSHAKES
    this.#keepAliveMs = options.keepAliveMs ?? DEFAULT_KEEPALIVE_MS
    this.#context = createSecureContext({
      minVersion: TLS_MIN_VERSION,
      maxVersion: TLS_MAX_VERSION,
      ciphers: TLS_CIPHERSUITES,
    })
  }

  listen(
    host: string,
    port: number,
    onPeer: (conn: PeerConnection) => void,
  ): Promise<{ host: string; port: number }> {
    if (this.#closing !== undefined)
      return Promise.reject(listenFailed(host, port, 'the transport is closed'))
    if (this.#server !== undefined) return Promise.reject(listenFailed(host, port, 'already listening'))
    const server = createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: this.#keepAliveMs })
    server.on('connection', (raw) => this.#accept(raw, onPeer))
    this.#server = server
    return new Promise((resolve, reject) => {
      server.once('error', (err) => {
        this.#server = undefined
        reject(listenFailed(host, port, (err as NodeJS.ErrnoException).code ?? err.message, err))
      })
      server.listen(port, host, () => {
        const address = server.address()
        if (address === null || typeof address === 'string') throw new Error('a TCP server has a port')
        resolve({ host: address.address, port: address.port })
      })
    })
  }

  connect(host: string, port: number, signal?: AbortSignal): Promise<PeerConnection> {
    if (this.#closing !== undefined)
      return Promise.reject(
        new TributaryError('TRIB_PEER_UNREACHABLE', `${host}:${port}: the transport is closed`),
      )
    if (signal?.aborted === true) return Promise.reject(signal.reason)
    const peer = `${host}:${port}`
    const raw = new Socket()
    this.#track(raw)
    return new Promise<PeerConnection>((resolve, reject) => {
      let tls: TLSSocket | undefined
      let settled = false
      const fail = (err: unknown): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        tls?.destroy()
        raw.destroy()
        reject(err)
      }
      const onAbort = (): void => fail(signal?.reason)
      signal?.addEventListener('abort', onAbort, { once: true })
      let timer = setTimeout(
        () =>
          fail(
            new TributaryError(
              'TRIB_PEER_UNREACHABLE',
              `${peer}: no TCP connection in ${this.#connectTimeoutMs} ms`,
            ),
          ),
        this.#connectTimeoutMs,
      )
      raw.on('error', (err: NodeJS.ErrnoException) => {
        if (tls === undefined)
          fail(
            new TributaryError('TRIB_PEER_UNREACHABLE', `${peer}: ${err.code ?? err.message}`, {
              cause: err,
            }),
          )
      })
      raw.connect(
        { host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: this.#keepAliveMs },
        () => {
          clearTimeout(timer)
          timer = setTimeout(
            () => fail(refused(peer, `no TLS handshake in ${this.#handshakeTimeoutMs} ms`)),
            this.#handshakeTimeoutMs,
          )
          const socket = tlsConnect({
            socket: raw,
            secureContext: this.#context,
            ALPNProtocols: [this.#protocol],
            pskCallback: () => ({ identity: this.#cluster, psk: this.#key }),
            // No certificate exists: the PSK handshake itself proves the server holds the key.
            checkServerIdentity: () => undefined,
          })
          tls = socket
          socket.on('error', (err: NodeJS.ErrnoException) => fail(refused(peer, clientReason(err), err)))
          socket.once('close', () =>
            fail(refused(peer, 'the peer closed the connection during the handshake')),
          )
          socket.once('secureConnect', () => {
            if (socket.alpnProtocol !== this.#protocol) {
              fail(refused(peer, `the peer speaks no protocol version this node knows (${this.#protocol})`))
              return
            }
            if (settled) return
            settled = true
            clearTimeout(timer)
            signal?.removeEventListener('abort', onAbort)
            resolve(this.#established(socket, raw))
          })
        },
      )
    })
  }

  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      const server = this.#server
      for (const socket of this.#sockets) socket.destroy()
      if (server === undefined || !server.listening) resolve()
      else server.close(() => resolve())
    })
    return this.#closing
  }

  #track(raw: Socket): void {
    this.#sockets.add(raw)
    raw.once('close', () => this.#sockets.delete(raw))
  }

  #accept(raw: Socket, onPeer: (conn: PeerConnection) => void): void {
    const address = raw.remoteAddress ?? 'unknown'
    const port = raw.remotePort ?? 0
    if (this.#closing !== undefined) {
      raw.destroy()
      return
    }
    if (this.#pending >= this.#maxPending) {
      raw.destroy()
      this.#onRefused({
        address,
        port,
        kind: 'too-many-handshakes',
        reason: `${this.#maxPending} connections are already in their handshake`,
      })
      return
    }
    this.#track(raw)
    // Once wrapped, the TLSSocket reports what goes wrong; this keeps a stray raw error from crashing the process.
    raw.on('error', () => {})
    this.#pending += 1
    // Set by the callbacks below when they learn why the handshake is going to fail.
    let cause: { kind: RefusalKind; reason: string } | undefined
    let done = false
    const finish = (refusal?: { kind: RefusalKind; reason: string }): void => {
      if (done) return
      done = true
      this.#pending -= 1
      clearTimeout(timer)
      if (refusal === undefined) return
      socket.destroy()
      raw.destroy()
      this.#onRefused({ address, port, ...refusal })
    }
    const timer = setTimeout(
      () =>
        finish({ kind: 'handshake-timeout', reason: `no TLS handshake in ${this.#handshakeTimeoutMs} ms` }),
      this.#handshakeTimeoutMs,
    )
    // TLSSocket reads pskCallback as tls.Server passes it, but @types/node lists it for the server and
    // tls.connect only: a variable of both types passes it without the excess-property check.
    const options: TLSSocketOptions & Pick<TlsOptions, 'pskCallback'> = {
      isServer: true,
      secureContext: this.#context,
      pskCallback: (_socket, identity) => {
        if (identity === this.#cluster) return this.#key
        cause = { kind: 'wrong-cluster', reason: `the peer is in cluster ${quote(identity)}` }
        // null: no key for this identity; OpenSSL then fails the handshake (no certificate to fall back on).
        return null
      },
      ALPNCallback: ({ protocols }) => {
        if (protocols.includes(this.#protocol)) return this.#protocol
        cause = {
          kind: 'protocol-version',
          reason: `the peer speaks ${quote(protocols.join(','))}, this node ${this.#protocol}`,
        }
        return undefined
      },
    }
    const socket = new TLSSocket(raw, options)
    socket.on('error', (err: NodeJS.ErrnoException) => finish(cause ?? serverReason(err)))
    socket.once('close', () =>
      finish(cause ?? { kind: 'not-a-peer', reason: 'closed the connection during the handshake' }),
    )
    socket.once('secure', () => {
      // A client that offered no ALPN at all gets here with alpnProtocol false.
      if (socket.alpnProtocol !== this.#protocol) {
        finish({
          kind: 'protocol-version',
          reason: `the peer offered no protocol version (${this.#protocol})`,
        })
        return
      }
      finish()
      onPeer(this.#established(socket, raw))
    })
  }

  /** What both sides do once a peer is authenticated. */
  #established(socket: TLSSocket, raw: Socket): PeerConnection {
    raw.setNoDelay(true)
    raw.setKeepAlive(true, this.#keepAliveMs)
    // Errors also destroy the socket, so the consumer sees 'close'; this listener only keeps an
    // error that arrives before the consumer attaches its own from crashing the process.
    socket.on('error', () => {})
    return { socket, remoteAddress: raw.remoteAddress ?? 'unknown', remotePort: raw.remotePort ?? 0 }
  }
}

function refused(peer: string, reason: string, cause?: unknown): TributaryError {
  return new TributaryError('TRIB_PEER_REFUSED', `${peer}: ${reason}`, { cause })
}

function listenFailed(host: string, port: number, reason: string, cause?: unknown): TributaryError {
  return new TributaryError('TRIB_LISTEN_FAILED', `peer transport ${host}:${port}: ${reason}`, { cause })
}

/** The TLS alert a client receives, in words (codes from Node 24 / OpenSSL 3.5, see the header). */
function clientReason(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR':
      return 'the peer holds another cluster secret'
    case 'ERR_SSL_SSL/TLS_ALERT_HANDSHAKE_FAILURE':
      return 'the peer does not know this cluster name (or is not a tributary peer)'
    case 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL':
      return 'the peer speaks another protocol version'
    default:
      return `TLS handshake failed (${err.code ?? err.message})`
  }
}

function serverReason(err: NodeJS.ErrnoException): { kind: RefusalKind; reason: string } {
  if (err.code === 'ERR_SSL_BINDER_DOES_NOT_VERIFY')
    return { kind: 'wrong-secret', reason: 'the peer holds another cluster secret' }
  return { kind: 'not-a-peer', reason: `not a TLS 1.3 PSK peer (${err.code ?? err.message})` }
}

/** A peer-supplied string, JSON-quoted and cut short, for a reason. */
function quote(text: string): string {
  return JSON.stringify(text.length > MAX_QUOTED ? `${text.slice(0, MAX_QUOTED)}...` : text)
}
