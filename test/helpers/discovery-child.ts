// A discovery child for the cluster tests: runs MdnsDiscovery or StaticPeers
// in the network namespace it was started in (mDNS needs the process inside
// the namespace) and prints what it sees as JSON lines on stdout:
// {"event":"ready"|"found"|"conflict"|"hello"|"closed", ...}. Its own log
// (pino, debug level) goes to stderr. With `serve`, it answers TCP
// connections on its port with {"nodeId": ...} (a stand-in for the
// replication hello); with `dial`, it connects to each peer found and prints
// the id the peer answered. SIGTERM closes it; it exits by itself after
// `lifeMs` in any case, and not before.
//
// Usage: node discovery-child.ts '<json ChildOptions>'

import { createConnection, createServer, type Server } from 'node:net'
import { createInterface } from 'node:readline'
import { destination } from 'pino'
import type { Discovery, FoundPeer } from '../../src/cluster/discovery.ts'
import { MdnsDiscovery } from '../../src/cluster/mdns-discovery.ts'
import { StaticPeers } from '../../src/cluster/static-peers.ts'
import { createLogger } from '../../src/observability/logger.ts'

export interface ChildOptions {
  readonly mode: 'mdns' | 'static'
  readonly cluster: string
  readonly nodeId: string
  readonly port: number
  readonly interface?: string
  readonly peers?: readonly string[]
  readonly serve?: boolean
  readonly dial?: boolean
  readonly lifeMs?: number
}

const options = JSON.parse(process.argv[2] ?? '{}') as ChildOptions
const log = createLogger('debug', destination({ dest: 2, sync: true }))
const say = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(event)}\n`)

const discovery: Discovery =
  options.mode === 'mdns'
    ? new MdnsDiscovery({
        cluster: options.cluster,
        nodeId: options.nodeId,
        replicationPort: options.port,
        protocol: 1,
        log,
        ...(options.interface === undefined ? {} : { interface: options.interface }),
      })
    : new StaticPeers({ cluster: options.cluster, peers: options.peers ?? [] })

function dial(peer: FoundPeer): void {
  const socket = createConnection({ host: peer.host, port: peer.port, timeout: 5_000 })
  socket.on('error', (err) =>
    say({ event: 'dial-error', host: peer.host, port: peer.port, error: err.message }),
  )
  socket.on('timeout', () => socket.destroy(new Error('timed out')))
  createInterface({ input: socket }).once('line', (line) => {
    say({
      event: 'hello',
      host: peer.host,
      port: peer.port,
      nodeId: (JSON.parse(line) as { nodeId: string }).nodeId,
    })
    socket.end()
  })
}

let server: Server | null = null
if (options.serve === true) {
  server = createServer((socket) => socket.end(`${JSON.stringify({ nodeId: options.nodeId })}\n`))
  server.listen(options.port, '0.0.0.0')
}

discovery.on('found', (peer) => {
  say({ event: 'found', peer })
  if (options.dial === true) dial(peer)
})
discovery.on('conflict', (conflict) => say({ event: 'conflict', conflict }))

async function stop(): Promise<void> {
  try {
    await discovery.close()
    server?.close()
    say({ event: 'closed' })
    process.exit(0)
  } catch (err) {
    say({ event: 'close-error', error: String(err) })
    process.exit(1)
  }
}
// stop() reports its own failure and exits either way.
process.once('SIGTERM', () => void stop())
// Not unref'd: it also keeps a child that has nothing else to wait for (static peers) up until then.
setTimeout(() => void stop(), options.lifeMs ?? 120_000)

await discovery.start()
say({ event: 'ready' })
