// `tributary cluster init`: writes a fresh cluster secret file (256 random
// bits, mode 0600) and says what to do with it. The secret itself is never
// printed: it goes from the random source to the file only.

import { resolve } from 'node:path'
import type { Command } from 'commander'
import { CLUSTER_SECRET_FORMAT, writeClusterSecret } from '../cluster/secret.ts'

/** Where the secret goes without --secret-file: beside the config for root, else the current directory. */
export function defaultSecretFile(): string {
  return process.getuid?.() === 0 ? '/etc/tributary/cluster.secret' : resolve('cluster.secret')
}

export function registerCluster(program: Command): void {
  const cluster = program.command('cluster').description('cluster tools')
  cluster
    .command('init')
    .description(`write a fresh cluster secret file (${CLUSTER_SECRET_FORMAT}, mode 0600)`)
    .option(
      '--secret-file <file>',
      'where to write it (default /etc/tributary/cluster.secret as root, else ./cluster.secret)',
    )
    .option('--force', 'replace an existing file (every node then needs the new one)')
    .action((options: { secretFile?: string; force?: boolean }) => {
      const file = resolve(options.secretFile ?? defaultSecretFile())
      writeClusterSecret(file, { force: options.force === true })
      process.stdout.write(
        [
          `Wrote a new cluster secret to ${file} (256 bits, mode 0600).`,
          'Next:',
          '  1. Copy this file to every node of the cluster, readable only by the user tributary runs as',
          `     (mode 0600; e.g. scp -p ${file} NODE:${file}).`,
          '  2. Start every node with the same cluster name and this file:',
          `     tributary start --cluster NAME --cluster-secret-file ${file}`,
          '     (config: cluster.name, cluster.secretFile).',
          '',
        ].join('\n'),
      )
    })
}
