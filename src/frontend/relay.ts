// Relay: a client's frames on their way to its leased server. Each frame queues the replies it
// owes on the server (forwarded, ignored, or answered by us in stream order); named statements
// get content-derived server names, and a Parse is injected where the server lacks one; the
// client's settings are SET before its frames. A client chunk leaves in one write: its frames as
// one range of the chunk, or, around a rewritten frame (a renamed Bind), copied into a staging
// buffer; a full server buffer stops reading the client (DESIGN.md section 3, steps 3-4).

import type { BackendConnection } from "../backend/backend-connection.js";
import { Action } from "../backend/expected-responses.js";
import { ByteRun, copyBytes } from "../protocol/byte-run.js";
import { FrontendCode, TxStatus } from "../protocol/codes.js";
import * as msg from "../protocol/messages.js";
import { frontendMessageError } from "../protocol/validate.js";
import { ClientCloseReason, PinReason } from "../reasons.js";
import type { ClientSettings } from "./client-settings.js";
import {
  bindHead,
  type ClientStatement,
  type ClientStatements,
  describeStatement,
  spliceName,
} from "./client-statements.js";
import type { ClientWire } from "./client-wire.js";
import { ClientListens } from "./listens.js";
import { answerLocally, type LocalOwner } from "./local-answers.js";
import type { NotificationHub } from "./notification-hub.js";
import { noParameters } from "./replies.js";
import type { SessionChanges } from "./session-changes.js";
import type { StatementLookup } from "./session-context.js";
import type { Unit } from "./unit.js";
import type { UnitLoss } from "./unit-loss.js";

const HEADER = 5;
/** Frames up to this size are copied next to a rewritten frame (one write); larger go as views. */
const STAGE_COPY_MAX = 2048;
/** Size of the relay's staging buffer for rewritten frames. */
const STAGE_SIZE = 16384;

/** What the relay reads of its session, and the moves it asks the session to make. */
export interface RelayOwner extends LocalOwner {
  readonly lease: BackendConnection | null;
  readonly wire: ClientWire;
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

export class Relay {
  /** Frames to the server are coalesced: one range per client chunk unless one is rewritten. */
  private readonly run = new ByteRun();
  /**
   * Rewritten frames (a renamed Bind, an injected Parse) and the small client frames around them
   * are copied here, so that a chunk still leaves in one write. [0, stageStart) was written,
   * [stageStart, stageEnd) is not yet. Bytes are never overwritten while a write of them may be
   * queued: the buffer is reused from its start only when its holder's socket queue is empty.
   * While it has unwritten bytes the run is empty, and the other way round.
   */
  private stage: Buffer | null = null;
  private stageStart = 0;
  private stageEnd = 0;
  /** The server the stage's written bytes went to. */
  private stageHolder: BackendConnection | null = null;
  /** A client chunk is being scanned: server writes are corked until its end. */
  private scanning = false;
  private corked: BackendConnection | null = null;
  /** The unnamed statement / portal is a DEALLOCATE or DISCARD we answer: its command tag. */
  private localUnnamed: string | null = null;
  private localPortal: string | null = null;

  constructor(private readonly owner: RelayOwner) {}

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

  /** A client chunk is scanned from here to endChunk(). */
  beginChunk(): void {
    this.scanning = true;
  }

  endChunk(): void {
    this.scanning = false;
    this.uncork();
  }

  /** A bug broke off the chunk: nothing more is written for it. */
  abortChunk(): void {
    this.scanning = false;
  }

  /** The end of a client chunk's frames: the pending range leaves, in one write. */
  flush(): void {
    if (this.corked === null && this.scanning) {
      // Nothing written yet for this chunk: its one pending buffer (a range or the staged bytes,
      // never both) needs no cork around it.
      this.scanning = false;
      this.flushPending();
      this.scanning = true;
      return;
    }
    this.flushPending();
    this.uncork();
  }

  /**
   * `conn` was leased for the unit: settings, injected Parses and the unit so far leave in one
   * write (at the chunk's end while one is scanned).
   */
  sendUnit(conn: BackendConnection): void {
    this.applySettings(conn);
    this.owner.unit.sendTo((code, buf, start, end) => this.send(code, buf, start, end));
    // While a chunk is scanned its next frames join the pending range (one write at its end).
    if (!this.scanning) {
      this.flushPending();
      this.uncork();
    }
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

  // --- output: client ranges coalesced in `run`, rewritten frames copied into `stage` ----------

  /** Client frame bytes that go as they are. */
  private emitRange(buf: Buffer, start: number, end: number): void {
    const n = end - start;
    if (this.stageEnd > this.stageStart) {
      // After a rewritten frame: a small frame is copied beside it, a large one goes as a view.
      const stage = this.stage as Buffer;
      if (n <= STAGE_COPY_MAX && this.stageEnd + n <= stage.length) {
        this.stageEnd = copyBytes(stage, this.stageEnd, buf, start, end);
        return;
      }
      this.flushStage();
    }
    const previous = this.run.add(buf, start, end);
    if (previous !== null) this.write(previous);
  }

  /** Bytes of our own making (a Parse, a Describe, a Close): after what is pending, in order. */
  private emit(bytes: Buffer): void {
    if (bytes.length > STAGE_COPY_MAX) {
      this.flushPending();
      this.write(bytes);
      return;
    }
    const conn = this.owner.lease;
    if (conn === null) return;
    const at = this.reserve(bytes.length);
    this.stageEnd = copyBytes(this.stage as Buffer, at, bytes, 0, bytes.length);
  }

  /**
   * A client Bind to the unnamed portal of a renamed statement: our head (type, length, portal,
   * server name) and the client's frame after its statement name, buf[restStart, end), copied
   * into the stage with what is pending (one write for the chunk, nothing allocated).
   */
  private stageBind(stmt: ClientStatement, buf: Buffer, restStart: number, end: number): void {
    const head = bindHead(stmt);
    const rest = end - restStart;
    const copyRest = rest <= STAGE_COPY_MAX;
    let at = this.reserve(head.length + (copyRest ? rest : 0));
    const stage = this.stage as Buffer;
    const length = head.length + rest - 1;
    copyBytes(stage, at, head, 0, head.length);
    stage[at + 1] = length >>> 24;
    stage[at + 2] = (length >>> 16) & 0xff;
    stage[at + 3] = (length >>> 8) & 0xff;
    stage[at + 4] = length & 0xff;
    at += head.length;
    if (copyRest) {
      this.stageEnd = copyBytes(stage, at, buf, restStart, end);
      return;
    }
    this.stageEnd = at;
    this.flushStage();
    this.run.add(buf, restStart, end); // the run is empty: nothing returned
  }

  /**
   * Room for `n` more bytes in the stage, after what is pending: a small pending range is copied
   * in first (one write), a large one is written. Returns where the `n` bytes go.
   */
  private reserve(n: number): number {
    const pending = this.run.length;
    if (pending > STAGE_COPY_MAX) this.flushRun();
    const take = pending > STAGE_COPY_MAX ? 0 : pending;
    let stage = this.stage;
    if (stage !== null && this.stageStart === this.stageEnd && this.stageEnd > 0) {
      // Everything staged was written: start over once no socket may still be reading it.
      const holder = this.stageHolder;
      if (holder === null || holder.queuedBytes === 0) {
        this.stageStart = 0;
        this.stageEnd = 0;
        this.stageHolder = null;
      }
    }
    if (stage === null || this.stageEnd + take + n > stage.length) {
      this.flushStage();
      stage = Buffer.allocUnsafeSlow(Math.max(STAGE_SIZE, take + n));
      this.stage = stage;
      this.stageStart = 0;
      this.stageEnd = 0;
      this.stageHolder = null;
    }
    if (take > 0) this.stageEnd = this.run.copyTo(stage, this.stageEnd);
    return this.stageEnd;
  }

  /** The stage's unwritten bytes leave (as a view of it). */
  private flushStage(): void {
    if (this.stageEnd === this.stageStart) return;
    const conn = this.owner.lease;
    const stage = this.stage as Buffer;
    const bytes = stage.subarray(this.stageStart, this.stageEnd);
    this.stageStart = this.stageEnd;
    if (conn === null) return;
    const holder = this.stageHolder;
    if (holder !== null && holder !== conn && holder.queuedBytes > 0) {
      // Two sockets may read the stage: it is left to them, and a new one is made when needed.
      this.write(bytes);
      this.stage = null;
      this.stageStart = 0;
      this.stageEnd = 0;
      this.stageHolder = null;
      return;
    }
    this.stageHolder = conn;
    this.write(bytes);
  }

  private flushRun(): void {
    const range = this.run.take();
    if (range !== null) this.write(range);
  }

  /** Whatever is pending (a range or staged bytes; never both) leaves. */
  private flushPending(): void {
    this.flushRun();
    this.flushStage();
  }

  private write(bytes: Buffer): void {
    const conn = this.owner.lease;
    if (conn === null) return;
    // Everything one client chunk produces (a rewritten Bind, an injected Parse, the ranges
    // between them) leaves in one writev at the chunk's end.
    if (this.scanning) this.cork(conn);
    // A full server buffer: the client is not read until that server drains (or is gone: a
    // dead server never drains, so loss and release unblock too).
    if (!conn.write(bytes)) this.owner.wire.serverFull(conn);
  }

  private cork(conn: BackendConnection): void {
    if (this.corked === conn) return;
    this.uncork();
    conn.cork();
    this.corked = conn;
  }

  private uncork(): void {
    const conn = this.corked;
    if (conn === null) return;
    this.corked = null;
    conn.uncork();
  }
}
