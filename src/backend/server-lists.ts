// ServerLists: where each server of a pool is. A server sits in at most one list, and moveTo() is
// the only change of membership (PgBouncer's change_server_state): the lists are read-only to
// everyone else, and what SHOW SERVERS and the gauges report is read from them.

import type { BackendConnection } from "./backend-connection.js";

/** The lists a server can be in, as SHOW SERVERS and the server gauge name them. */
export const ServerList = {
  Connecting: "connecting",
  Idle: "idle",
  Active: "active",
  /** Under the pool's own query: a check (server_check_query) or a reset (server_reset_query). */
  Maintaining: "checking",
} as const;
export type ServerList = (typeof ServerList)[keyof typeof ServerList];

/** A place in pool_size taken by a server being opened before its connection exists. */
export class Slot {
  /** Makes the type nominal: a BackendConnection is never taken for a Slot. */
  declare private readonly slot: true;
}

/** Where a slot is: counted as opening, or gone. */
export const OPENING = "opening";

export class ServerLists {
  private readonly idleList: BackendConnection[] = [];
  private readonly activeSet = new Set<BackendConnection>();
  private readonly connectingSet = new Set<BackendConnection>();
  private readonly maintainingSet = new Set<BackendConnection>();
  private readonly openingSet = new Set<Slot>();

  /** Idle servers, least recently used first (handed out from the end: LIFO). */
  get idle(): ReadonlyArray<BackendConnection> {
    return this.idleList;
  }
  /** Leased to a client. */
  get active(): ReadonlySet<BackendConnection> {
    return this.activeSet;
  }
  /** Dialled and logging in. */
  get connecting(): ReadonlySet<BackendConnection> {
    return this.connectingSet;
  }
  /** Being checked or reset by the pool itself. */
  get maintaining(): ReadonlySet<BackendConnection> {
    return this.maintainingSet;
  }
  /** Servers being opened that have no connection yet (the password, DNS, between hosts). */
  get opening(): number {
    return this.openingSet.size;
  }

  /** Every server and place taken, against pool_size. */
  get size(): number {
    return (
      this.idleList.length +
      this.activeSet.size +
      this.connectingSet.size +
      this.maintainingSet.size +
      this.openingSet.size
    );
  }

  /** The list `conn` is in (null: none, it is not or no longer in the pool). */
  stateOf(conn: BackendConnection): ServerList | null {
    if (this.activeSet.has(conn)) return ServerList.Active;
    if (this.maintainingSet.has(conn)) return ServerList.Maintaining;
    if (this.connectingSet.has(conn)) return ServerList.Connecting;
    return this.idleList.includes(conn) ? ServerList.Idle : null;
  }

  /** Takes a server out of its list and puts it in `to` (null: out of the pool). */
  moveTo(conn: BackendConnection, to: ServerList | null): void;
  /** Takes (`opening`) or gives back (null) a place for a server being opened. */
  moveTo(slot: Slot, to: typeof OPENING | null): void;
  moveTo(m: BackendConnection | Slot, to: ServerList | typeof OPENING | null): void {
    if (m instanceof Slot) {
      if (to === OPENING) this.openingSet.add(m);
      else this.openingSet.delete(m);
      return;
    }
    const conn = m;
    if (
      !this.activeSet.delete(conn) &&
      !this.maintainingSet.delete(conn) &&
      !this.connectingSet.delete(conn)
    ) {
      // Idle servers leave from the end (LIFO): pop, not splice, on the hot path.
      const i = this.idleList.lastIndexOf(conn);
      if (i >= 0 && i === this.idleList.length - 1) this.idleList.pop();
      else if (i >= 0) this.idleList.splice(i, 1);
    }
    switch (to) {
      case null:
        return;
      case ServerList.Idle: {
        // Ordered by idle time, most recent at the end: a checked server keeps its place.
        let i = this.idleList.length;
        while (i > 0 && this.idleList[i - 1].idleSince > conn.idleSince) i--;
        if (i === this.idleList.length) this.idleList.push(conn);
        else this.idleList.splice(i, 0, conn);
        return;
      }
      case ServerList.Active:
        this.activeSet.add(conn);
        return;
      case ServerList.Connecting:
        this.connectingSet.add(conn);
        return;
      case ServerList.Maintaining:
        this.maintainingSet.add(conn);
        return;
      case OPENING: // only a Slot is opening (the overloads say so)
        throw new Error(`server ${conn.id} cannot be opening`);
      default: {
        const never: never = to;
        throw new Error(`unknown server list ${never}`);
      }
    }
  }
}
