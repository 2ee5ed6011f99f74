// SessionChanges: what a client's statements do to session state in transaction mode (DESIGN.md
// section 4). A session SET or RESET travels with the client (ClientSettings) once its unit ended
// cleanly; state that cannot travel (SET ROLE, temp tables, advisory locks, ...) pins the client
// to its server; state undone by a statement that may have failed gets the server reset.

import type { BackendConnection } from "../backend/backend-connection.js";
import type { Logger } from "../log.js";
import { TxStatus } from "../protocol/codes.js";
import { PinReason } from "../reasons.js";
import type { ClientSettings } from "./client-settings.js";
import type { ClientStatements } from "./client-statements.js";
import { detectSessionState, type StateChange, TRACKED_PARAMETERS } from "./session-state.js";

/** What session changes read of their session. */
export interface ChangesOwner {
  readonly id: number;
  readonly log: Logger;
  readonly settings: ClientSettings;
  readonly statements: ClientStatements;
  /** Transaction pooling: session state must travel with the client, or pin it. */
  readonly pooledByTransaction: boolean;
  countPin(reason: PinReason): void;
  /** DISCARD ALL: the client's LISTENs end with it. */
  unlistenAll(): void;
}

export class SessionChanges {
  /** The lease's error count when the unit began (a unit's SETs stay only if it had none). */
  private errorsBefore = 0;
  /** The lease's 25006 count when the unit began (see UnitLoss.replayOnWriter). */
  private refusalsBefore = 0;
  /** A Sync of the unit ended inside a transaction (its SETs' fate depends on it). */
  private sawTransaction = false;

  constructor(private readonly owner: ChangesOwner) {}

  /** A server was leased: what it reports from now on is the unit's. */
  leased(conn: BackendConnection): void {
    this.errorsBefore = conn.errors;
    this.refusalsBefore = conn.readOnlyRefusals;
  }

  /** The server refused the unit as read-only (25006) since the unit began. */
  refusedReadOnly(conn: BackendConnection): boolean {
    return conn.readOnlyRefusals > this.refusalsBefore;
  }

  /** A Sync of a pipeline completed with `status`. */
  synced(status: number): void {
    if (status !== TxStatus.Idle) this.sawTransaction = true;
  }

  /** The unit ended with `status` on `conn`: its SETs stay only if it ended cleanly. */
  unitEnded(conn: BackendConnection, status: number): void {
    const settings = this.owner.settings;
    if (settings.hasPending) {
      // The unit's SETs stayed only if it ended outside a transaction, with no error.
      if (status === TxStatus.Idle && conn.errors === this.errorsBefore && !this.sawTransaction) {
        settings.commitPending(conn);
      } else {
        settings.dropPending();
        this.pin(conn, PinReason.Set); // what the server holds now is unknown: keep it
      }
    }
    this.leased(conn);
    this.sawTransaction = false;
  }

  /** The unit's server was lost or given up: its SETs are sent again if it is replayed. */
  forgetUnit(): void {
    this.owner.settings.dropPending();
    this.sawTransaction = false;
  }

  /** The SQL text in buf[start, end) is sent to `conn`: apply what it does to session state. */
  track(conn: BackendConnection, buf: Buffer, start: number, end: number): void {
    if (!this.owner.pooledByTransaction) return;
    const effects = detectSessionState(buf, start, end);
    if (effects.length > 0) this.apply(conn, effects, () => buf.toString("utf8", start, end));
  }

  /**
   * Whether the SETs and RESETs of a statement can travel with the client instead of pinning it:
   * outside a transaction, and not in a statement string that opens or ends one (its outcome
   * would decide whether they stay). The unit must then end cleanly (see unitEnded()).
   */
  private travel(conn: BackendConnection, text: () => string): boolean {
    return (
      this.owner.pooledByTransaction &&
      conn.txStatus === TxStatus.Idle &&
      !/\b(begin|start|commit|end|rollback|abort|savepoint|prepare)\b/i.test(text())
    );
  }

  apply(conn: BackendConnection, change: NonNullable<StateChange>, text: () => string): void {
    const { settings, statements } = this.owner;
    // Effects apply when the statement is sent, before the server says whether it succeeded. A
    // pin is therefore taken at once; state that was undone (RESET ROLE, UNLISTEN, DISCARD ALL)
    // may not have been (a failed or rolled-back statement), so the server is reset before
    // anyone else gets it. A session SET / RESET is held until its unit ends cleanly, then
    // travels with the client (ClientSettings); where that cannot be known, it pins.
    let travels: boolean | null = null;
    /** SET pins that come with a SET we carry: not taken. */
    let carried = 0;
    for (const effect of change) {
      if ("set" in effect || "reset" in effect) {
        const name = "set" in effect ? effect.set.name : effect.reset;
        if (name === "role" || name === "session_authorization") continue; // pinned, below
        if ("set" in effect && TRACKED_PARAMETERS.has(name)) continue; // reported by the server
        travels ??= this.travel(conn, text);
        if (!travels) {
          if ("reset" in effect) this.pin(conn, PinReason.Set);
          continue;
        }
        settings.hold(effect);
        if ("set" in effect) carried++;
      } else if ("pin" in effect) {
        if (effect.pin === PinReason.Set && carried > 0) {
          carried--;
          continue;
        }
        this.pin(conn, effect.pin);
      } else if ("unpin" in effect) {
        conn.unpin(effect.unpin);
      } else if (
        ("discard" in effect && effect.discard === "all") ||
        ("deallocate" in effect && effect.deallocate === null)
      ) {
        // The server's statements (ours included) are gone: forget them, and the client's names.
        if ("discard" in effect) {
          conn.unpin("all");
          this.owner.unlistenAll();
          travels ??= this.travel(conn, text);
          if (travels) settings.hold({ reset: "all" });
        }
        conn.forgetStatements();
        statements.clear();
      }
    }
  }

  pin(conn: BackendConnection, reason: PinReason): void {
    if (!conn.pin(reason)) return;
    this.owner.countPin(reason);
    this.owner.log.debug(
      { client: this.owner.id, server: conn.id, reason },
      "client pinned to server",
    );
  }
}
