// Builds a sink from its config entry.

import type { SinkConfig } from '../config/schema.ts'
import { HttpSink } from './http-sink.ts'
import { KafkaSink, type KafkaSinkContext } from './kafka-sink.ts'
import { MqttSink } from './mqtt-sink.ts'
import type { Sink } from './sink.ts'

export type SinkContext = KafkaSinkContext

export function createSink(config: SinkConfig, context: SinkContext): Sink {
  switch (config.type) {
    case 'http':
      return new HttpSink(config)
    case 'mqtt':
      return new MqttSink(config, context.origin)
    case 'kafka':
      return new KafkaSink(config, context)
  }
}
