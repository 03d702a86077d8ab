// Run in a child process by env-probe.ts: opens the LMDB environment
// read-only, reads every small database in full (not the index: it grows with
// the log), then opens the store read-only, which checks the tail of every
// partition and replays the segment frames past the index. A damaged LMDB
// page can crash the reading process outright (LMDB trusts its pages), so
// this happens here and not in the broker.
// Exit 0: healthy. Any other exit or a signal: damaged.

import { NodeEnvironment } from './node-environment.ts'
import { SegmentLogStore } from './segment-log-store.ts'

const [dataDir] = process.argv.slice(2)
if (dataDir === undefined) process.exit(2)
const env = NodeEnvironment.open(dataDir, { readOnly: true })
env.readSmallDatabases()
await env.close()
const store = new SegmentLogStore({ dataDir, origin: 'probe', maxPendingAppends: 1, readOnly: true })
await store.open()
await store.close()
