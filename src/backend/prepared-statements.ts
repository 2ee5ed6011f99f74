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
  /** Insertion order is recency order: a use moves the name to the end. */
  private readonly names = new Map<string, true>();
  /** Parses sent but not yet answered: the server will have them unless the Parse fails. */
  private readonly pending = new Set<string>();

  constructor(
    readonly capacity: number,
    private readonly known: KnownStatements | null = null,
  ) {}

  get size(): number {
    return this.names.size;
  }

  /** True when the statement exists here or its Parse is already on the way. */
  has(name: string): boolean {
    if (this.pending.has(name)) return true;
    if (!this.names.has(name)) return false;
    this.names.delete(name);
    this.names.set(name, true);
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
    this.names.delete(name);
    this.names.set(name, true);
  }

  /** The Parse failed or was skipped after an earlier error. */
  forget(name: string): void {
    this.pending.delete(name);
    this.names.delete(name);
  }

  /**
   * Names to Close so that `incoming` more statements fit (oldest first); they are removed here.
   * `keep` names statements the current batch uses, which must not be evicted.
   */
  evictFor(incoming: number, keep: ReadonlySet<string>): string[] {
    const out: string[] = [];
    let excess = this.names.size + this.pending.size + incoming - this.capacity;
    if (excess <= 0) return out;
    for (const name of this.names.keys()) {
      if (excess <= 0) break;
      if (keep.has(name)) continue;
      out.push(name);
      excess--;
    }
    for (const name of out) this.names.delete(name);
    return out;
  }

  clear(): void {
    this.names.clear();
    this.pending.clear();
  }

  list(): string[] {
    return [...this.names.keys()];
  }
}
