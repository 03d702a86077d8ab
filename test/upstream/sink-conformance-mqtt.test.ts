// The Sink conformance suite (sink-conformance.ts) against the MQTT sink and
// a real Mosquitto as the central broker (test/helpers/mosquitto.ts), read
// back by a subscriber with a persistent session. A record over the broker's
// max_packet_size (announced in the CONNACK) is the one the sink treats as
// never deliverable; SIGSTOP makes the broker silent.

import { FORWARD_HEADER } from '../../src/upstream/sink.ts'
import type { Message } from '../helpers/integration.ts'
import { centralReader, Mosquitto } from '../helpers/mosquitto.ts'
import { type Arrival, sinkConformance } from './sink-conformance.ts'

const FORWARDED = new Set<string>(Object.values(FORWARD_HEADER))

function arrival(message: Message): Arrival {
  const props = (message.packet.properties?.userProperties ?? {}) as Record<string, string | string[]>
  const pairs = Object.entries(props).flatMap(([name, value]) =>
    (Array.isArray(value) ? value : [value]).map((v): [string, string] => [name, v]),
  )
  const forward = new Map(pairs.filter(([name]) => FORWARDED.has(name)))
  return {
    destination: message.topic,
    upstreamPartition: null,
    origin: forward.get(FORWARD_HEADER.origin),
    stream: forward.get(FORWARD_HEADER.stream),
    partition: Number(forward.get(FORWARD_HEADER.partition)),
    offset: Number(forward.get(FORWARD_HEADER.offset)),
    topic: forward.get(FORWARD_HEADER.topic),
    key: undefined,
    payload: message.payload.toString(),
    headers: pairs.filter(([name]) => !FORWARDED.has(name)),
  }
}

sinkConformance({
  kind: 'mqtt',
  keys: false,
  poisonReason: /maximum packet size/,
  silentPeer: {},
  destination: ({ origin, topic }) => `hq/${origin}/${topic}`,
  async peer(cleanup, { maxRecordBytes }) {
    const broker = await Mosquitto.create(
      undefined,
      maxRecordBytes === undefined ? {} : { maxPacketBytes: maxRecordBytes },
    )
    await broker.start()
    cleanup.defer('remove mosquitto', () => broker.remove())
    const inbox = await centralReader(cleanup, broker, 'hq/#')
    return {
      sink: { type: 'mqtt', url: broker.url, topic: 'hq/{origin}/{topic}' },
      arrivals: async () => inbox.messages.map(arrival),
      stop: () => broker.stop(),
      start: () => broker.start(),
      pause: () => broker.pause(),
      resume: () => broker.resume(),
    }
  },
})
