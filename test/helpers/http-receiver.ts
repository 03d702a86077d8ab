// A small HTTP receiver on 127.0.0.1 for the HTTP sink tests: records every
// POST (headers and parsed NDJSON/JSON rows) and answers as the test says:
// a status per request, or never (to look connected but stuck). It can be
// stopped and started again on the same port (an uplink outage).

import { readFileSync } from 'node:fs'
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import type { RecordJson } from '../../src/log/record-json.ts'
import type { TestCerts } from './test-certs.ts'

export interface ReceivedPost {
  readonly headers: IncomingHttpHeaders
  readonly rows: RecordJson[]
}

/** What to answer to a POST: a status code, or 'hang' to never answer. */
export type Answer = number | 'hang'

export class HttpReceiver {
  readonly #tls: TestCerts | null
  readonly posts: ReceivedPost[] = []
  /** Rows of the POSTs answered 2xx, in arrival order. */
  readonly delivered: RecordJson[] = []
  answer: (post: ReceivedPost) => Answer = () => 200
  #server: Server | null = null
  #port = 0
  readonly #sockets = new Set<Socket>()
  readonly #hanging: ServerResponse[] = []

  /** With certificates, the receiver speaks HTTPS (server certificate for 127.0.0.1). */
  constructor(tls: TestCerts | null = null) {
    this.#tls = tls
  }

  get url(): string {
    return `${this.#tls === null ? 'http' : 'https'}://127.0.0.1:${this.#port}/ingest`
  }

  async start(): Promise<void> {
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        const rows: RecordJson[] = text.startsWith('[')
          ? (JSON.parse(text) as RecordJson[])
          : text
              .split('\n')
              .filter((l) => l !== '')
              .map((l) => JSON.parse(l) as RecordJson)
        const post = { headers: req.headers, rows }
        this.posts.push(post)
        const answer = this.answer(post)
        if (answer === 'hang') {
          this.#hanging.push(res)
          return
        }
        if (answer >= 200 && answer < 300) this.delivered.push(...rows)
        res
          .writeHead(answer, { 'content-type': 'text/plain' })
          .end(answer < 300 ? 'ok' : `refused with ${answer}`)
      })
    }
    const server =
      this.#tls === null
        ? createServer(handler)
        : createTlsServer(
            { cert: readFileSync(this.#tls.serverCert), key: readFileSync(this.#tls.serverKey) },
            handler,
          )
    server.on('connection', (socket) => {
      this.#sockets.add(socket)
      socket.on('close', () => this.#sockets.delete(socket))
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.#port, '127.0.0.1', () => resolve())
    })
    this.#port = (server.address() as AddressInfo).port
    this.#server = server
  }

  /** Closes the listener and every connection (the port stays reserved for start()). */
  async stop(): Promise<void> {
    const server = this.#server
    this.#server = null
    if (server === null) return
    for (const socket of this.#sockets) socket.destroy()
    this.#hanging.length = 0
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
