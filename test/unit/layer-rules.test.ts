// The layer rules of .dependency-cruiser.mjs (DESIGN.md's "Layout and
// dependency rules"), run the way `npm run lint` runs them: on a small tree of
// fixture modules, each breaking one rule, beside imports the rules allow; and
// on the real src/, which must pass.

import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tempDir } from '../helpers/temp-dir.ts'

const REPO_ROOT = join(import.meta.dirname, '../..')
const CONFIG = join(REPO_ROOT, '.dependency-cruiser.mjs')
const DEPCRUISE = join(REPO_ROOT, 'node_modules/.bin/depcruise')

interface Run {
  readonly code: number
  readonly stdout: string
}

/** depcruise over `src` in `cwd`, with the repository's rules and the Node that runs this test. */
function depcruise(cwd: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [DEPCRUISE, 'src', '--config', CONFIG],
      { cwd, timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err !== null && typeof err.code !== 'number') reject(new Error(`${err.message}\n${stderr}`))
        else resolve({ code: err === null ? 0 : Number(err.code), stdout })
      },
    )
  })
}

/** "rule: from -> to" for each error line of depcruise's report. */
function violations(stdout: string): string[] {
  return [...stdout.matchAll(/error (\S+): (\S+) →\s+(\S+)/g)].map(
    ([, rule, from, to]) => `${rule}: ${from} -> ${to}`,
  )
}

const LEAF = 'export type Shape = { readonly n: number }\nexport const value = 1\n'
const importsValue = (path: string) => `import { value } from '${path}'\nexport const copy = value\n`
const importsType = (path: string) =>
  `import type { Shape } from '${path}'\nexport const shape: Shape = { n: 1 }\n`

/** Fixture modules under src/: path -> source. */
const FIXTURE: Record<string, string> = {
  'src/admin/leaf.ts': LEAF,
  'src/broker/leaf.ts': LEAF,
  'src/cli/leaf.ts': LEAF,
  'src/ingest/leaf.ts': LEAF,
  'src/log/leaf.ts': LEAF,
  'src/log/record-json.ts': LEAF,
  'src/upstream/leaf.ts': LEAF,

  'src/log/imports-broker.ts': importsValue('../broker/leaf.ts'),
  'src/observability/imports-admin.ts': importsType('../admin/leaf.ts'),
  'src/config/imports-log.ts': importsType('../log/leaf.ts'),
  'src/broker/imports-log.ts': importsValue('../log/leaf.ts'),
  'src/broker/imports-upstream.ts': importsType('../upstream/leaf.ts'),
  'src/ingest/imports-upstream.ts': importsValue('../upstream/leaf.ts'),
  'src/upstream/imports-ingest.ts': importsValue('../ingest/leaf.ts'),
  'src/replication/imports-broker.ts': importsValue('../broker/leaf.ts'),
  'src/cluster/imports-log.ts': importsType('../log/leaf.ts'),
  'src/admin/imports-upstream.ts': importsValue('../upstream/leaf.ts'),
  'src/service/imports-admin.ts': importsValue('../admin/leaf.ts'),
  'src/service/imports-cli.ts': importsValue('../cli/leaf.ts'),
  'src/service/imports-root.ts': importsValue('../index.ts'),
  'src/lib/cycle-a.ts': "import { b } from './cycle-b.ts'\nexport const a = () => b\n",
  'src/lib/cycle-b.ts': "import { a } from './cycle-a.ts'\nexport const b = () => a\n",

  // Allowed: none of these may be reported.
  'src/broker/allowed.ts': `${importsType('../log/leaf.ts')}export { value } from '../ingest/leaf.ts'\n`,
  'src/admin/allowed.ts': `${importsType('../log/leaf.ts')}export { value } from '../log/record-json.ts'\n`,
  'src/cli/allowed.ts':
    "export { value } from '../index.ts'\nexport { value as admin } from '../admin/leaf.ts'\n" +
    "export { value as log } from '../log/leaf.ts'\n",
  'src/upstream/allowed.ts': importsValue('../log/leaf.ts'),
  'src/index.ts':
    "export { value } from './broker/leaf.ts'\nexport { value as admin } from './admin/leaf.ts'\n" +
    "export { value as upstream } from './upstream/leaf.ts'\n",
}

describe('layer rules (npm run lint: depcruise src)', () => {
  let fixture: Awaited<ReturnType<typeof tempDir>>

  beforeAll(async () => {
    fixture = await tempDir('tributary-layers-')
    for (const [path, source] of Object.entries(FIXTURE)) {
      await mkdir(dirname(join(fixture.path, path)), { recursive: true })
      await writeFile(join(fixture.path, path), source)
    }
  })
  afterAll(() => fixture.remove())

  it('fails on each forbidden import, naming the rule, and on nothing the rules allow', async () => {
    const run = await depcruise(fixture.path)
    expect(violations(run.stdout).sort()).toEqual(
      [
        'log-imports-no-domain: src/log/imports-broker.ts -> src/broker/leaf.ts',
        'base-imports-no-domain: src/observability/imports-admin.ts -> src/admin/leaf.ts',
        'admin-not-imported-by-domain: src/observability/imports-admin.ts -> src/admin/leaf.ts',
        'base-imports-no-domain: src/config/imports-log.ts -> src/log/leaf.ts',
        'broker-uses-log-types-only: src/broker/imports-log.ts -> src/log/leaf.ts',
        'broker-writes-through-ingest: src/broker/imports-upstream.ts -> src/upstream/leaf.ts',
        'ingest-imports-log-only: src/ingest/imports-upstream.ts -> src/upstream/leaf.ts',
        'upstream-imports-log-only: src/upstream/imports-ingest.ts -> src/ingest/leaf.ts',
        'replication-imports-log-only: src/replication/imports-broker.ts -> src/broker/leaf.ts',
        'cluster-imports-no-domain: src/cluster/imports-log.ts -> src/log/leaf.ts',
        'admin-reads-through-types: src/admin/imports-upstream.ts -> src/upstream/leaf.ts',
        'admin-not-imported-by-domain: src/service/imports-admin.ts -> src/admin/leaf.ts',
        'cli-is-outermost: src/service/imports-cli.ts -> src/cli/leaf.ts',
        'composition-root-imported-by-cli-only: src/service/imports-root.ts -> src/index.ts',
        'no-circular: src/lib/cycle-a.ts -> src/lib/cycle-b.ts',
      ].sort(),
    )
    expect(run.code).toBe(15)
  })

  it('pass on the real src/ (the rules hold today)', async () => {
    const run = await depcruise(REPO_ROOT)
    expect(violations(run.stdout)).toEqual([])
    expect(run.code).toBe(0)
  })
})
