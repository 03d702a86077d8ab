// One Kafka broker for the whole `upstream` vitest project: it costs about
// two seconds and 300 MB to start, so the files share it (each uses topics of
// its own) and get its address through inject('kafkaBootstrap'). A test that
// stops, restarts or pauses a broker starts its own with startKafka().

import type { TestProject } from 'vitest/node'
import { startKafka } from '../helpers/kafka.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    /** `127.0.0.1:PORT` of the shared broker. */
    kafkaBootstrap: string
    /** Its log file, for failure messages. */
    kafkaLogFile: string
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const kafka = await startKafka()
  project.provide('kafkaBootstrap', kafka.bootstrap)
  project.provide('kafkaLogFile', kafka.logFile)
  return () => kafka.stop()
}
