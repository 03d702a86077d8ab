// Two connected in-memory Duplex streams: what one writes the other reads.
// The replication protocol runs over any Duplex, so its unit tests wire two
// peers with this instead of sockets (hypercore's `a.pipe(b).pipe(a)`).
// node:stream's duplexPair exists from Node 22.6, below the engines floor.

import { type Duplex, duplexPair } from 'node:stream'

export function connectedDuplexes(): [Duplex, Duplex] {
  return duplexPair()
}
