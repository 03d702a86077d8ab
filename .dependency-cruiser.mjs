// The layer rules of ../shared/DESIGN.md ("Layout and dependency rules"), checked by
// `npm run lint`. One rule per sentence of that section, named so that a wrong import
// fails with the rule it breaks. Paths are relative to the repository root.

const DOMAIN = ['broker', 'ingest', 'log', 'upstream', 'replication', 'cluster', 'admin', 'service', 'cli']
// The composition root: index.ts (lifecycle), assemble.ts and assemble-cluster.ts (the parts it starts).
const ROOT = '^src/(index|assemble|assemble-cluster)\\.ts$'

// A dependency into any of the named folders under src/ (the composition root has its own rule).
const into = (...folders) => `^src/(${folders.join('|')})/`
const outside = (...folders) => DOMAIN.filter((folder) => !folders.includes(folder))

export default {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'A cycle ties modules into one unit that can be neither tested nor replaced alone.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'broker-writes-through-ingest',
      comment:
        'Write path broker -> ingest -> log: the broker hands publishes to ingest and knows nothing of ' +
        'sinks, replication, cluster, admin, service or cli.',
      severity: 'error',
      from: { path: '^src/broker/' },
      to: { path: into(...outside('broker', 'ingest', 'log')) },
    },
    {
      name: 'broker-uses-log-types-only',
      comment:
        'Ingest is the only writer into log/ for local records: the broker may name log types ' +
        '(import type) but may not call into log/.',
      severity: 'error',
      from: { path: '^src/broker/' },
      to: { path: '^src/log/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'ingest-imports-log-only',
      comment: 'Write path broker -> ingest -> log: ingest imports log/ and the base folders, nothing above.',
      severity: 'error',
      from: { path: '^src/ingest/' },
      to: { path: into(...outside('ingest', 'log')) },
    },
    {
      name: 'log-imports-no-domain',
      comment: 'log/ is the bottom of the write path: it imports only config, errors, observability and lib.',
      severity: 'error',
      from: { path: '^src/log/' },
      to: { path: into(...outside('log')) },
    },
    {
      name: 'upstream-imports-log-only',
      comment: 'upstream -> log: sinks and forwarders read the log; they import no other domain folder.',
      severity: 'error',
      from: { path: '^src/upstream/' },
      to: { path: into(...outside('upstream', 'log')) },
    },
    {
      name: 'replication-imports-log-only',
      comment: 'replication -> log: fetch sessions and replica appends import no other domain folder.',
      severity: 'error',
      from: { path: '^src/replication/' },
      to: { path: into(...outside('replication', 'log')) },
    },
    {
      name: 'cluster-imports-no-domain',
      comment:
        'cluster imports neither log nor replication (nor any other domain folder): it only emits ' +
        'peer:up / peer:down, and the composition root wires those to whoever listens.',
      severity: 'error',
      from: { path: '^src/cluster/' },
      to: { path: into(...outside('cluster')) },
    },
    {
      name: 'base-imports-no-domain',
      comment: 'config, errors, observability and lib import nothing from the domain folders.',
      severity: 'error',
      from: { path: ['^src/(config|observability|lib)/', '^src/errors\\.ts$'] },
      to: { path: into(...DOMAIN) },
    },
    {
      name: 'admin-reads-through-types',
      comment:
        'admin uses read-only status interfaces: from the domain folders it imports types only ' +
        '(import type), the values it reads are handed to it by the composition root. ' +
        'log/record-json.ts, a pure formatter of stored records, is the one exception.',
      severity: 'error',
      from: { path: '^src/admin/' },
      to: {
        path: into(...outside('admin', 'cli')),
        pathNot: '^src/log/record-json\\.ts$',
        dependencyTypesNot: ['type-only'],
      },
    },
    {
      name: 'admin-not-imported-by-domain',
      comment: 'admin is an outer layer: only the composition root and cli may import it.',
      severity: 'error',
      from: { pathNot: ['^src/(admin|cli)/', ROOT] },
      to: { path: '^src/admin/' },
    },
    {
      name: 'cli-is-outermost',
      comment: 'cli is the outermost layer: nothing outside src/cli/ imports it.',
      severity: 'error',
      from: { pathNot: '^src/cli/' },
      to: { path: '^src/cli/' },
    },
    {
      name: 'composition-root-imported-by-cli-only',
      comment: 'src/index.ts wires the node; only cli (which starts it) may import it.',
      severity: 'error',
      from: { pathNot: ['^src/cli/', ROOT] },
      to: { path: ROOT },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
  },
}
