// The replicas of one service and how a call picks one: only replicas whose health watch says SERVING (and
// whose connection has not just failed) are candidates; among them the one with the fewest calls in flight
// wins (or the next in turn, for round robin). Ties go to the replica a model hashes to (rendezvous hashing),
// so one model's calls stay on one replica while load is light and spread once it is not, as ModelMesh does.

export type ReplicaHealth = 'unknown' | 'serving' | 'not_serving' | 'unreachable';
export type Balancing = 'least-outstanding' | 'round-robin';

export class Replica<H> {
  health: ReplicaHealth = 'unknown';
  /** Epoch ms until which the replica is left out after a failed connection. */
  ejectedUntil = 0;
  /** Consecutive ejections, for the growing ejection time; reset by SERVING. */
  ejections = 0;
  /** Calls to this replica in flight now. */
  outstanding = 0;
  /** Calls that ended with an answer from the replica (any status). */
  answered = 0;
  /** Calls that failed before the replica answered. */
  failed = 0;
  removed = false;

  constructor(
    readonly address: string,
    readonly handle: H,
  ) {}

  usable(now: number): boolean {
    return this.health === 'serving' && now >= this.ejectedUntil && !this.removed;
  }
}

export interface ReplicaSetOptions<H> {
  balancing: Balancing;
  ejectMs: number;
  create(address: string): H;
  dispose(handle: H): void;
  /** Called when the number of usable replicas changes between zero and more. */
  onAvailability?(available: boolean): void;
}

export class ReplicaSet<H> {
  private list: Replica<H>[] = [];
  private turn = 0;
  private available = false;

  constructor(private readonly options: ReplicaSetOptions<H>) {}

  get replicas(): readonly Replica<H>[] {
    return this.list;
  }

  /** Replaces the set of addresses: new ones are added (health unknown), missing ones removed and disposed. */
  setAddresses(addresses: string[]): { added: Replica<H>[]; removed: Replica<H>[] } {
    const wanted = new Set(addresses);
    const removed = this.list.filter((r) => !wanted.has(r.address));
    const have = new Set(this.list.map((r) => r.address));
    const added = addresses.filter((a) => !have.has(a)).map((a) => new Replica(a, this.options.create(a)));
    for (const r of removed) {
      r.removed = true;
      this.options.dispose(r.handle);
    }
    this.list = [...this.list.filter((r) => wanted.has(r.address)), ...added];
    this.checkAvailability();
    return { added, removed };
  }

  setHealth(replica: Replica<H>, health: ReplicaHealth): void {
    replica.health = health;
    if (health === 'serving') {
      replica.ejectedUntil = 0;
      replica.ejections = 0;
    }
    this.checkAvailability();
  }

  /** Leaves a replica out for a while after its connection failed (longer each time, up to 16×). */
  eject(replica: Replica<H>, now = Date.now()): void {
    replica.ejections = Math.min(replica.ejections + 1, 5);
    replica.ejectedUntil = now + this.options.ejectMs * 2 ** (replica.ejections - 1);
    this.checkAvailability();
  }

  /**
   * A replica for one call. `exclude` holds replicas this call already tried; they are used again only when
   * nothing else is usable. Replicas whose health is not known yet are used only when none is known SERVING.
   */
  pick(affinity: string | undefined, exclude?: ReadonlySet<Replica<H>>, now = Date.now()): Replica<H> | undefined {
    let best: Replica<H> | undefined;
    let ties = 0;
    let fallback: Replica<H> | undefined;
    let unknown: Replica<H> | undefined;
    const list = this.list;
    for (let i = 0; i < list.length; i++) {
      const r = list[i]!;
      if (!r.usable(now)) {
        if (r.health === 'unknown' && now >= r.ejectedUntil && !exclude?.has(r) && (!unknown || r.outstanding < unknown.outstanding)) unknown = r;
        continue;
      }
      if (exclude?.has(r)) {
        if (!fallback || r.outstanding < fallback.outstanding) fallback = r;
        continue;
      }
      if (!best || r.outstanding < best.outstanding) {
        best = r;
        ties = 1;
      } else if (r.outstanding === best.outstanding) ties++;
    }
    if (!best) return unknown ?? fallback;
    if (ties === 1) return best;
    // Several candidates are equally loaded.
    if (this.options.balancing === 'round-robin' || affinity === undefined) return this.nextInTurn(best.outstanding, exclude, now);
    let top = -1;
    let chosen = best;
    for (const r of list) {
      if (r.outstanding !== best.outstanding || !r.usable(now) || exclude?.has(r)) continue;
      const score = hash(affinity, r.address);
      if (score > top) {
        top = score;
        chosen = r;
      }
    }
    return chosen;
  }

  private nextInTurn(outstanding: number, exclude: ReadonlySet<Replica<H>> | undefined, now: number): Replica<H> | undefined {
    const n = this.list.length;
    for (let k = 0; k < n; k++) {
      const r = this.list[(this.turn + k) % n]!;
      if (r.outstanding === outstanding && r.usable(now) && !exclude?.has(r)) {
        this.turn = (this.turn + k + 1) % n;
        return r;
      }
    }
    return undefined;
  }

  get usableCount(): number {
    const now = Date.now();
    return this.list.filter((r) => r.usable(now)).length;
  }

  close(): void {
    for (const r of this.list) {
      r.removed = true;
      this.options.dispose(r.handle);
    }
    this.list = [];
  }

  private checkAvailability(): void {
    const now = this.usableCount > 0;
    if (now !== this.available) {
      this.available = now;
      this.options.onAvailability?.(now);
    }
  }
}

/** FNV-1a over the model key and the address: a stable pseudo-random score per (model, replica). */
function hash(key: string, address: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ 0x7c, 0x01000193);
  for (let i = 0; i < address.length; i++) h = Math.imul(h ^ address.charCodeAt(i), 0x01000193);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 0;
}
