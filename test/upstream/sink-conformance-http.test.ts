// The Sink conformance suite (sink-conformance.ts) against the HTTP sink and
// a local receiver (test/helpers/http-receiver.ts) that reads back the NDJSON
// rows: it answers 422 to a POST holding a record over the size limit, and
// leaves POSTs unanswered while paused.

import { HttpReceiver } from '../helpers/http-receiver.ts'
import { type Arrival, sinkConformance } from './sink-conformance.ts'

sinkConformance({
  kind: 'http',
  keys: true,
  poisonReason: /HTTP 422 refused with 422/,
  silentPeer: { timeoutMs: 60_000, maxInFlight: 1 },
  destination: () => null,
  async peer(cleanup, { maxRecordBytes }) {
    const rx = new HttpReceiver()
    await rx.start()
    cleanup.defer('stop receiver', () => rx.stop())
    let paused = false
    let unanswered = 0
    rx.answer = (post) => {
      if (paused) {
        unanswered++
        return 'hang'
      }
      const tooLarge = (r: { payload: string }) =>
        maxRecordBytes !== undefined && Buffer.byteLength(r.payload) > maxRecordBytes
      return post.rows.some(tooLarge) ? 422 : 200
    }
    return {
      sink: { type: 'http', url: rx.url },
      arrivals: async () =>
        rx.delivered.map(
          (row): Arrival => ({
            destination: null,
            upstreamPartition: null,
            origin: row.origin,
            stream: row.stream,
            partition: row.partition,
            offset: row.offset,
            topic: row.topic,
            key: row.key,
            payload: row.payload,
            headers: row.headers,
          }),
        ),
      stop: () => rx.stop(),
      start: () => rx.start(),
      pause: () => {
        paused = true
      },
      resume: () => {
        paused = false
      },
      unanswered: () => unanswered,
    }
  },
})
