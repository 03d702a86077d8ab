// HTTP sink: each batch is one POST of NDJSON (one record per line) or a JSON
// array, in the record shape of `tributary tail --json` plus `origin`. The
// Idempotency-Key header names the batch's position range
// (origin/stream/partition/first-last) so a receiver can drop a repeat.
//
// Answers: 2xx delivered. 408, 429 and 5xx: retried. 401 and 403: retried too
// (a wrong token is fixed by the operator; sending every record to the
// dead-letter stream instead would be worse). Any other 4xx: the records are
// rejected (each goes to the dead-letter stream once isolated). No answer,
// refused connection, timeout: retried.

import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import type { SinkConfig } from '../config/schema.ts'
import { recordJson } from '../log/record-json.ts'
import { batchRange, rejected, type Sink, type SinkBatch, unavailable } from './sink.ts'
import { tlsOptions } from './tls-files.ts'

type HttpSinkConfig = Extract<SinkConfig, { type: 'http' }>

/** The longest part of an error answer kept in the error (and the dead letter's reason). */
const ANSWER_CHARS = 500
const RETRIED_4XX = new Set([401, 403, 408, 429])

export class HttpSink implements Sink {
  readonly name: string
  readonly #config: HttpSinkConfig
  readonly #url: URL
  #agent: HttpAgent | null = null

  constructor(config: HttpSinkConfig) {
    this.name = config.name
    this.#config = config
    this.#url = new URL(config.url)
  }

  #body(batch: SinkBatch): string {
    const rows = batch.records.map((r) => recordJson(batch, r))
    if (this.#config.format === 'json') return JSON.stringify(rows)
    return rows.map((row) => `${JSON.stringify(row)}\n`).join('')
  }

  #connection(): HttpAgent {
    if (this.#agent !== null) return this.#agent
    const common = { keepAlive: true, maxSockets: this.#config.maxInFlight }
    this.#agent =
      this.#url.protocol === 'https:'
        ? new HttpsAgent({ ...common, ...tlsOptions(this.#config.tls) })
        : new HttpAgent(common)
    return this.#agent
  }

  async send(batch: SinkBatch, signal: AbortSignal): Promise<void> {
    const body = Buffer.from(this.#body(batch))
    const headers = {
      ...this.#config.headers,
      'content-type': this.#config.format === 'json' ? 'application/json' : 'application/x-ndjson',
      'content-length': String(body.length),
      'idempotency-key': batchRange(batch),
    }
    const { status, answer } = await this.#post(body, headers, signal)
    if (status >= 200 && status < 300) return
    const detail = `POST ${this.#url.href}: HTTP ${status} ${answer}`.trim()
    if (status >= 400 && status < 500 && !RETRIED_4XX.has(status)) throw rejected(detail)
    throw unavailable(detail)
  }

  #post(
    body: Buffer,
    headers: Record<string, string>,
    signal: AbortSignal,
  ): Promise<{ status: number; answer: string }> {
    const request = this.#url.protocol === 'https:' ? httpsRequest : httpRequest
    return new Promise((resolve, reject) => {
      const req = request(
        this.#url,
        { method: 'POST', headers, agent: this.#connection(), signal, timeout: this.#config.timeoutMs },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = []
          let kept = 0
          res.on('data', (chunk: Buffer) => {
            if (kept < ANSWER_CHARS) chunks.push(chunk)
            kept += chunk.length
          })
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              answer: Buffer.concat(chunks).toString('utf8').slice(0, ANSWER_CHARS),
            }),
          )
          res.on('error', (err) => reject(unavailable(`POST ${this.#url.href}: ${err.message}`, err)))
        },
      )
      req.on('timeout', () => req.destroy(new Error(`no answer in ${this.#config.timeoutMs} ms`)))
      req.on('error', (err) => reject(unavailable(`POST ${this.#url.href}: ${err.message}`, err)))
      req.end(body)
    })
  }

  async reset(): Promise<void> {
    this.#agent?.destroy()
    this.#agent = null
  }

  close(): Promise<void> {
    return this.reset()
  }
}
