// ServerSession: what a server's session holds, as we track it: the replies it owes (forward,
// ignore, simulate), the statements it has prepared, the settings we SET on it, the pins that tie
// it to its client, and whether it sits in an implicit transaction or skips to Sync after an
// error. Only these methods change it; BackendConnection adds the socket and the relay on top.

import { BackendCode, FrontendCode } from "../protocol/codes.js";
import type { PinReason } from "../reasons.js";
import { Action, ExpectedResponses, type OwedReplies } from "./expected-responses.js";
import { type KnownStatements, PreparedStatementCache } from "./prepared-statements.js";
import { isTerminal } from "./server-messages.js";

const NOTHING_TO_EVICT: readonly string[] = [];

export class ServerSession {
  /** The replies owed for what was sent, in order. */
  protected readonly owed = new ExpectedResponses();
  /** An extended-protocol error was answered and no Sync has been sent since. */
  protected skippingToSync = false;
  private readonly statementCache: PreparedStatementCache;
  /** Settings we SET on this server that it does not report (statement_timeout, ...). */
  private readonly serverSettings = new Map<string, string>();
  /** Session state that ties this server to its client (pins), by reason. */
  private readonly pinReasons = new Set<string>();
  /**
   * Session state was undone by a client statement that may not have succeeded (RESET ROLE in a
   * transaction rolled back, DISCARD ALL refused): reset the server before another client.
   */
  private resetNeeded = false;
  /**
   * Extended-protocol messages were sent after the last Sync: the server may hold an implicit
   * transaction (locks, uncommitted writes) that only a Sync would end. Such a server is never
   * reused by another client: a Sync would commit work nobody acknowledged.
   */
  private unsyncedWork = false;
  /**
   * The shared client settings record this server was last found to match (see
   * ClientSettings.sqlFor): checking again is skipped until our record of the server changes.
   */
  private matchedSettings: object | null = null;

  constructor(maxPreparedStatements: number, knownStatements: KnownStatements | null) {
    this.statementCache = new PreparedStatementCache(maxPreparedStatements, knownStatements);
  }

  /** Settings we SET on this server that it does not report, by lower-case name. */
  get settings(): ReadonlyMap<string, string> {
    return this.serverSettings;
  }

  /** The replies still owed for what was sent. */
  get expected(): OwedReplies {
    return this.owed;
  }

  /** The statements this server has prepared (content names). */
  get prepared(): { readonly size: number } {
    return this.statementCache;
  }

  /** Session state that ties this server to its client, by reason (PinReason). */
  get pins(): ReadonlySet<string> {
    return this.pinReasons;
  }

  /** Session state ties this server to its client (see `pins`). */
  get pinned(): boolean {
    return this.pinReasons.size > 0;
  }

  /** Session state was undone by a statement that may have failed: reset before another client. */
  get needsReset(): boolean {
    return this.resetNeeded;
  }

  /**
   * The server is skipping messages until the next Sync (an extended-protocol error): a Close we
   * send now would not run, so the pool must not evict statements it believes closed.
   */
  get skipping(): boolean {
    return this.skippingToSync;
  }

  /** Extended-protocol messages went out after the last Sync (see `unsyncedWork`). */
  get unsynced(): boolean {
    return this.unsyncedWork;
  }

  /** The server still owes replies to messages sent to it. */
  get owesReplies(): boolean {
    return !this.owed.empty;
  }

  /** ReadyForQuery messages the server still owes the client (its Syncs, Queries, FunctionCalls). */
  owedReadyForQuery(): number {
    return this.owed.pendingReadyForQuery();
  }

  /** The server died with replies owed: none will come (its client is told by other means). */
  forgetOwedReplies(): void {
    this.owed.clear();
  }

  /**
   * Records the reply owed for a message about to be written (forwarded, ignored because we
   * injected the request, or simulated by us in stream order). After an extended-protocol error
   * the server skips every message until Sync, and owes nothing for them: neither do we.
   */
  expect(code: number, action: Action, payload: Buffer | string | null = null): void {
    if (this.skippingToSync) {
      if (code !== FrontendCode.Sync) {
        if (code === FrontendCode.Parse && typeof payload === "string") {
          this.statementCache.forget(payload);
        }
        return;
      }
      this.skippingToSync = false;
    }
    this.owed.push(code, action, payload);
  }

  /**
   * A client frame goes out. Extended-protocol messages leave the server in an implicit
   * transaction that only a Sync, or a simple Query the server does not skip, ends.
   */
  trackClientFrame(code: number): void {
    switch (code) {
      case FrontendCode.Parse:
      case FrontendCode.Bind:
      case FrontendCode.Execute:
      case FrontendCode.Describe:
      case FrontendCode.Close:
        this.unsyncedWork = true;
        return;
      case FrontendCode.Query:
        if (!this.skippingToSync) this.unsyncedWork = false; // a skipped Query ends nothing
        return;
      case FrontendCode.Sync:
      case FrontendCode.FunctionCall:
        this.unsyncedWork = false;
        return;
    }
  }

  /**
   * A reply of type `code` arrived for the request at the head of the queue. When it completes
   * that request, the request leaves the queue, with (after an extended-protocol error) every
   * request up to the next Sync, which the server skips. True when a request was completed.
   */
  protected settle(code: number): boolean {
    const ex = this.owed;
    const headCode = ex.headCode;
    if (!isTerminal(headCode, code)) return false;
    this.settleParse(headCode, code);
    ex.shift();
    if (code === BackendCode.ErrorResponse && headCode !== FrontendCode.Sync) {
      while (!ex.empty && ex.headCode !== FrontendCode.Sync) {
        this.settleParse(ex.headCode, BackendCode.ErrorResponse);
        ex.shift();
      }
      // No Sync sent yet: what the client sends until its Sync is skipped by the server too.
      if (ex.empty) this.skippingToSync = true;
    }
    if (code === BackendCode.ReadyForQuery) this.skippingToSync = false;
    return true;
  }

  /** A Parse we sent is settled: remember the statement as prepared here, or forget it. */
  private settleParse(headCode: number, replyCode: number): void {
    if (headCode !== FrontendCode.Parse) return;
    const name = this.owed.headPayload;
    if (typeof name !== "string") return;
    if (replyCode === BackendCode.ParseComplete) this.statementCache.confirm(name);
    else this.statementCache.forget(name);
  }

  /** Ties this server to its client for `reason`; true when the reason is new. */
  pin(reason: PinReason): boolean {
    if (this.pinReasons.has(reason)) return false;
    this.pinReasons.add(reason);
    return true;
  }

  /**
   * Session state was undone (RESET ROLE, UNLISTEN *, DISCARD ALL) by a statement that may not
   * have succeeded: the pin goes, and the server is reset before another client gets it.
   */
  unpin(reason: PinReason | "all"): void {
    if (reason === "all") this.pinReasons.clear();
    else this.pinReasons.delete(reason);
    this.resetNeeded = true;
  }

  hasStatement(serverName: string): boolean {
    return this.statementCache.has(serverName);
  }

  /** A Parse of `serverName` goes out: the client's (forwarded) or one we inject (ignored). */
  expectParse(serverName: string, action: Action): void {
    this.statementCache.expect(serverName);
    this.expect(FrontendCode.Parse, action, serverName);
  }

  /**
   * Makes room for `keep` on a full server: the statements to Close now, each owing a
   * CloseComplete we ignore. None while the server skips to Sync: a skipped Close frees nothing.
   */
  evictFor(keep: string): readonly string[] {
    if (this.skippingToSync) return NOTHING_TO_EVICT;
    const victims = this.statementCache.evictFor(1, keep);
    for (let i = 0; i < victims.length; i++) this.expect(FrontendCode.Close, Action.Ignore);
    return victims;
  }

  /** The server's prepared statements are gone (DISCARD ALL, DEALLOCATE ALL): reset before reuse. */
  forgetStatements(): void {
    this.statementCache.clear();
    this.resetNeeded = true;
  }

  /** A reset query (ROLLBACK, DISCARD ALL, server_reset_query) is about to run: no pin survives it. */
  startReset(): void {
    this.pinReasons.clear();
    this.resetNeeded = false;
  }

  /** The reset `sql` succeeded: our record of the session (statements, settings) follows it. */
  resetDone(sql: string): void {
    const upper = sql.toUpperCase();
    if (upper.includes("DISCARD ALL")) this.statementCache.clear();
    if (upper.includes("DISCARD ALL") || upper.includes("RESET ALL")) this.serverSettings.clear();
    this.matchedSettings = null;
  }

  /** Whether the server was found to match the settings record `key` and has not changed since. */
  matchesSettings(key: object): boolean {
    return this.matchedSettings === key;
  }

  /** The server matches the (never written) settings record `key` as of now. */
  rememberSettingsMatch(key: object): void {
    this.matchedSettings = key;
  }

  /** What the server reports or has set changed: a remembered match no longer holds. */
  protected settingsChanged(): void {
    this.matchedSettings = null;
  }

  /** The statement that set parameter `lc` (lower case) here, as we recorded it. */
  settingStatement(lc: string): string | undefined {
    return this.serverSettings.get(lc);
  }

  settingNames(): IterableIterator<string> {
    return this.serverSettings.keys();
  }

  recordSetting(lc: string, statement: string): void {
    this.serverSettings.set(lc, statement);
    this.matchedSettings = null;
  }

  forgetSetting(lc: string): void {
    this.serverSettings.delete(lc);
    this.matchedSettings = null;
  }

  forgetSettings(): void {
    this.serverSettings.clear();
    this.matchedSettings = null;
  }
}
