// `tributary peers`: the running node's replication peers, from its admin API
// (GET /v1/peers): each peer, how it was found (mDNS or static), the link's
// state and round-trip time, and this node's copies of its partitions with
// their lag (records the peer has durably and this node not yet; `?` while
// the link is down, when neither is known).

import type { Command } from 'commander'
import type { ClusterView } from '../admin/node-view.ts'
import { TributaryError } from '../errors.ts'
import type { PeerStatus } from '../replication/replicator.ts'
import {
  apiGet,
  configFrom,
  nodeApi,
  parseHttpPort,
  printJson,
  printTable,
  withStoreOptions,
} from './shared.ts'

interface PeersAnswer {
  readonly cluster: ClusterView | null
  readonly peers: readonly PeerStatus[]
}

export function registerPeers(program: Command): void {
  withStoreOptions(program.command('peers'))
    .description('list the replication peers of the running node, with link state and copy lag')
    .option(
      '--http-port <port>',
      'where the running node serves its admin API (default: http.port of the config)',
      parseHttpPort,
    )
    .option('--http-host <host>', 'its address (default: http.host of the config)')
    .option('--json', 'one JSON object per peer per line')
    .action(
      async (options: {
        config?: string
        dataDir?: string
        httpPort?: number | 'off'
        httpHost?: string
        json?: boolean
      }) => {
        const config = configFrom(options)
        const api = nodeApi(config)
        if (api === null)
          throw new TributaryError(
            'TRIB_NODE_UNREACHABLE',
            'http.port is off or 0: the peers are only known to the running node',
          )
        const { base, token } = api
        const answer = await apiGet<PeersAnswer>(base, '/v1/peers', token)
        if (answer === null) throw new TributaryError('TRIB_NODE_UNREACHABLE', `no answer from ${base}`)
        if (options.json === true) {
          for (const peer of answer.peers) printJson(peer)
          return
        }
        if (answer.cluster === null) {
          process.stdout.write(
            '(no cluster: this node runs alone; start it with --cluster NAME --cluster-secret-file FILE)\n',
          )
          return
        }
        if (answer.cluster.refused !== null)
          process.stdout.write(`replication REFUSED: ${answer.cluster.refused}\n`)
        for (const c of answer.cluster.conflicts)
          process.stdout.write(
            `NODE ID CONFLICT (TRIB_NODE_ID_CONFLICT): ${c.nodeId} follows this node from ${c.accepted}; ` +
              `refused from ${c.refused.join(', ')} (${c.refusals} times): one of them runs on a copy of the other's data dir\n`,
          )
        printTable(
          ['PEER', 'ADDRESS', 'FOUND BY', 'STATE', 'RTT MS', 'COPIES', 'COPY LAG', 'LAST ERROR'],
          answer.peers.map((p) => [
            p.nodeId ?? '?',
            p.address,
            p.via,
            p.state,
            p.rttMs === null ? '-' : p.rttMs.toFixed(1),
            p.copies.length,
            copyLag(p),
            p.lastError ?? '-',
          ]),
        )
        if (answer.peers.some((p) => copyLag(p) === '?'))
          process.stdout.write('(COPY LAG ?: the link to that peer is down, so its end is not known)\n')
        if (answer.peers.length === 0)
          process.stdout.write(`(no peers found yet in cluster ${answer.cluster.name})\n`)
        process.stdout.write('\n')
        printTable(
          ['STREAM', 'PARTITION', 'REPLICAS', 'MIN INSYNC', 'DURABLE NEXT', 'REPLICATED NEXT', 'FOLLOWERS'],
          answer.cluster.partitions.map((p) => [
            p.stream,
            p.partition,
            p.replicas,
            p.minInsync,
            p.durableNext,
            p.replicatedNext,
            p.followers.length === 0
              ? '-'
              : p.followers.map((f) => `${f.follower}${f.inSync ? '' : ' (not in sync)'}`).join(', '),
          ]),
        )
      },
    )
}

/** Records this node's copies of the peer lack, summed; '?' while the link is down (not known). */
function copyLag(peer: PeerStatus): number | '?' {
  let sum = 0
  for (const c of peer.copies) {
    if (c.lagRecords === null) return '?'
    sum += c.lagRecords
  }
  return sum
}
