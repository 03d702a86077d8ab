// The upstream part of a node: one sink per `sinks:` entry, one forwarder per
// (sink, partition of a stream the sink forwards), the cursors they share, and
// the status `tributary sinks` and the admin API report.
//
// A sink forwards the streams it lists, or with "*" every stream but the
// dead-letter streams (a dead letter was already refused once).

import { deadLetterStreamOf } from '../config/load.ts'
import type { Config, SinkConfig, StreamConfig } from '../config/schema.ts'
import { type LogStore, type PartitionRef, partitionRef, samePartition } from '../log/log-store.ts'
import type { NodeEnvironment } from '../log/node-environment.ts'
import type { Logger } from '../observability/logger.ts'
import { CursorStore } from './cursors.ts'
import { Forwarder, type ForwarderStatus } from './forwarder.ts'
import { SinkGate } from './gate.ts'
import type { Sink } from './sink.ts'
import { createSink } from './sinks.ts'

/** Cursor writes are coalesced to one LMDB commit per this long (see cursors.ts). */
export const CURSOR_FLUSH_MS = 1000

export interface UpstreamOptions {
  readonly config: Readonly<Config>
  readonly store: LogStore
  readonly env: NodeEnvironment
  readonly log: Logger
}

/** The streams a sink forwards, in the config's order. */
export function forwardedStreams(config: Readonly<Config>, sink: SinkConfig): StreamConfig[] {
  const deadLetters = new Set(
    config.streams.filter((s) => deadLetterStreamOf(s) !== s.name).map(deadLetterStreamOf),
  )
  if (sink.streams.includes('*')) return config.streams.filter((s) => !deadLetters.has(s.name))
  return config.streams.filter((s) => sink.streams.includes(s.name))
}

export class Upstream {
  readonly #o: UpstreamOptions
  readonly #cursors: CursorStore
  readonly #sinks: Sink[] = []
  readonly #forwarders: Forwarder[] = []

  constructor(options: UpstreamOptions) {
    this.#o = options
    this.#cursors = new CursorStore(options.env, CURSOR_FLUSH_MS)
  }

  async start(): Promise<void> {
    const { config, log, store } = this.#o
    // Forwarders of this node's partitions; the sinks' producer and client ids are this node's.
    const origin = store.origin
    for (const sinkConfig of config.sinks) {
      const sink = await createSink(sinkConfig, {
        origin,
        log: log.child({ sink: sinkConfig.name }),
        partitionsOf: (name) => config.streams.find((s) => s.name === name)?.partitions ?? 1,
      })
      this.#sinks.push(sink)
      const gate = new SinkGate(sinkConfig.maxInFlight, sinkConfig.maxBytesPerS)
      let restarting: Promise<void> | null = null
      const restartSink = (): Promise<void> => {
        if (restarting === null) {
          restarting = sink.reset().finally(() => {
            restarting = null
          })
        }
        return restarting
      }
      const streams = forwardedStreams(config, sinkConfig)
      for (const stream of streams) {
        for (let partition = 0; partition < stream.partitions; partition++) {
          const forwarder = new Forwarder({
            sink,
            config: sinkConfig,
            ref: partitionRef(origin, { stream: stream.name, partition }),
            priority: stream.priority,
            deadLetterStream: deadLetterStreamOf(stream),
            store,
            cursors: this.#cursors,
            gate,
            log,
            restartSink,
          })
          this.#forwarders.push(forwarder)
          forwarder.start()
        }
      }
      log.info(
        { sink: sinkConfig.name, type: sinkConfig.type, streams: streams.map((s) => s.name) },
        'sink forwarding',
      )
    }
  }

  status(): ForwarderStatus[] {
    return this.#forwarders.map((f) => f.status())
  }

  /** The lowest offset of the partition some sink has not forwarded yet; null when no sink forwards it. */
  neededFrom(ref: PartitionRef): number | null {
    let lowest: number | null = null
    for (const f of this.#forwarders) {
      if (!samePartition(f.ref, ref)) continue
      const cursor = f.cursor
      lowest = lowest === null ? cursor : Math.min(lowest, cursor)
    }
    return lowest
  }

  /** Stops sending (in-flight sends are abandoned and will be sent again), saves cursors, closes sinks. */
  async close(): Promise<void> {
    await Promise.all(this.#forwarders.map((f) => f.stop()))
    await this.#cursors.close()
    await Promise.all(this.#sinks.map((s) => s.close()))
  }
}
