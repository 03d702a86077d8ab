// The PeerTransport seam (how replication links are made) and its TLS
// implementation. Nothing flows before both ends prove they hold the cluster
// secret, and everything after is encrypted: TLS 1.3 with an external
// pre-shared key (RFC 8446 §2.2; Node's `pskCallback`), which OpenSSL uses in
// the psk_dhe_ke mode, so each link also gets an ephemeral (EC)DHE key:
// forward secrecy, and a recorded link stays sealed if the secret leaks
// later. The PSK identity is the cluster name and the key is
// HKDF-SHA256(secret, salt = cluster name): one secret file can serve
// several clusters without them sharing a key. No certificates are involved.
// Suites: TLS_AES_128_GCM_SHA256 and TLS_CHACHA20_POLY1305_SHA256, the
// SHA-256 suites a PSK of this kind can be used with (a SHA-384 suite fails
// the handshake); ChaCha20 is the fast one on a Pi without AES instructions.
//
// A wrong secret or cluster name fails the handshake: the listener reports
// it (onRefused, with the peer's address, never a key), the dialer rejects
// with TRIB_PEER_REFUSED. Bounds: a handshake timeout, a connect timeout,
// and at most MAX_CONNECTIONS inbound connections at once, handshaking or
// not (more are dropped at once, so a flood of the port costs little): two
// per peer are needed, and a LAN cluster has a handful of nodes.

import { hkdfSync } from 'node:crypto'
import type { Duplex } from 'node:stream'
import tls from 'node:tls'
import { TributaryError } from '../errors.ts'

export interface PeerConnection {
  readonly socket: Duplex
  readonly remoteAddress: string
  readonly remotePort: number
}

export interface PeerTransport {
  /** Listens; each authenticated connection goes to `onPeer`. Returns the bound address. */
  listen(
    host: string,
    port: number,
    onPeer: (conn: PeerConnection) => void,
  ): Promise<{ host: string; port: number }>
  /** An authenticated connection to a peer; TRIB_PEER_REFUSED or TRIB_PEER_UNREACHABLE when there is none. */
  connect(host: string, port: number, signal?: AbortSignal): Promise<PeerConnection>
  /** Stops listening and destroys every connection it made or took. Idempotent. */
  close(): Promise<void>
}

export interface TlsPskTransportOptions {
  readonly cluster: string
  /** The cluster secret (cluster/secret.ts): at least 32 bytes. */
  readonly secret: Buffer
  /** An inbound connection failed its handshake (wrong secret or cluster, not TLS at all, too slow). */
  readonly onRefused?: (info: { readonly address: string; readonly reason: string }) => void
  readonly connectTimeoutMs?: number
  readonly handshakeTimeoutMs?: number
}

const CIPHERS = 'TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256'
const DEFAULT_TIMEOUT_MS = 5000
const MAX_CONNECTIONS = 64
const KEEPALIVE_MS = 10_000

/** The 32-byte PSK of a cluster, from its secret. */
export function clusterKey(secret: Buffer, cluster: string): Buffer {
  return Buffer.from(
    hkdfSync('sha256', secret, Buffer.from(cluster, 'utf8'), 'tributary replication psk v1', 32),
  )
}

export class TlsPskTransport implements PeerTransport {
  readonly #o: TlsPskTransportOptions
  readonly #key: Buffer
  readonly #sockets = new Set<tls.TLSSocket>()
  #server: tls.Server | null = null
  #closed = false

  constructor(options: TlsPskTransportOptions) {
    if (options.secret.length < 32)
      throw new TributaryError('TRIB_CLUSTER_SECRET_INVALID', 'the secret has fewer than 256 bits')
    this.#o = options
    this.#key = clusterKey(options.secret, options.cluster)
  }

  #tlsOptions(): tls.CommonConnectionOptions & tls.SecureContextOptions {
    return { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ciphers: CIPHERS }
  }

  #track(socket: tls.TLSSocket): PeerConnection {
    this.#sockets.add(socket)
    socket.once('close', () => this.#sockets.delete(socket))
    socket.setNoDelay(true)
    socket.setKeepAlive(true, KEEPALIVE_MS)
    return { socket, remoteAddress: socket.remoteAddress ?? '?', remotePort: socket.remotePort ?? 0 }
  }

  listen(
    host: string,
    port: number,
    onPeer: (conn: PeerConnection) => void,
  ): Promise<{ host: string; port: number }> {
    const cluster = this.#o.cluster
    const server = tls.createServer({
      ...this.#tlsOptions(),
      handshakeTimeout: this.#o.handshakeTimeoutMs ?? DEFAULT_TIMEOUT_MS,
      pskCallback: (_socket, identity) => (identity === cluster ? this.#key : null),
    })
    server.maxConnections = MAX_CONNECTIONS
    server.on('drop', (dropped) =>
      this.#o.onRefused?.({
        address: dropped?.remoteAddress ?? '?',
        reason: `over ${MAX_CONNECTIONS} connections`,
      }),
    )
    server.on('secureConnection', (socket) => onPeer(this.#track(socket)))
    server.on('tlsClientError', (err, socket) => {
      this.#o.onRefused?.({ address: socket.remoteAddress ?? '?', reason: handshakeReason(err) })
    })
    this.#server = server
    return new Promise((resolve, reject) => {
      server.once('error', (err) =>
        reject(
          new TributaryError('TRIB_LISTEN_FAILED', `replication ${host}:${port}: ${err.message}`, {
            cause: err,
          }),
        ),
      )
      server.listen(port, host, () => {
        const address = server.address()
        resolve({ host, port: typeof address === 'object' && address !== null ? address.port : port })
      })
    })
  }

  connect(host: string, port: number, signal?: AbortSignal): Promise<PeerConnection> {
    if (this.#closed)
      return Promise.reject(new TributaryError('TRIB_PEER_UNREACHABLE', 'the transport is closed'))
    return new Promise((resolve, reject) => {
      const socket = tls.connect({
        ...this.#tlsOptions(),
        host,
        port,
        // No certificates: the PSK proves the peer, and the name in the certificate check has no meaning.
        checkServerIdentity: () => undefined,
        pskCallback: () => ({ psk: this.#key, identity: this.#o.cluster }),
      })
      const timer = setTimeout(
        () =>
          fail(
            new TributaryError(
              'TRIB_PEER_UNREACHABLE',
              `${host}:${port}: no TLS connection within the timeout`,
            ),
          ),
        this.#o.connectTimeoutMs ?? DEFAULT_TIMEOUT_MS,
      )
      const abort = () => fail(new TributaryError('TRIB_PEER_UNREACHABLE', `${host}:${port}: aborted`))
      signal?.addEventListener('abort', abort, { once: true })
      const settle = () => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', abort)
      }
      const fail = (err: TributaryError) => {
        settle()
        socket.destroy()
        reject(err)
      }
      socket.once('secureConnect', () => {
        settle()
        resolve(this.#track(socket))
      })
      socket.once('error', (err: NodeJS.ErrnoException) => {
        const refused = err.code?.startsWith('ERR_SSL') === true
        fail(
          new TributaryError(
            refused ? 'TRIB_PEER_REFUSED' : 'TRIB_PEER_UNREACHABLE',
            refused
              ? `${host}:${port} refused the TLS handshake: another cluster secret or name (${handshakeReason(err)})`
              : `${host}:${port}: ${err.message}`,
          ),
        )
      })
    })
  }

  async close(): Promise<void> {
    this.#closed = true
    for (const socket of this.#sockets) socket.destroy()
    const server = this.#server
    this.#server = null
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

function handshakeReason(err: NodeJS.ErrnoException): string {
  return err.code ?? err.message
}
