// Relay: a client's frames on their way to its leased server. Each frame queues the replies it
// owes on the server (forwarded, ignored, or answered by us in stream order); named statements
// get content-derived server names, and a Parse is injected where the server lacks one; the
// client's settings are SET before its frames. How the bytes leave (one write per client chunk,
// a staging buffer around rewritten frames, backpressure) is its base, RelayOutput
// (relay-output.ts).

import type { BackendConnection } from "../backend/backend-connection.js";
import { Action } from "../backend/expected-responses.js";
import { FrontendCode, TxStatus } from "../protocol/codes.js";
import * as msg from "../protocol/messages.js";
import { frontendMessageError } from "../protocol/validate.js";
import { ClientCloseReason, PinReason } from "../reasons.js";
import type { ClientSettings } from "./client-settings.js";
import {
  type ClientStatement,
  type ClientStatements,
  describeStatement,
  spliceName,
} from "./client-statements.js";
import { ClientListens } from "./listens.js";
import { answerLocally, type LocalOwner } from "./local-answers.js";
import type { NotificationHub } from "./notification-hub.js";
import { RelayOutput, type RelayOutputOwner } from "./relay-output.js";
import { noParameters } from "./replies.js";
import type { SessionChanges } from "./session-changes.js";
import type { StatementLookup } from "./session-context.js";
import type { Unit } from "./unit.js";
import type { UnitLoss } from "./unit-loss.js";

const HEADER = 5;

/** What the relay reads of its session, and the moves it asks the session to make. */
export interface RelayOwner extends LocalOwner, RelayOutputOwner {
  readonly unit: Unit;
  readonly loss: UnitLoss;
  readonly statements: ClientStatements;
  readonly settings: ClientSettings;
  readonly changes: SessionChanges;
  readonly txStatus: number;
  /** Waiting for a server, or for the pool's LISTEN server. */
  readonly awaiting: boolean;
  /** Units may be replayed (retry is not off). */
  readonly mayReplay: boolean;
  /** Transaction pooling with named statements renamed per content (max_prepared_statements). */
  readonly namesStatements: boolean;
  /** The pool's LISTEN server, in transaction mode. */
  readonly hub: NotificationHub | null;
  listens(hub: NotificationHub): ClientListens;
  countStatement(kind: StatementLookup): void;
  requestServer(): void;
  /** The client must act on what it was sent: stop holding replies. */
  mustFlush(): void;
  onProtocolError(message: string): void;
  close(reason: ClientCloseReason): void;
}

export class Relay extends RelayOutput<RelayOwner> {
  /** The unnamed statement / portal is a DEALLOCATE or DISCARD we answer: its command tag. */
  private localUnnamed: string | null = null;
  private localPortal: string | null = null;

  /**
   * A message of a logged-in client (or one pipelined behind its StartupMessage): answered by
   * us, kept in the unit and sent to the server held, or kept until a server is found.
   */
  receive(code: number, buf: Buffer, start: number, end: number): void {
    const owner = this.owner;
    // Everything below reads names and SQL out of the message: it must be well formed first.
    const malformed = frontendMessageError(code, buf, start, end);
    if (malformed !== null) return owner.onProtocolError(malformed);
    switch (code) {
      case FrontendCode.Terminate:
        owner.close(ClientCloseReason.ClientExit);
        return;
      case FrontendCode.Query:
      case FrontendCode.Parse:
      case FrontendCode.Bind:
      case FrontendCode.Describe:
      case FrontendCode.Execute:
      case FrontendCode.Close:
      case FrontendCode.Sync:
      case FrontendCode.Flush:
      case FrontendCode.FunctionCall:
        break;
      case FrontendCode.CopyData:
      case FrontendCode.CopyDone:
      case FrontendCode.CopyFail:
        // Without a server, these belong to a COPY whose server was lost: Postgres ignores them too.
        if (owner.lease === null && !owner.awaiting) return;
        break;
      default:
        owner.onProtocolError(`invalid frontend message type ${code}`);
        return;
    }
    if (owner.loss.intercept(code, buf, start, end)) return;
    const { lease, unit } = owner;
    if (code === FrontendCode.Flush && unit.holding && (lease === null || lease.unsynced)) {
      // The client wants replies before its Sync: it cannot wait for ReadyForQuery.
      owner.mustFlush();
    }
    const idle = lease === null && !owner.awaiting && !unit.open;
    if (idle && answerLocally(owner, code, buf, start, end)) return;
    // Hold replies only where a replay is possible: outside a transaction, retry not off.
    if (!unit.open) unit.begin(owner.txStatus === TxStatus.Idle && owner.mayReplay);
    unit.append(buf, start, end);
    if (lease) this.send(code, buf, start, end);
    else if (!owner.awaiting) owner.requestServer();
  }

  /**
   * `conn` was leased for the unit: settings, injected Parses and the unit so far leave in one
   * write (at the chunk's end while one is scanned).
   */
  sendUnit(conn: BackendConnection): void {
    this.applySettings(conn);
    this.owner.unit.sendTo(this);
    this.flushOutsideChunk();
  }

  /** SETs the client's settings on a server whose values differ, before the client's frames. */
  private applySettings(conn: BackendConnection): void {
    const sql = this.owner.settings.sqlFor(conn);
    if (sql === "") return;
    conn.expect(FrontendCode.Query, Action.Ignore);
    this.cork(conn); // the unit's frames follow in the same write
    conn.write(msg.query(sql));
  }

  /**
   * Queues the replies a client frame owes and writes it to the server, rewriting statement names
   * where the frame needs it.
   */
  send(code: number, buf: Buffer, start: number, end: number): void {
    const conn = this.owner.lease as BackendConnection;
    const named = this.owner.namesStatements;
    conn.trackClientFrame(code);
    let replacement: Buffer | null | undefined; // undefined: send as is; null: send nothing
    switch (code) {
      case FrontendCode.Query: {
        const tag = named
          ? (this.listenInUnit(conn, buf, start + HEADER, end - 1) ??
            this.manageStatements(conn, buf, start + HEADER, end - 1))
          : null;
        if (tag !== null) {
          // Answered by us in stream order; a Sync gets the server's ReadyForQuery status.
          conn.expect(FrontendCode.Execute, Action.Simulate, msg.commandComplete(tag));
          conn.expect(FrontendCode.Sync, Action.Forward);
          replacement = msg.syncMessage;
          break;
        }
        conn.expect(code, Action.Forward);
        this.owner.changes.track(conn, buf, start + HEADER, end - 1);
        break;
      }
      case FrontendCode.Parse: {
        const nameEnd = buf.indexOf(0, start + HEADER);
        if (nameEnd === start + HEADER) {
          // The unnamed statement: psycopg sends DEALLOCATE through the extended protocol.
          const sqlEnd = buf.indexOf(0, nameEnd + 1);
          this.localUnnamed = named ? this.manageStatements(conn, buf, nameEnd + 1, sqlEnd) : null;
          this.localPortal = null;
          if (this.localUnnamed !== null) {
            conn.expect(code, Action.Simulate, msg.parseComplete);
            replacement = null;
            break;
          }
          conn.expect(code, Action.Forward);
          this.owner.changes.track(conn, buf, nameEnd + 1, sqlEnd);
          break;
        }
        if (!named) {
          conn.pin(PinReason.PreparedStatement);
          conn.expect(code, Action.Forward);
          break;
        }
        replacement = this.parseNamed(conn, buf, start, end, nameEnd);
        break;
      }
      case FrontendCode.Bind: {
        const portalEnd = buf.indexOf(0, start + HEADER);
        const stmtEnd = buf.indexOf(0, portalEnd + 1);
        if (portalEnd === start + HEADER) {
          this.localPortal = stmtEnd === portalEnd + 1 ? this.localUnnamed : null;
          if (this.localPortal !== null) {
            conn.expect(code, Action.Simulate, msg.bindComplete);
            replacement = null;
            break;
          }
        }
        if (named && stmtEnd > portalEnd + 1) {
          const stmt = this.prepareFor(conn, buf, portalEnd + 1, stmtEnd);
          if (stmt) {
            if (stmt.sessionChange !== null) {
              this.owner.changes.apply(conn, stmt.sessionChange, () => stmt.sql);
            }
            conn.expect(code, Action.Forward);
            if (portalEnd === start + HEADER) this.stageBind(stmt, buf, stmtEnd + 1, end);
            else this.emit(spliceName(buf, start, end, portalEnd + 1, stmtEnd, stmt.serverName));
            return;
          }
        }
        conn.expect(code, Action.Forward);
        break;
      }
      case FrontendCode.Describe: {
        if (end - start === HEADER + 2 && this.isLocalUnnamed(buf[start + HEADER])) {
          const statement = buf[start + HEADER] === 0x53;
          conn.expect(code, Action.Simulate, statement ? noParameters : msg.noData);
          replacement = null;
          break;
        }
        if (named && buf[start + HEADER] === 0x53 && end - start > HEADER + 2) {
          const stmt = this.prepareFor(conn, buf, start + HEADER + 1, end - 1);
          if (stmt) replacement = describeStatement(stmt);
        }
        conn.expect(code, Action.Forward);
        break;
      }
      case FrontendCode.Close:
        if (end - start === HEADER + 2 && this.isLocalUnnamed(buf[start + HEADER])) {
          if (buf[start + HEADER] === 0x53) this.localUnnamed = null;
          else this.localPortal = null;
          conn.expect(code, Action.Simulate, msg.closeComplete);
          replacement = null;
        } else if (named && buf[start + HEADER] === 0x53 && end - start > HEADER + 2) {
          // The server copy stays cached for other clients; the client's name is gone.
          this.owner.statements.delete(buf.toString("utf8", start + HEADER + 1, end - 1));
          conn.expect(code, Action.Simulate, msg.closeComplete);
          replacement = null;
        } else conn.expect(code, Action.Forward);
        break;
      case FrontendCode.Execute:
        if (this.localPortal !== null && buf[start + HEADER] === 0) {
          conn.expect(code, Action.Simulate, msg.commandComplete(this.localPortal));
          replacement = null;
          break;
        }
        conn.expect(code, Action.Forward);
        break;
      case FrontendCode.Sync:
      case FrontendCode.FunctionCall:
        conn.expect(code, Action.Forward);
        break;
      default:
        // Flush, CopyData, CopyDone, CopyFail: no reply of their own.
        break;
    }
    if (replacement === undefined) this.emitRange(buf, start, end);
    else if (replacement !== null) this.emit(replacement);
  }

  /**
   * DEALLOCATE of the client's own statement names, and DISCARD ALL, are answered by us: the
   * server never knew those names. Returns the command tag, or null to send the SQL on. A pinned
   * server's session has state of its own (SQL PREPARE, SET...): DEALLOCATE ALL and DISCARD ALL
   * go to it (the client's names are dropped all the same, see SessionChanges.apply).
   */
  private manageStatements(
    conn: BackendConnection,
    buf: Buffer,
    start: number,
    end: number,
  ): string | null {
    if (conn.skipping) return null; // the server skips it, and so must we
    const tag = this.owner.statements.applySql(buf, start, end, conn.txStatus === TxStatus.Idle);
    if (tag !== null && tag !== "DEALLOCATE" && conn.pinned) return null;
    return tag;
  }

  /** LISTEN / UNLISTEN inside a unit: the command tag when the pool's LISTEN server serves it. */
  private listenInUnit(
    conn: BackendConnection,
    buf: Buffer,
    start: number,
    end: number,
  ): string | null {
    const hub = this.owner.hub;
    if (hub === null) return null;
    const command = ClientListens.commandInUnit(conn, buf, start, end);
    return command === null ? null : this.owner.listens(hub).inUnit(command);
  }

  /** Whether a Describe/Close target ('S' or 'P', unnamed) is one we answered the Parse of. */
  private isLocalUnnamed(kind: number): boolean {
    return kind === 0x53 ? this.localUnnamed !== null : this.localPortal !== null;
  }

  /** A client Parse of a named statement: give it its content name; skip it where it exists. */
  private parseNamed(
    conn: BackendConnection,
    buf: Buffer,
    start: number,
    end: number,
    nameEnd: number,
  ): Buffer | null {
    const stmt = this.owner.statements.register(buf, start, end, nameEnd, true);
    const serverName = stmt.serverName;
    if (conn.hasStatement(serverName)) {
      this.owner.countStatement("hit");
      conn.expect(FrontendCode.Parse, Action.Simulate, msg.parseComplete);
      return null;
    }
    this.owner.countStatement("miss");
    this.evictFor(conn, serverName);
    conn.expectParse(serverName, Action.Forward);
    return stmt.parse;
  }

  /**
   * Makes sure the server has the client statement named by buf[nameStart, nameEnd), injecting a
   * Parse when it does not. The name is looked up by its bytes: nothing is decoded per execute.
   */
  private prepareFor(
    conn: BackendConnection,
    buf: Buffer,
    nameStart: number,
    nameEnd: number,
  ): ClientStatement | null {
    const stmt = this.owner.statements.lookup(buf, nameStart, nameEnd);
    if (stmt === undefined) return null; // unknown name: the server reports 26000 as Postgres would
    if (!conn.hasStatement(stmt.serverName)) {
      this.owner.countStatement("reprepare");
      this.evictFor(conn, stmt.serverName);
      conn.expectParse(stmt.serverName, Action.Ignore);
      this.emit(stmt.parse);
    }
    return stmt;
  }

  /** Closes the least recently used statements on a full server before preparing another. */
  private evictFor(conn: BackendConnection, keep: string): void {
    const victims = conn.evictFor(keep);
    for (const name of victims) this.emit(msg.close("S", name));
  }
}
