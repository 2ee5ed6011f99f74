// UnitLoss: a unit whose server was lost is replayed on another server or failed with an
// ordinary error, and the client's connection lives on (DESIGN.md section 1). A transaction lost
// with its server is then answered as Postgres answers an aborted one: ROLLBACK ends it, anything
// else gets 25P02 (or 08006 while the loss is news to the client).

import type { BackendConnection } from "../backend/backend-connection.js";
import {
  DisconnectReason,
  lostConnectionError,
  type ProxyError,
  ProxyErrorReason,
  proxyError,
  resolutionUnknownError,
  type ServerError,
} from "../errors.js";
import type { Logger } from "../log.js";
import { FrontendCode, TxStatus } from "../protocol/codes.js";
import * as msg from "../protocol/messages.js";
import { ClientCloseReason, ReplayOutcome } from "../reasons.js";
import type { ClientStatements } from "./client-statements.js";
import type { ClientWire } from "./client-wire.js";
import { abortedTransactionError, errorFromServer } from "./replies.js";
import { type LostUnit, refusedBeforeRunning } from "./retry-policy.js";
import type { Route } from "./session-context.js";
import { classifyStatement } from "./statement-class.js";
import { mayCommit, transactionControl } from "./transaction-words.js";
import type { Unit } from "./unit.js";
import { countSyncs, frameText, unitTexts } from "./unit-frames.js";

/** What a loss reads of its session, and the moves it asks the session to make. */
export interface UnitLossOwner {
  readonly id: number;
  readonly log: Logger;
  readonly wire: ClientWire;
  readonly unit: Unit;
  readonly statements: ClientStatements;
  readonly route: Route | null;
  /** The client's transaction status, as last reported to it. */
  txStatus: number;
  /** The server is no longer the session's (lost, or given up for another). */
  letGo(conn: BackendConnection): void;
  /** What the unit's SETs did is unknown: they are sent again with a replay. */
  forgetUnitSettings(): void;
  /** The unit is over: UNLISTENs it held are applied. */
  unitOver(): void;
  /** No server and nothing in flight. */
  idle(): void;
  requestServer(): void;
  flushClient(): void;
  reportError(err: ProxyError): void;
  countClientError(sqlstate: string): void;
  countReplay(outcome: ReplayOutcome): void;
  close(reason: ClientCloseReason): void;
}

export class UnitLoss {
  /** Discard the client's messages up to the next Sync (after an error we reported). */
  private skipToSync = false;
  /** The server was lost inside a transaction: answer ROLLBACK ourselves, 25P02 to the rest. */
  private aborted = false;
  /** The loss of the transaction has not been reported to the client yet. */
  private lostUnreported = false;
  /** A ROLLBACK or COMMIT whose Parse (or Bind) we answered: its Execute ends the transaction. */
  private pendingAbortEnd: "ROLLBACK" | "COMMIT" | null = null;

  constructor(private readonly owner: UnitLossOwner) {}

  /**
   * The session's server died while leased: replay the unit, fail it, or (pinned) close the
   * client. `conn` was already let go.
   */
  serverLost(conn: BackendConnection, reason: DisconnectReason, error: ServerError | null): void {
    const { owner } = this;
    const unit = owner.unit;
    owner.log.info(
      {
        client: owner.id,
        server: conn.id,
        reason,
        sqlstate: error?.sqlstate,
        pool: owner.route?.pool.key,
        in_unit: unit.open,
        in_transaction: conn.txStatus !== TxStatus.Idle,
        reply_forwarded: unit.forwarded,
        replied: unit.replied,
        reset_by_peer: conn.resetByPeer,
        owed: conn.owedReadyForQuery(),
        unit_bytes: unit.bytes,
      },
      "server lost while serving client",
    );
    owner.route?.pool.giveBack(conn, "destroy", reason);
    owner.forgetUnitSettings();
    if (unit.holding) unit.dropHeld();
    else unit.flushOut();
    const owed = conn.owedReadyForQuery();
    const inTransaction = conn.txStatus !== TxStatus.Idle;
    conn.forgetOwedReplies();
    if (owner.route?.mode === "transaction" && conn.pinned) {
      this.closeForLostState(conn);
      return;
    }
    if (!unit.open) {
      // Nothing in flight. A transaction the client holds open is gone: it learns at its next statement.
      if (inTransaction) {
        this.aborted = true;
        this.lostUnreported = true;
        owner.txStatus = TxStatus.Failed;
      }
      owner.idle();
      owner.flushClient();
      return;
    }
    const policy = owner.route?.retry;
    const kept = unit.overflow ? null : unit.keptFrames();
    // 8192: Postgres reads client input in 8 kB pieces (PQ_RECV_BUFFER_SIZE).
    const resetBeforeRead = conn.resetByPeer && owed === 1 && unit.bytes <= 8192;
    const statementText = (name: string) => owner.statements.get(name)?.sql;
    const uncommitted =
      owed === 0 &&
      kept !== null &&
      !unitTexts(kept, statementText).some((t) => t === null || mayCommit(t));
    const lostUnit: LostUnit = {
      unit: kept,
      written: conn.bytesSent > 0,
      replied: unit.replied,
      resetBeforeRead,
      uncommitted,
      replays: unit.replays,
      error,
      statementText,
    };
    if (!inTransaction && policy) {
      // Part of its reply reached the client: never replayed, whatever the policy.
      const verdict = unit.forwarded ? ReplayOutcome.NotRetryable : policy.decide(lostUnit);
      if (verdict === "replay") {
        const attempt = unit.replay();
        owner.log.info({ client: owner.id, attempt }, "replaying unit on another server");
        owner.requestServer();
        return;
      }
      // gave_up is counted by fail() (unit.replays > 0), once.
      if (verdict === ReplayOutcome.NotRetryable) owner.countReplay(ReplayOutcome.NotRetryable);
    }
    const outcome = this.outcome(lostUnit, inTransaction);
    this.fail(outcome.error, outcome.status, owed);
  }

  /**
   * The unit got 25006 from a server that reported, before its ReadyForQuery, that it is no longer
   * a writer (a failover): the refusal came before anything ran, and a read-only server wrote
   * nothing, so the unit goes to the writer instead, its held replies dropped. Only a unit none
   * of whose reply reached the client, under a retry policy, within retry_max.
   */
  replayOnWriter(conn: BackendConnection): boolean {
    const { owner } = this;
    const policy = owner.route?.retry;
    const unit = owner.unit;
    if (!unit.holding || unit.forwarded || unit.overflow || !policy) return false;
    if (policy.mode === "off" || unit.replays >= policy.maxReplays) return false;
    owner.letGo(conn);
    owner.route?.pool.giveBack(conn, "destroy", DisconnectReason.RoleChanged);
    unit.dropHeld();
    owner.forgetUnitSettings();
    const attempt = unit.replay();
    owner.log.info(
      { client: owner.id, server: conn.id, attempt },
      "server turned read-only (25006): replaying the unit on the writer",
    );
    owner.requestServer();
    return true;
  }

  /**
   * What the client is told about a unit its server died under (DESIGN.md section 1): work that
   * certainly did not run was simply lost (08006); a transaction that ended with the server was
   * rolled back, unless the unit may have committed it, whose outcome is unknown (08007).
   */
  private outcome(lost: LostUnit, inTransaction: boolean): { error: ProxyError; status: number } {
    const unit = this.owner.unit;
    const certainlyNotRun =
      !lost.written ||
      lost.uncommitted ||
      (!lost.replied && (lost.resetBeforeRead || refusedBeforeRunning(lost.error)));
    if (certainlyNotRun) {
      return {
        error: lostConnectionError(inTransaction),
        status: inTransaction ? TxStatus.Failed : TxStatus.Idle,
      };
    }
    const texts = unitTexts(unit.keptFrames(), lost.statementText);
    const commits = unit.overflow || texts.some((t) => t === null || mayCommit(t));
    if (inTransaction) {
      return commits
        ? { error: resolutionUnknownError(), status: TxStatus.Idle }
        : { error: lostConnectionError(true), status: TxStatus.Failed };
    }
    const first = texts[0];
    if (
      !commits &&
      first !== null &&
      first !== undefined &&
      transactionControl(first) === "begin"
    ) {
      // The unit opened a transaction and never ended it: that transaction is gone.
      return { error: lostConnectionError(true), status: TxStatus.Failed };
    }
    const readOnly =
      !unit.overflow && texts.every((t) => t !== null && classifyStatement(t) === "read_only");
    return readOnly
      ? { error: lostConnectionError(false), status: TxStatus.Idle }
      : { error: resolutionUnknownError(), status: TxStatus.Idle };
  }

  /**
   * The backend of a pinned client died: the state it held (a role, a lock, temp tables) cannot
   * be rebuilt elsewhere, so the client must know its session is gone. Its work is not replayed.
   */
  private closeForLostState(conn: BackendConnection): void {
    const { owner } = this;
    const pins = [...conn.pins].join(", ");
    owner.log.info({ client: owner.id, server: conn.id, pins }, "pinned server lost");
    owner.unit.dropHeld();
    owner.unit.end();
    const err = proxyError(
      ProxyErrorReason.PinnedStateLost,
      `the server connection was lost with session state pgsidecar cannot restore (${pins})`,
      "The session's state was lost with its server; reconnect and set it up again.",
    );
    owner.countClientError(err.sqlstate);
    owner.wire.write(err.toMessage());
    owner.flushClient();
    owner.close(ClientCloseReason.ServerLost);
  }

  /**
   * Ends the current unit with a non-fatal error: one ErrorResponse + ReadyForQuery per Sync
   * owed (`owed` < 0: counted from the unit's frames).
   */
  fail(err: ProxyError | ServerError, status: number, owed = -1): void {
    const { owner } = this;
    const unit = owner.unit;
    if (owed < 0) owed = countSyncs(unit.keptFrames());
    // A server's FATAL (e.g. its password changed) is reported as an ERROR: this connection lives on.
    const error = "raw" in err ? errorFromServer(err) : err.toMessage();
    unit.stopHolding();
    for (let i = 0; i < owed; i++) {
      owner.countClientError(err.sqlstate);
      owner.wire.write(error);
      owner.wire.write(msg.readyForQuery(status));
    }
    if (owed === 0) {
      // Only Flush-terminated work was pending: report once and skip to the client's next Sync.
      owner.countClientError(err.sqlstate);
      owner.wire.write(error);
      this.skipToSync = true;
    }
    // A transaction that ended as failed is answered by us until the client's ROLLBACK.
    this.aborted = status === TxStatus.Failed;
    owner.txStatus = status;
    if (unit.replays > 0) owner.countReplay(ReplayOutcome.GaveUp);
    owner.unitOver();
    unit.end();
    owner.idle();
    owner.wire.resumeAfterUnit();
    owner.flushClient();
  }

  /**
   * Client messages answered because of an earlier loss or error we reported: skipped up to the
   * next Sync, or answered as in an aborted transaction. True when the message was consumed.
   */
  intercept(code: number, buf: Buffer, start: number, end: number): boolean {
    if (this.skipToSync) {
      if (code === FrontendCode.Sync) {
        this.skipToSync = false;
        this.owner.wire.write(msg.readyForQuery(this.owner.txStatus));
      }
      return true;
    }
    if (!this.aborted) return false;
    this.answerAborted(code, buf, start, end);
    return true;
  }

  /**
   * After the server was lost mid-transaction, behave as Postgres does in an aborted transaction:
   * ROLLBACK is answered, anything else gets 25P02. The first statement after a loss the client
   * has not been told about gets 08006 instead, and so does a COMMIT: a client must never believe
   * a lost transaction committed.
   */
  private answerAborted(code: number, buf: Buffer, start: number, end: number): void {
    const { owner } = this;
    const wire = owner.wire;
    if (code === FrontendCode.Sync) {
      wire.write(msg.readyForQuery(owner.txStatus));
      return;
    }
    if (code === FrontendCode.Flush) return;
    if (
      this.pendingAbortEnd !== null &&
      (code === FrontendCode.Bind ||
        code === FrontendCode.Execute ||
        code === FrontendCode.Describe)
    ) {
      // Bind / Describe / Execute of the ROLLBACK or COMMIT whose Parse (or Bind) we answered.
      if (code === FrontendCode.Bind) wire.write(msg.bindComplete);
      else if (code === FrontendCode.Describe) wire.write(msg.noData);
      else this.endAborted(this.pendingAbortEnd, true);
      return;
    }
    // A Bind may run a named statement prepared earlier (psycopg names its ROLLBACK at
    // prepare_threshold).
    const sql = frameText(code, buf, start, end, (name) => owner.statements.get(name)?.sql);
    // Only a full ROLLBACK ends the lost transaction; Postgres answers COMMIT (and PREPARE
    // TRANSACTION) in an aborted transaction with ROLLBACK. Savepoints died with the server:
    // ROLLBACK TO, RELEASE and SAVEPOINT get 25P02 like any other statement.
    const control = sql == null ? "other" : transactionControl(sql);
    if (control === "rollback" || control === "commit" || control === "prepare_transaction") {
      const tag = control === "rollback" ? "ROLLBACK" : "COMMIT";
      if (code === FrontendCode.Parse || code === FrontendCode.Bind) {
        this.pendingAbortEnd = tag;
        wire.write(code === FrontendCode.Parse ? msg.parseComplete : msg.bindComplete);
        return;
      }
      this.endAborted(tag, false);
      return;
    }
    owner.reportError(this.lostUnreported ? lostConnectionError(true) : abortedTransactionError());
    this.lostUnreported = false;
    if (code !== FrontendCode.Query) this.skipToSync = true;
    else wire.write(msg.readyForQueryFailed);
  }

  /** Ends the aborted transaction: ROLLBACK as asked, or COMMIT refused if the loss is news. */
  private endAborted(tag: "ROLLBACK" | "COMMIT", extended: boolean): void {
    const { owner } = this;
    if (tag === "COMMIT" && this.lostUnreported) owner.reportError(lostConnectionError(true));
    else owner.wire.write(msg.commandComplete("ROLLBACK"));
    this.aborted = false;
    this.lostUnreported = false;
    this.pendingAbortEnd = null;
    owner.txStatus = TxStatus.Idle;
    if (extended) return; // its Sync is answered with ReadyForQuery('I') below
    owner.wire.write(msg.readyForQueryIdle);
  }
}
