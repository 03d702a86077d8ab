// The admin and consumer HTTP API (fastify): health and readiness, metrics in
// the Prometheus format, status, streams, records, consumer groups and live
// tails. Bound to loopback by default; with a token configured (required off
// loopback: src/config/load.ts) every route but /healthz needs
// `Authorization: Bearer <token>` (the status page at / also takes ?token=).
// JSON everywhere but the status page, errors with TRIB_* codes.
// Reads only: records enter the log through MQTT, never through this server.

import { createHash, timingSafeEqual } from 'node:crypto'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  LogController,
} from 'fastify'
import type { Config } from '../config/schema.ts'
import { TributaryError } from '../errors.ts'
import type { Logger } from '../observability/logger.ts'
import type { Metrics } from '../observability/metrics.ts'
import type { ConsumerGroups } from './consumer-groups.ts'
import { asTributaryError, sendError } from './http-errors.ts'
import type { NodeView } from './node-view.ts'
import { registerReadRoutes } from './routes-read.ts'
import { isReady, nodeStatus, sinkFigures } from './status.ts'
import { STATUS_PAGE_HTML } from './status-page.ts'
import { Tails } from './tail.ts'

export const ROUTES = [
  'GET /',
  'GET /status',
  'GET /healthz',
  'GET /readyz',
  'GET /metrics',
  'GET /v1',
  'GET /v1/status',
  'GET /v1/sinks',
  'GET /v1/peers',
  'GET /v1/streams',
  'GET /v1/streams/:stream',
  'GET /v1/streams/:stream/partitions/:partition/records',
  'GET /v1/streams/:stream/tail',
  'GET /v1/groups',
  'GET /v1/groups/:group/offsets',
  'POST /v1/groups/:group/offsets',
  'DELETE /v1/groups/:group/offsets',
] as const

export interface AdminServerOptions {
  readonly http: Readonly<Config['http']>
  readonly storageEnduranceTBW: number | null
  /** From readToken(http) (config/http-token.ts), read once at start; null: no token asked for (loopback only). */
  readonly token: string | null
  readonly view: NodeView
  readonly groups: ConsumerGroups
  readonly metrics: Metrics
  readonly log: Logger
}

const STATUS_PAGE_PATHS = new Set(['/', '/status'])

function pageToken(query: unknown): string {
  const token = (query as Record<string, unknown> | undefined)?.token
  return typeof token === 'string' ? token : ''
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

export class AdminServer {
  readonly app: FastifyInstance
  readonly #o: AdminServerOptions
  readonly #tails: Tails
  #closing: Promise<void> | null = null

  constructor(options: AdminServerOptions) {
    this.#o = options
    this.#tails = new Tails(options.http.maxTailClients)
    const token = options.token
    const app = Fastify({
      // Our pino logger, typed as fastify's narrower base logger so the instance keeps its default type.
      loggerInstance: options.log.child({ component: 'admin' }) as FastifyBaseLogger,
      // No line per request: Prometheus scrapes every few seconds. Failures are logged by the error handler.
      logController: new LogController({ disableRequestLogging: true }),
      // Clients that only read: small bodies, bounded headers.
      bodyLimit: 1024 * 1024,
      return503OnClosing: true,
    })
    this.app = app
    if (token !== null) {
      const expected = digest(token)
      app.addHook('onRequest', async (request, reply) => {
        const path = request.url.split('?')[0]
        if (path === '/healthz') return
        const header = request.headers.authorization ?? ''
        let given = header.startsWith('Bearer ') ? header.slice('Bearer '.length).trim() : ''
        // A browser cannot set a header when it opens a page: the status page alone also takes ?token=.
        if (given === '' && STATUS_PAGE_PATHS.has(path ?? '')) given = pageToken(request.query)
        // Equal-length digests: the comparison takes the same time whatever was sent.
        if (given === '' || !timingSafeEqual(digest(given), expected))
          return sendError(reply, new TributaryError('TRIB_HTTP_UNAUTHORIZED'))
      })
    }
    app.addHook('onResponse', async (request, reply) => {
      options.metrics.httpRequest(request.routeOptions.url ?? 'unmatched', reply.statusCode)
    })
    app.setErrorHandler((err, request, reply) => {
      const { error, unexpected } = asTributaryError(err)
      if (unexpected) request.log.error({ err, url: request.url }, 'admin API request failed')
      return sendError(reply, error)
    })
    app.setNotFoundHandler((request, reply) =>
      sendError(reply, new TributaryError('TRIB_HTTP_NOT_FOUND', `${request.method} ${request.url}`)),
    )
    this.#routes()
    registerReadRoutes(app, { view: options.view, groups: options.groups, tails: this.#tails })
  }

  #routes(): void {
    const { app } = this
    const { view, metrics } = this.#o
    const page = async (_request: unknown, reply: FastifyReply) =>
      reply
        .header('content-type', 'text/html; charset=utf-8')
        .header('cache-control', 'no-store')
        // Inline script and style only, requests only to this server; the token must not leave in a Referer.
        .header(
          'content-security-policy',
          "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        )
        .header('referrer-policy', 'no-referrer')
        .send(STATUS_PAGE_HTML)
    app.get('/', page)
    app.get('/status', page)
    app.get('/healthz', async () => ({ status: 'alive', nodeId: view.nodeId }))
    app.get('/readyz', async (_request, reply) => {
      const checks = view.health()
      if (isReady(checks)) return { ready: true, checks }
      const failing = Object.entries(checks)
        .filter(([, ok]) => !ok)
        .map(([name]) => name)
      const err = new TributaryError('TRIB_NOT_READY', `failing: ${failing.join(', ')}`)
      return reply.code(503).send({
        ready: false,
        checks,
        error: { code: err.code, message: err.message, retriable: err.retriable },
      })
    })
    app.get('/metrics', async (_request, reply) => {
      reply.header('content-type', metrics.contentType)
      return metrics.text()
    })
    app.get('/v1', async () => ({ nodeId: view.nodeId, routes: ROUTES }))
    app.get('/v1/status', async () =>
      nodeStatus(view, {
        writtenBytes: metrics.writtenBytes(),
        enduranceDays: metrics.enduranceDays(this.#o.storageEnduranceTBW),
      }),
    )
    app.get('/v1/sinks', async () => ({ sinks: view.sinks().map(sinkFigures) }))
    app.get('/v1/peers', async () => ({ cluster: view.cluster(), peers: view.peers() }))
  }

  /** Listens on http.host:http.port; TRIB_LISTEN_FAILED when the address cannot be bound. */
  async listen(): Promise<{ host: string; port: number }> {
    const { host, port } = this.#o.http
    try {
      await this.app.listen({ host, port: port ?? 0 })
    } catch (err) {
      throw new TributaryError('TRIB_LISTEN_FAILED', `admin API ${host}:${port}`, { cause: err })
    }
    const address = this.app.server.address()
    if (address === null || typeof address === 'string') return { host, port: port ?? 0 }
    return { host: address.address, port: address.port }
  }

  /** Ends live tails, then stops the server. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#tails.close()
      await this.app.close()
    })()
    return this.#closing
  }
}
