// One node id following this node from two IP addresses at once: two nodes
// with one id (a cloned data dir) where multicast is blocked (static peers
// only, so mDNS cannot see the clone). Without a check both would be served
// as one follower (their synced reports mixed, each holding the other's
// retention floors and acks). In: each inbound link once its hello is in,
// with the peer's IP address, and the links that already follow this node.
// Out: refused or not, and the conflicts seen (`/v1/peers`).
//
// The rule: an inbound link whose node id already follows this node over a
// live link from another IP address is refused with TRIB_NODE_ID_CONFLICT
// (the refuse carries the fix), logged with both addresses, counted. The
// older link wins because it is the one copies and acks already count on.
// A link is live only while heard from: silent for followerTimeoutMs, its
// own heartbeat check closes it. So:
// - a node restarting at the same address while its old link is still open
//   (half-open until the timeout) is no conflict: same IP, both served, the
//   old one times out;
// - a node back at another address (a power cut, a new DHCP lease) is
//   refused only until its old, silent link times out; its next dial after
//   that is accepted (the refused side backs off, at most 10 s, and keeps
//   dialing), and the conflict is no longer listed once the old link closed;
// - a clone beside its running original stays refused for as long as the
//   original keeps its link up (the listed conflict says so), and takes
//   its place only if the original is gone past followerTimeoutMs.
// The refused node sees `refused` and the reason in its own /v1/peers. It
// does not stop replicating with everyone (as an mDNS conflict on its own
// id makes it do): the refusing node cannot tell a clone from a node that
// just moved.

import { type ErrorCode, TributaryError } from '../errors.ts'
import type { Logger } from '../observability/logger.ts'
import type { PeerLink } from './link.ts'

/** A node id that followed this node from two IP addresses at once: the newer links were refused. */
export interface InboundConflict {
  readonly nodeId: string
  /** The IP address of the live link that was kept. */
  readonly accepted: string
  /** The IP addresses refused while it was live. */
  readonly refused: readonly string[]
  readonly refusals: number
  readonly lastRefusedAtMs: number
}

export interface FollowerIdsOptions {
  /** This node's id (named in the refuse). */
  readonly nodeId: string
  readonly logger: Logger
  /** A link refused (metrics). */
  readonly onRefused: (code: ErrorCode) => void
}

export class FollowerIds {
  readonly #o: FollowerIdsOptions
  /** Per kept inbound link: the links with its node id from other addresses refused while it was live. */
  readonly #conflicts = new Map<PeerLink, InboundConflict>()

  constructor(options: FollowerIdsOptions) {
    this.#o = options
  }

  /**
   * Refuses (closes with a refuse) and returns true when `link`'s node id
   * follows this node over a live link of `inbound` from another address.
   */
  refused(inbound: ReadonlyMap<PeerLink, string>, link: PeerLink, address: string): boolean {
    const nodeId = link.peer.nodeId
    const older = [...inbound].find(
      ([other, from]) => other.peer.nodeId === nodeId && other.closedReason === null && from !== address,
    )
    if (older === undefined) return false
    const [kept, keptAddress] = older
    const error = new TributaryError(
      'TRIB_NODE_ID_CONFLICT',
      `node id ${nodeId} already follows ${this.#o.nodeId} from ${keptAddress}; the link from ${address} ` +
        'is refused while that one is live (two nodes with one id: a cloned data dir?)',
    )
    link.close(error.message, { code: error.code, message: error.message })
    const seen = this.#conflicts.get(kept)
    this.#conflicts.set(kept, {
      nodeId,
      accepted: keptAddress,
      refused: [...new Set(seen?.refused).add(address)],
      refusals: (seen?.refusals ?? 0) + 1,
      lastRefusedAtMs: Date.now(),
    })
    this.#o.onRefused(error.code)
    // Once per conflict at error level; the refused node dials again with backoff, each time logged quietly.
    const fields = { code: error.code, nodeId, accepted: keptAddress, refused: address }
    if (seen === undefined)
      this.#o.logger.error(fields, 'two nodes with one node id follow this node: the newer link is refused')
    else this.#o.logger.debug(fields, 'node id conflict: link refused again')
    return true
  }

  /** A kept link closed: its place is free, and its conflict is no longer listed. */
  released(link: PeerLink): void {
    this.#conflicts.delete(link)
  }

  /** The conflicts whose kept link is still up. */
  conflicts(): InboundConflict[] {
    return [...this.#conflicts.values()]
  }
}

/** An IPv4 peer on a dual-stack listener shows as `::ffff:a.b.c.d`: one address, one spelling. */
export function ipOf(remoteAddress: string): string {
  return remoteAddress.startsWith('::ffff:') ? remoteAddress.slice('::ffff:'.length) : remoteAddress
}
