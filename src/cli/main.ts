#!/usr/bin/env node
// The `tributary` command: a thin layer of subcommands over the library.
// Errors print their stable code and message; exit 2 for configuration and
// usage errors, 1 for everything else.

import { readFileSync } from 'node:fs'
import { Command, CommanderError } from 'commander'
import { TributaryError } from '../errors.ts'
import { registerCluster } from './cluster.ts'
import { registerConfigCheck } from './config-check.ts'
import { registerLogVerify } from './log-verify.ts'
import { registerProduce } from './produce.ts'
import { registerSinks } from './sinks.ts'
import { registerStart } from './start.ts'
import { registerStatus } from './status.ts'
import { registerStreams } from './streams.ts'
import { registerTail } from './tail.ts'

const program = new Command('tributary')
  .description('Edge streaming appliance: MQTT in, durable partitioned logs, store and forward')
  .version(
    (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string })
      .version,
  )
  .showHelpAfterError()
  .exitOverride()
registerStart(program)
registerStatus(program)
registerStreams(program)
registerTail(program)
registerProduce(program)
registerSinks(program)
registerConfigCheck(program)
registerLogVerify(program)
registerCluster(program)

try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : 2
  } else if (err instanceof TributaryError) {
    process.stderr.write(`tributary: ${err.code}: ${err.message}\n`)
    process.exitCode = err.code.startsWith('TRIB_CONFIG') ? 2 : 1
  } else {
    process.stderr.write(`tributary: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = 1
  }
}
