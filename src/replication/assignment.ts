// Which followers copy each of this node's partitions: the origin decides,
// and each follower's catalog lists only the partitions assigned to it.
// A partition wants `replicas - 1` followers (the origin holds the first
// copy). Per partition, in this order:
// - sticky: an assigned follower keeps the partition while its link is up,
//   and `awayMs` (cluster.followerTimeoutMs) more after it dropped, so a
//   link that blinks does not move a copy;
// - then the free places go to connected followers by rendezvous hashing
//   of (stream, partition, follower id): every origin spreads its
//   partitions evenly, and the same set of followers gives the same choice
//   after a restart.
// An assigned follower away longer than `awayMs` loses the partition (it
// stops fetching; its copy stays on its disk for cluster.followerExpireMs,
// then it deletes it: follower.ts) as soon as a connected follower can take
// its place. After a restart (`restore`), the
// followers the node had count as followers whose link just dropped, each
// placed by rendezvous hashing among them: a restart is a blink too, and
// they keep their partitions `awayMs` (and, while nobody else is connected,
// longer). Nothing here does I/O: the replicator feeds in links up and
// down and asks per partition.

import { createHash } from 'node:crypto'

export interface AssignmentOptions {
  /** How long an assigned follower whose link dropped keeps its partitions. */
  readonly awayMs: number
  readonly now?: () => number
  /** A follower lost a partition (away too long, its place taken): its hold on that partition ends. */
  readonly onReleased?: (follower: string, p: { stream: string; partition: number }) => void
}

/** A partition of this node: which stream, which number, how many nodes hold it. */
export interface AssignedPartition {
  readonly stream: string
  readonly partition: number
  readonly replicas: number
}

/** The rendezvous (highest random weight) score of one follower for one partition. */
export function rendezvousScore(stream: string, partition: number, follower: string): bigint {
  const digest = createHash('sha256').update(`${stream}\u0000${partition}\u0000${follower}`).digest()
  return digest.readBigUInt64BE(0)
}

export class PartitionAssignment {
  readonly #awayMs: number
  readonly #now: () => number
  readonly #onReleased: AssignmentOptions['onReleased']
  /** Per `stream NUL partition`: its followers, in the order they were assigned. */
  readonly #assigned = new Map<string, string[]>()
  /** Followers with a live link (a follower may have two for a moment). */
  readonly #links = new Map<string, number>()
  /** Followers whose last link dropped, and when. */
  readonly #awaySince = new Map<string, number>()
  /** The followers the node had before it restarted: the first holders of a partition not asked about yet. */
  #restored: readonly string[] = []

  constructor(options: AssignmentOptions) {
    this.#awayMs = options.awayMs
    this.#now = options.now ?? (() => performance.now())
    this.#onReleased = options.onReleased
  }

  linkUp(follower: string): void {
    this.#links.set(follower, (this.#links.get(follower) ?? 0) + 1)
    this.#awaySince.delete(follower)
  }

  linkDown(follower: string): void {
    const left = (this.#links.get(follower) ?? 1) - 1
    if (left > 0) {
      this.#links.set(follower, left)
      return
    }
    this.#links.delete(follower)
    this.#awaySince.set(follower, this.#now())
  }

  /** The followers this node had (incarnation.json): as if each link had just dropped. */
  restore(followers: readonly string[]): void {
    const now = this.#now()
    for (const f of followers) if (!this.#links.has(f)) this.#awaySince.set(f, now)
    this.#restored = followers
  }

  connected(follower: string): boolean {
    return this.#links.has(follower)
  }

  /** The followers assigned to `p` now (sticky first, then by rendezvous), after dropping those away too long. */
  followersOf(p: AssignedPartition): readonly string[] {
    const key = `${p.stream}\u0000${p.partition}`
    const wanted = Math.max(0, p.replicas - 1)
    const now = this.#now()
    const before = this.#assigned.get(key) ?? byRendezvous(p, this.#restored).slice(0, wanted)
    const kept = before.filter(
      (f) => this.#links.has(f) || now - (this.#awaySince.get(f) ?? now) < this.#awayMs,
    )
    const free = byRendezvous(
      p,
      [...this.#links.keys()].filter((f) => !kept.includes(f)),
    )
    const chosen = kept.slice(0, wanted)
    for (const f of free) {
      if (chosen.length >= wanted) break
      chosen.push(f)
    }
    // A follower away too long stays listed while nobody can take its place.
    for (const f of before) if (chosen.length < wanted && !chosen.includes(f)) chosen.push(f)
    this.#assigned.set(key, chosen)
    for (const f of before) if (!chosen.includes(f)) this.#onReleased?.(f, p)
    return chosen
  }
}

/** `followers` best first for partition `p` (highest rendezvous score first). */
function byRendezvous(p: AssignedPartition, followers: readonly string[]): string[] {
  return followers
    .map((f) => ({ f, score: rendezvousScore(p.stream, p.partition, f) }))
    .sort((x, y) => (x.score === y.score ? 0 : x.score > y.score ? -1 : 1))
    .map(({ f }) => f)
}
