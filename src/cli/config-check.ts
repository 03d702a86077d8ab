// `tributary config check FILE`: every problem of a config file, with its
// path and what was expected; exit code 1 when there is any.

import type { Command } from 'commander'
import { checkConfigFile } from '../config/load.ts'
import { printJson } from './shared.ts'

export function registerConfigCheck(program: Command): void {
  const config = program.command('config').description('configuration tools')
  config
    .command('check')
    .description('validate a config file and list every problem')
    .argument('<file>', 'YAML config file')
    .option('--json', 'one JSON object per problem per line')
    .action((file: string, options: { json?: boolean }) => {
      const problems = checkConfigFile(file)
      if (options.json === true) {
        for (const problem of problems) printJson({ code: 'TRIB_CONFIG_INVALID', ...problem })
        if (problems.length === 0) printJson({ ok: true, file })
      } else if (problems.length === 0) {
        process.stdout.write(`${file}: ok\n`)
      } else {
        process.stdout.write(`${file}: ${problems.length} problem(s) [TRIB_CONFIG_INVALID]\n`)
        for (const p of problems) process.stdout.write(`  ${p.path}: ${p.message}\n`)
      }
      if (problems.length > 0) process.exitCode = 1
    })
}
