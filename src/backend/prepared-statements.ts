// PreparedStatementCache: which content-named statements exist on one server, least recently used
// first, bounded so a server never accumulates statements without limit.

/**
 * Statements some server of a pool has accepted (by content name). A client's Parse of one of
 * these needs no server: it is answered at once and prepared wherever the client's Bind lands.
 */
export class KnownStatements {
  private readonly names = new Map<string, true>();
  constructor(private readonly capacity = 10_000) {}

  has(name: string): boolean {
    return this.names.has(name);
  }

  add(name: string): void {
    if (this.names.has(name)) return;
    if (this.names.size >= this.capacity) {
      const oldest = this.names.keys().next().value as string;
      this.names.delete(oldest);
    }
    this.names.set(name, true);
  }

  /** After DDL changed the schema (psycopg's cue: DROP/ALTER), revalidate everything. */
  clear(): void {
    this.names.clear();
  }
}

export class PreparedStatementCache {
  /**
   * Each statement with the tick of its last use: a use overwrites the value in place (no
   * delete and re-insert per execute), and eviction looks for the smallest ticks.
   */
  private readonly names = new Map<string, number>();
  /** Parses sent but not yet answered: the server will have them unless the Parse fails. */
  private readonly pending = new Set<string>();
  private tick = 0;

  constructor(
    readonly capacity: number,
    private readonly known: KnownStatements | null = null,
  ) {}

  get size(): number {
    return this.names.size;
  }

  /** True when the statement exists here or its Parse is already on the way. */
  has(name: string): boolean {
    if (this.pending.size > 0 && this.pending.has(name)) return true;
    if (!this.names.has(name)) return false;
    this.names.set(name, this.nextTick());
    return true;
  }

  /** A Parse for `name` was sent. */
  expect(name: string): void {
    this.pending.add(name);
  }

  /** The server answered ParseComplete. */
  confirm(name: string): void {
    this.pending.delete(name);
    this.known?.add(name);
    this.names.set(name, this.nextTick());
  }

  /** The Parse failed or was skipped after an earlier error. */
  forget(name: string): void {
    this.pending.delete(name);
    this.names.delete(name);
  }

  /**
   * Names to Close so that `incoming` more statements fit (least recently used first); they are
   * removed here. `keep` names the statement the current batch uses, which must not be evicted.
   */
  evictFor(incoming: number, keep: string): string[] {
    const out: string[] = [];
    let excess = this.names.size + this.pending.size + incoming - this.capacity;
    while (excess > 0) {
      let victim: string | null = null;
      let oldest = Number.POSITIVE_INFINITY;
      for (const [name, used] of this.names) {
        if (used < oldest && name !== keep) {
          oldest = used;
          victim = name;
        }
      }
      if (victim === null) break;
      this.names.delete(victim);
      out.push(victim);
      excess--;
    }
    return out;
  }

  clear(): void {
    this.names.clear();
    this.pending.clear();
  }

  /** The statements, least recently used first. */
  list(): string[] {
    return [...this.names].sort((a, b) => a[1] - b[1]).map(([name]) => name);
  }

  /** Ticks stay small integers: past 2^30 uses they are renumbered in order. */
  private nextTick(): number {
    if (this.tick >= 0x40000000) {
      const order = this.list();
      this.tick = 0;
      for (const name of order) this.names.set(name, this.tick++);
    }
    return this.tick++;
  }
}
