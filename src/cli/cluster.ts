// `tributary cluster init`: writes a fresh cluster secret (256 random bits,
// mode 0600) and says what to do with it. The secret itself is never printed.

import type { Command } from 'commander'
import { writeClusterSecret } from '../cluster/secret.ts'

export const DEFAULT_SECRET_FILE = '/etc/tributary/cluster.secret'

export function registerCluster(program: Command): void {
  const cluster = program.command('cluster').description('set up replication between nodes')
  cluster
    .command('init')
    .description('write a fresh cluster secret (copy the same file to every node)')
    .option('--secret-file <file>', `where (default ${DEFAULT_SECRET_FILE})`, DEFAULT_SECRET_FILE)
    .option('--force', 'replace an existing file (every node then needs the new one)')
    .action((options: { secretFile: string; force?: boolean }) => {
      writeClusterSecret(options.secretFile, options.force === true)
      process.stdout.write(
        `wrote a new cluster secret to ${options.secretFile} (mode 0600)\n` +
          'copy this file to every node of the cluster (keep it mode 0600, owned by the user tributary runs as), then start each node with\n' +
          `  tributary start --cluster NAME --cluster-secret-file ${options.secretFile}\n` +
          'or set cluster.name and cluster.secretFile in its config file\n',
      )
    })
}
