// ServerLease: the server a session holds for its work. The checkout (the unit goes out on the
// server found), the server's replies (BackendListener: through the Unit to the client), the
// release at ReadyForQuery('I') in transaction mode, the loss (UnitLoss decides what follows), and
// the give-back when the client leaves (DESIGN.md section 3, steps 2, 5, 7-9).

import type { BackendConnection, BackendListener } from "../backend/backend-connection.js";
import type { CheckoutCallback } from "../backend/waiters.js";
import {
  type DisconnectReason,
  lostConnectionError,
  type ProxyError,
  ProxyErrorReason,
  proxyError,
  type ServerError,
} from "../errors.js";
import type { Logger } from "../log.js";
import { TxStatus } from "../protocol/codes.js";
import * as msg from "../protocol/messages.js";
import { ClientCloseReason, ReplayOutcome } from "../reasons.js";
import type { ClientSettings } from "./client-settings.js";
import type { ClientStatements } from "./client-statements.js";
import type { ClientWire } from "./client-wire.js";
import type { Wait } from "./login.js";
import type { Relay } from "./relay.js";
import { renameStatements } from "./replies.js";
import type { SessionChanges } from "./session-changes.js";
import type { Route } from "./session-context.js";
import type { Unit } from "./unit.js";
import type { UnitLoss } from "./unit-loss.js";

/** What a lease reads of its session, and the moves it asks the session to make. */
export interface LeaseOwner {
  readonly id: number;
  readonly log: Logger;
  readonly wire: ClientWire;
  readonly unit: Unit;
  readonly relay: Relay;
  readonly loss: UnitLoss;
  readonly changes: SessionChanges;
  readonly settings: ClientSettings;
  readonly statements: ClientStatements;
  readonly route: Route | null;
  readonly closed: boolean;
  readonly key: { pid: number } | null;
  readonly trackExtraParameters: ReadonlySet<string>;
  txStatus: number;
  /** The session waits for a server / holds one / holds none. */
  waiting(): void;
  active(why: string): void;
  idle(why: string): void;
  waitFor(wait: Wait): void;
  waitOver(): void;
  flushClient(): void;
  /** The unit is over: UNLISTENs it held are applied. */
  unitOver(): void;
  /** Between units: notifications that came meanwhile may be delivered. */
  betweenUnits(): void;
  countReplay(outcome: ReplayOutcome): void;
  countClientError(sqlstate: string): void;
  close(reason: ClientCloseReason): void;
  countUnit(seconds: number, transactionEnded: boolean): void;
}

export class ServerLease implements BackendListener {
  private conn: BackendConnection | null = null;
  /** The checkout callback, made once per lease rather than once per unit. */
  private readonly checkedOut: CheckoutCallback = (err, conn) => this.onCheckout(err, conn);

  constructor(private readonly owner: LeaseOwner) {}

  /** The server held, or null. */
  get server(): BackendConnection | null {
    return this.conn;
  }

  /** The unit needs a server: wait for one from the pool. */
  request(): void {
    const route = this.owner.route as Route;
    this.owner.waiting();
    // The callback may run before checkout() returns (an idle server was at hand).
    this.owner.waitFor(route.pool.checkout(this.checkedOut));
  }

  private onCheckout(err: ProxyError | ServerError | null, conn: BackendConnection | null): void {
    const owner = this.owner;
    owner.waitOver();
    if (owner.closed) {
      if (conn) owner.route?.pool.giveBack(conn, "clean");
      return;
    }
    if (err || conn === null) {
      const status = owner.txStatus === TxStatus.Failed ? TxStatus.Failed : TxStatus.Idle;
      owner.loss.fail(err ?? lostConnectionError(false), status);
      return;
    }
    this.conn = conn;
    owner.active("server leased");
    conn.listener = this;
    owner.changes.leased(conn);
    if (owner.wire.stalledSince !== null) conn.pauseReading();
    owner.relay.sendUnit(conn);
    owner.wire.resumeAfterUnit();
    conn.flushSimulated();
    owner.flushClient();
  }

  /** The server is no longer the session's (lost, or given up for another). */
  letGo(conn: BackendConnection): void {
    this.conn = null;
    this.owner.wire.serverDrained(conn);
  }

  private release(conn: BackendConnection): void {
    this.letGo(conn);
    this.owner.idle("server released");
    conn.resumeReading();
    this.owner.route?.pool.giveBack(conn, "clean");
  }

  /**
   * The client left: the server goes back clean, reset, or closed. A session-mode server goes
   * back after its session; a transaction-mode one only when nothing is owed or left open.
   */
  giveBack(): void {
    const conn = this.conn;
    const route = this.owner.route;
    this.conn = null;
    if (conn === null || route === null) return;
    conn.resumeReading();
    // giveBack closes a server still owing replies; a transaction-mode one left in a transaction
    // or pinned is rolled back or reset first.
    route.pool.giveBack(conn, route.mode === "session" ? "reset" : "clean");
  }

  /**
   * client_write_timeout: closes a client that holds a server but has not read its replies (its
   * socket full, no 'drain') for longer than `ms`. Its server is paused meanwhile, and would be
   * held for good: enough such clients and no one else gets a server. The server is released as
   * dirty (cancelled and closed); a client that reads slowly is never cut, as every drain counts.
   */
  closeIfStalledFor(ms: number, now: number): void {
    const owner = this.owner;
    const since = owner.wire.stalledSince;
    const conn = this.conn;
    if (since === null || conn === null || now - since <= ms) return;
    owner.log.info(
      { client: owner.id, server: conn.id, pool: owner.route?.pool.key, ms },
      "client_write_timeout: client stopped reading while holding a server",
    );
    const err = proxyError(
      ProxyErrorReason.ClientWriteTimeout,
      `terminating connection: the client has not read its results for ${Math.round(ms / 1000)} s (client_write_timeout)`,
    );
    owner.countClientError(err.sqlstate);
    owner.wire.writeNow(err.toMessage()); // read only if the client ever reads again
    owner.close(ClientCloseReason.WriteTimeout);
  }

  /**
   * A CancelRequest for this client: cancels the unit its server is running for it. It travels on
   * a new connection, so the server may be done, and serving someone else, by the time that
   * connection opens: whether the lease is still ours and still owes replies is checked again
   * right before the packet is written. What remains cannot be closed: between that write and
   * the postmaster signalling the server, the unit may finish, the lease go back and the server
   * start the next unit, another client's in transaction mode. Postgres has the same race for its
   * own clients (a cancel hits whatever the backend runs when the signal lands).
   */
  cancelCurrent(): void {
    const conn = this.conn;
    if (conn === null || !conn.owesReplies) return;
    conn.cancel(() => this.conn === conn && conn.owesReplies);
  }

  // --- server replies (BackendListener) --------------------------------------------------------

  forward(buf: Buffer, start: number, end: number): void {
    this.owner.unit.forward(buf, start, end);
  }

  forwardAsync(buf: Buffer, start: number, end: number): void {
    this.owner.unit.forwardAsync(buf, start, end);
  }

  insert(bytes: Buffer): void {
    this.owner.unit.insert(bytes);
  }

  /** The client must act on what it has been sent (COPY FROM STDIN began): stop holding. */
  mustFlush(): void {
    this.owner.unit.release();
  }

  chunkEnd(): void {
    this.owner.flushClient();
  }

  parameter(name: string, value: string, ignored: boolean): void {
    const owner = this.owner;
    if (!owner.settings.serverReported(name, value, ignored, owner.trackExtraParameters)) return;
    // Not part of the unit's response: it does not prevent a replay.
    owner.unit.flushOut();
    owner.wire.write(msg.parameterStatus(name, value));
  }

  ready(status: number): void {
    const owner = this.owner;
    const conn = this.conn as BackendConnection;
    if (conn.roleMismatch && owner.changes.refusedReadOnly(conn) && owner.loss.replayOnWriter(conn))
      return;
    owner.txStatus = status;
    const unit = owner.unit;
    unit.release();
    owner.flushClient();
    if (unit.replays > 0) owner.countReplay(ReplayOutcome.Succeeded);
    owner.countUnit(unit.seconds, status === TxStatus.Idle);
    unit.end();
    owner.changes.unitEnded(conn, status);
    owner.unitOver();
    if (owner.route?.mode === "transaction" && status === TxStatus.Idle && !conn.pinned) {
      this.release(conn);
    } else {
      owner.active("unit done, server kept");
    }
    owner.betweenUnits();
  }

  /** A Sync of a pipeline completed with more Syncs owed: its replies are final, send them. */
  synced(status: number): void {
    this.owner.txStatus = status;
    this.owner.changes.synced(status);
    // The rest of the unit can no longer be replayed: these replies were its first part.
    this.owner.unit.release();
  }

  renamedError(buf: Buffer, start: number, end: number): void {
    const statements = this.owner.statements;
    const renamed = renameStatements(buf.subarray(start, end), (n) => statements.clientNameOf(n));
    this.owner.unit.forwardRewritten(renamed);
  }

  ownNotification(buf: Buffer, start: number, end: number): void {
    const copy = Buffer.from(buf.subarray(start, end));
    const key = this.owner.key;
    if (key) copy.writeInt32BE(key.pid, 5);
    this.owner.unit.emitAside(copy);
  }

  lost(reason: DisconnectReason, error: ServerError | null): void {
    const conn = this.conn;
    if (conn === null) return;
    this.letGo(conn);
    this.owner.loss.serverLost(conn, reason, error);
  }
}
