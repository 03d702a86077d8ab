// Builds a sink from its config entry. Each kind's client library is loaded
// only when a sink of that kind is configured: @platformatic/kafka alone adds
// about 25 MB of memory to a node that never talks to Kafka, mqtt.js about 7.

import type { SinkConfig } from '../config/schema.ts'
import type { KafkaSinkContext } from './kafka-sink.ts'
import type { Sink } from './sink.ts'

export type SinkContext = KafkaSinkContext

export async function createSink(config: SinkConfig, context: SinkContext): Promise<Sink> {
  switch (config.type) {
    case 'http': {
      const { HttpSink } = await import('./http-sink.ts')
      return new HttpSink(config)
    }
    case 'mqtt': {
      const { MqttSink } = await import('./mqtt-sink.ts')
      return new MqttSink(config, context.origin)
    }
    case 'kafka': {
      const { KafkaSink } = await import('./kafka-sink.ts')
      return new KafkaSink(config, context)
    }
  }
}
