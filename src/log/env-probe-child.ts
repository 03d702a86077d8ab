// Run in a child process by env-probe.ts: opens the LMDB environment
// read-only, reads every small database in full (not the index: it grows with
// the log), then opens the store read-only, which checks the tail of every
// partition and replays the segment frames past the index. A damaged LMDB
// page can crash the reading process outright (LMDB trusts its pages), so
// this happens here and not in the broker.
// Exit 0: healthy. Any other exit or a signal: damaged.

import { open } from 'lmdb'
import { SegmentLogStore } from './segment-log-store.ts'

const [dataDir, envPath] = process.argv.slice(2)
if (dataDir === undefined || envPath === undefined) process.exit(2)
const root = open({ path: envPath, readOnly: true, maxDbs: 32 })
const names = ['log-meta', 'log-segments', 'log-markers', 'log-quarantine'].concat(
  ['retained', 'subscriptions', 'outgoing', 'incoming', 'wills'].map((n) => `mqtt-${n}`),
)
for (const name of names) {
  for (const entry of root.openDB({ name, encoding: 'binary', keyEncoding: 'binary' }).getRange()) void entry
}
await root.close()
const store = new SegmentLogStore({ dataDir, origin: 'probe', maxPendingAppends: 1, readOnly: true })
await store.open()
await store.close()
