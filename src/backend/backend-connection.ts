// BackendConnection: one upstream socket. Logs in, then scans the server's messages by header and
// passes them to whoever holds the lease; it knows the transaction status, what replies are still
// owed, and whether it is fit for reuse (`bad`).

import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { md5Password } from "../auth/md5.js";
import { ScramClientExchange, ScramError } from "../auth/scram-sha-256.js";
import * as clock from "../clock.js";
import type { PasswordWithoutTls, UpstreamTarget } from "../config/schema.js";
import {
  DisconnectReason,
  ProxyError,
  reasonForFatal,
  type ServerError,
  serverErrorFrom,
} from "../errors.js";
import { isLoopbackHost } from "../loopback.js";
import { AuthCode, BackendCode, FrontendCode, TxStatus } from "../protocol/codes.js";
import { FrameScanner, type FrameSink, streamedCodes } from "../protocol/frame-scanner.js";
import * as msg from "../protocol/messages.js";
import type { PinReason } from "../reasons.js";
import { Action, ExpectedResponses, type OwedReplies } from "./expected-responses.js";
import { enableKeepalive, type KeepaliveSettings } from "./keepalive.js";
import { type KnownStatements, PreparedStatementCache } from "./prepared-statements.js";
import { roleFits, serverRole } from "./upstream.js";

/** Whoever holds a backend (a client session, or the pool's own check/reset) hears its replies. */
export interface BackendListener {
  /** Server bytes to pass on to the client, as a range of a received chunk. */
  forward(buf: Buffer, start: number, end: number): void;
  /** Server bytes that are not part of any reply (notices, notifications, parameter changes). */
  forwardAsync(buf: Buffer, start: number, end: number): void;
  /** Whatever was held back must reach the client now (it has to act on it). */
  mustFlush?(): void;
  /** A reply we answer ourselves (ParseComplete, CloseComplete), in stream order. */
  insert(bytes: Buffer): void;
  /** The end of one received chunk: flush what was forwarded. */
  chunkEnd(): void;
  /** A ReadyForQuery after which nothing more is owed. */
  ready(status: number): void;
  /** A ReadyForQuery of a pipeline with more Syncs still owed. */
  synced?(status: number): void;
  /** An ErrorResponse that names a server-side statement (pgsc_...): the client knows another. */
  renamedError?(buf: Buffer, start: number, end: number): void;
  /** A NotificationResponse from a NOTIFY this server itself ran (it carries the server's pid). */
  ownNotification?(buf: Buffer, start: number, end: number): void;
  /** A ParameterStatus from the server (recorded in `params`; forwarded by us unless `ignored`). */
  parameter?(name: string, value: string, ignored: boolean): void;
  /** The connection died while leased. */
  lost(reason: DisconnectReason, error: ServerError | null): void;
}

export interface BackendOptions {
  target: UpstreamTarget;
  /** The host name dialled (of several in a multi-host upstream), for TLS server identity. */
  hostName?: string;
  /** The address to dial this time (DNS is re-resolved by the caller for every connection). */
  address: { host: string; port: number } | { path: string };
  user: string;
  password: string | null;
  database: string;
  connectTimeoutMs: number;
  keepalive: KeepaliveSettings;
  maxPreparedStatements: number;
  /** The pool's record of statements any of its servers accepted. */
  knownStatements?: KnownStatements;
  applicationName?: string;
  /**
   * Whether a cleartext or md5 password may go over TCP without TLS: never, to a loopback address
   * only (the default), or always (server_password_without_tls). Unix sockets always may.
   */
  passwordWithoutTls?: PasswordWithoutTls;
  /** Most PBKDF2 iterations a server's SCRAM challenge may ask for (server_scram_max_iterations). */
  maxScramIterations?: number;
}

const NOTHING_TO_EVICT: readonly string[] = [];
const BACKEND_STREAMED = streamedCodes(BackendCode.DataRow, BackendCode.CopyData);
/** Server messages are trusted but bounded: 1 GB is Postgres's own limit on a field. */
const MAX_SERVER_MESSAGE = 0x40000000 + 1024;

let nextId = 1;

export class BackendConnection implements FrameSink {
  readonly id = nextId++;
  /** ParameterStatus values as this server last reported them. */
  readonly params = new Map<string, string>();
  pid = 0;
  secret: Buffer = Buffer.alloc(0);
  txStatus: number = TxStatus.Idle;
  readonly createdAt = clock.now();
  /** When the connection last went idle in the pool; drives server_idle_timeout. */
  idleSince = clock.now();
  /** When bytes last arrived from the server: proof of life (server_check_delay, response_timeout). */
  lastReceivedAt = clock.now();
  /** When bytes were last written to the server. */
  lastSentAt = 0;
  /** Set once the connection must not be reused; the reason is recorded when it closes. */
  bad = false;
  closeReason: DisconnectReason | null = null;
  listener: BackendListener | null = null;
  /**
   * The server's kernel reset the connection: the server closed with bytes of ours unread (or
   * was gone before they arrived). Linux sends a FIN, not a reset, when everything was read.
   */
  resetByPeer = false;
  /** ErrorResponses received while leased (did a unit end cleanly?). */
  errors = 0;
  /** 25006 read_only_sql_transaction errors received (a failover's refusal, if the role changed). */
  readOnlyRefusals = 0;
  /** The server reported a role that no longer fits target_session_attrs (it is retired). */
  roleMismatch = false;
  /** Bytes written since the lease began (for "was anything sent" decisions). */
  bytesSent = 0;
  /** Called once when the connection is gone, whatever the cause. */
  onClose: ((conn: BackendConnection) => void) | null = null;

  /**
   * Extended-protocol messages were sent after the last Sync: the server may hold an implicit
   * transaction (locks, uncommitted writes) that only a Sync would end. Such a server is never
   * reused by another client: a Sync would commit work nobody acknowledged.
   */
  private unsyncedWork = false;
  // The session state below changes only through this class's methods (expect, pin, unpin,
  // recordSetting, startReset, ...); others read it through the getters.
  /** Settings we SET on this server that it does not report (statement_timeout, ...). */
  private readonly serverSettings = new Map<string, string>();
  /** The replies owed for what was sent, in order. */
  private readonly owed = new ExpectedResponses();
  private readonly statementCache: PreparedStatementCache;
  /** Session state that ties this server to its client (pins), by reason. */
  private readonly pinReasons = new Set<string>();
  /**
   * Session state was undone by a client statement that may not have succeeded (RESET ROLE in a
   * transaction rolled back, DISCARD ALL refused): reset the server before another client.
   */
  private resetNeeded = false;
  private socket: net.Socket | null = null;
  private readonly scanner = new FrameScanner(MAX_SERVER_MESSAGE, BACKEND_STREAMED);
  private loggedIn = false;
  /** Action applied to the pieces of a streamed message still arriving. */
  private streamAction: Action = Action.Forward;
  private fatal: ServerError | null = null;
  private closed = false;
  private scram: ScramClientExchange | null = null;
  private loginResolve: (() => void) | null = null;
  private loginReject: ((err: Error) => void) | null = null;

  constructor(readonly options: BackendOptions) {
    this.statementCache = new PreparedStatementCache(
      options.maxPreparedStatements,
      options.knownStatements ?? null,
    );
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

  /** Session state was undone by a statement that may have failed: reset before another client. */
  get needsReset(): boolean {
    return this.resetNeeded;
  }

  get address(): string {
    const a = this.options.address;
    return "path" in a ? a.path : `${a.host}:${a.port}`;
  }

  /** Opens the socket (with TLS per sslmode) and logs in. Rejects with ServerError or ProxyError. */
  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = clock.after(this.options.connectTimeoutMs, () => {
        this.fail(
          new ProxyError("connect_timeout", "08006", "timeout while connecting to the server"),
          DisconnectReason.ConnectTimeout,
        );
      });
      this.loginResolve = () => {
        clock.cancel(timer);
        resolve();
      };
      this.loginReject = (err) => {
        clock.cancel(timer);
        reject(err);
      };
      const a = this.options.address;
      const sock =
        "path" in a ? net.connect({ path: a.path }) : net.connect({ host: a.host, port: a.port });
      sock.setNoDelay(true);
      this.attach(sock);
      sock.once("connect", () => {
        if (!("path" in a)) enableKeepalive(sock, this.options.keepalive);
        const sslmode = this.options.target.sslmode;
        if (sslmode === "disable" || "path" in a) this.sendStartup();
        else sock.write(msg.sslRequestPacket);
      });
      this.awaitingSslAnswer = this.options.target.sslmode !== "disable" && !("path" in a);
    });
  }

  private awaitingSslAnswer = false;
  /** An extended-protocol error was answered and no Sync has been sent since. */
  private skippingToSync = false;

  private attach(sock: net.Socket): void {
    this.socket = sock;
    sock.on("data", (chunk: Buffer) => this.onData(chunk));
    sock.on("error", (err: NodeJS.ErrnoException) => this.onSocketGone(err));
    sock.on("close", () => this.onSocketGone(null));
    sock.on("end", () => sock.destroy());
  }

  /** A bug met while handling this server's bytes (the connection was destroyed for it). */
  internalError: Error | null = null;

  private onData(chunk: Buffer): void {
    try {
      this.lastReceivedAt = clock.now();
      if (this.awaitingSslAnswer) {
        this.awaitingSslAnswer = false;
        this.onSslAnswer(chunk);
        return;
      }
      this.scanner.push(chunk, this);
    } catch (err) {
      // Last resort: nothing escapes a socket handler (it would end the process). Only this
      // connection goes; its client hears of a lost server, the pool counts and logs the reason.
      if (this.internalError !== null) return;
      this.internalError = err instanceof Error ? err : new Error(String(err));
      try {
        this.fail(
          new ProxyError("internal_error", "XX000", "internal error in pgsidecar"),
          DisconnectReason.ProtocolError,
        );
      } catch {
        this.socket?.destroy(); // the listener failed as well: at least the socket goes
      }
    }
  }

  private onSslAnswer(chunk: Buffer): void {
    const answer = chunk[0];
    if (chunk.length > 1) {
      // Bytes after the one-byte answer would be injected by a man in the middle (CVE-2021-23222).
      this.fail(
        new ProxyError("ssl_protocol", "08P01", "received unencrypted data after SSL response"),
        DisconnectReason.ProtocolError,
      );
      return;
    }
    const { sslmode, sslrootcert } = this.options.target;
    const host = this.options.hostName ?? this.options.target.host;
    if (answer !== 0x53) {
      if (sslmode === "prefer") return this.sendStartup();
      this.fail(
        new ProxyError("ssl_refused", "08006", "server does not support SSL, but SSL was required"),
        DisconnectReason.LoginFailed,
      );
      return;
    }
    const plain = this.socket as net.Socket;
    plain.removeAllListeners("data");
    plain.removeAllListeners("close");
    plain.removeAllListeners("error");
    plain.removeAllListeners("end");
    const verify = sslmode === "verify-ca" || sslmode === "verify-full";
    let ca: Buffer | undefined;
    if (sslrootcert) {
      try {
        ca = readFileCached(sslrootcert);
      } catch (err) {
        this.fail(
          new ProxyError(
            "ssl_root_cert",
            "08006",
            `cannot read sslrootcert: ${(err as Error).message}`,
          ),
          DisconnectReason.LoginFailed,
        );
        return;
      }
    }
    const secure = tls.connect({
      socket: plain,
      servername: net.isIP(host) ? undefined : host,
      rejectUnauthorized: verify,
      ca,
      checkServerIdentity: sslmode === "verify-full" ? tls.checkServerIdentity : () => undefined,
    });
    secure.setNoDelay?.(true);
    this.attach(secure);
    secure.once("secureConnect", () => this.sendStartup());
  }

  private sendStartup(): void {
    const params: Record<string, string> = {
      user: this.options.user,
      database: this.options.database,
    };
    if (this.options.applicationName) params.application_name = this.options.applicationName;
    this.socket?.write(msg.startupMessage(params));
  }

  // --- FrameSink -------------------------------------------------------------------------------

  onMessage(code: number, buf: Buffer, start: number, end: number): void {
    if (!this.loggedIn) return this.onLoginMessage(code, buf, start, end);
    const l = this.listener;
    if (l === null) return this.onIdleMessage(code, buf, start, end);

    switch (code) {
      case BackendCode.NoticeResponse:
        // "terminating connection because of crash of another server process" (57P02) precedes
        // the close: the client will hear of the loss through us, not through a stray warning.
        if (errorCodeIs(buf, start, end, "57P02")) return;
        l.forwardAsync(buf, start, end);
        return;
      case BackendCode.NotificationResponse:
        // A NOTIFY the client's own session sent names the client's (proxy-issued) pid.
        if (l.ownNotification && end - start >= 9 && buf.readInt32BE(start + 5) === this.pid) {
          l.ownNotification(buf, start, end);
        } else l.forwardAsync(buf, start, end);
        return;
      case BackendCode.ParameterStatus: {
        const ignored = !this.owed.empty && this.owed.headAction === Action.Ignore;
        this.recordParameter(buf, start, end, l, ignored);
        if (!ignored) l.forwardAsync(buf, start, end);
        return;
      }
      case BackendCode.ErrorResponse:
        if (this.isFatal(buf, start, end)) {
          this.fatal = serverErrorFrom(buf, start, end);
          this.bad = true;
          return; // never forwarded: the close that follows is reported as a lost connection
        }
        this.errors++;
        if (errorCodeIs(buf, start, end, "25006")) this.readOnlyRefusals++;
        break;
    }

    this.emitSimulated(l);
    const ex = this.owed;
    if (ex.empty) {
      // Nothing owed (e.g. after a client's CopyDone the server still completes): pass it on.
      l.forward(buf, start, end);
      return;
    }
    const action = ex.headAction;
    this.streamAction = action;
    // Errors always reach the client, even for requests we injected (a re-Parse that now fails).
    if (
      code === BackendCode.ErrorResponse &&
      l.renamedError &&
      namesServerStatement(buf, start, end)
    ) {
      l.renamedError(buf, start, end);
    } else if (action === Action.Forward || code === BackendCode.ErrorResponse) {
      l.forward(buf, start, end);
    }
    if (code === BackendCode.CopyInResponse || code === BackendCode.CopyBothResponse) {
      l.mustFlush?.(); // the client must now send data: nothing may be held back
    }

    if (!isTerminal(ex.headCode, code)) return;
    const headCode = ex.headCode;
    this.settleParse(headCode, code);
    ex.shift();
    if (code === BackendCode.ErrorResponse && headCode !== FrontendCode.Sync) {
      // Extended protocol: after an error the server discards messages until Sync.
      while (!ex.empty && ex.headCode !== FrontendCode.Sync) {
        this.settleParse(ex.headCode, BackendCode.ErrorResponse);
        ex.shift();
      }
      // No Sync sent yet: what the client sends until its Sync is skipped by the server too.
      if (ex.empty) this.skippingToSync = true;
    }
    if (code === BackendCode.ReadyForQuery) {
      this.txStatus = buf[start + 5];
      this.skippingToSync = false;
      this.emitSimulated(l);
      if (ex.empty) l.ready(this.txStatus);
      else l.synced?.(this.txStatus);
      return;
    }
    this.emitSimulated(l);
  }

  onContinuation(buf: Buffer, start: number, end: number): void {
    const l = this.listener;
    if (l !== null && this.streamAction === Action.Forward) l.forward(buf, start, end);
  }

  onChunkEnd(): void {
    this.listener?.chunkEnd();
  }

  onProtocolError(message: string): void {
    this.fail(new ProxyError("protocol_error", "08P01", message), DisconnectReason.ProtocolError);
  }

  // --- writing ---------------------------------------------------------------------------------

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

  // --- session state, written only here (by the client holding the lease, and the pool) --------

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

  /** Session state ties this server to its client (see `pins`). */
  get pinned(): boolean {
    return this.pinReasons.size > 0;
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
    const victims = this.statementCache.evictFor(1, new Set([keep]));
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
  }

  forgetSetting(lc: string): void {
    this.serverSettings.delete(lc);
  }

  forgetSettings(): void {
    this.serverSettings.clear();
  }

  /** Writes bytes to the server; false means its buffer is full (wait for 'drain'). */
  write(bytes: Buffer): boolean {
    const s = this.socket;
    if (s === null || this.closed) return true;
    this.bytesSent += bytes.length;
    this.lastSentAt = clock.now();
    return s.write(bytes);
  }

  cork(): void {
    this.socket?.cork();
  }

  uncork(): void {
    this.socket?.uncork();
  }

  /** Backpressure: stop reading server bytes until the client catches up. */
  pauseReading(): void {
    this.socket?.pause();
  }

  resumeReading(): void {
    this.socket?.resume();
  }

  onDrain(fn: () => void): void {
    this.socket?.once("drain", fn);
  }

  get writableNeedDrain(): boolean {
    return this.socket?.writableNeedDrain ?? false;
  }

  /** Queues the simulated replies owed at the head right away (nothing from the server precedes them). */
  flushSimulated(): void {
    if (this.listener) this.emitSimulated(this.listener);
  }

  /** Closes the connection for good. Idempotent. */
  destroy(reason: DisconnectReason): void {
    if (this.closed) return;
    this.bad = true;
    this.closeReason ??= reason;
    const s = this.socket;
    if (s && !s.destroyed && this.loggedIn && reason !== DisconnectReason.Network) {
      // A polite Terminate lets the server end the session without logging an EOF.
      s.end(msg.terminateMessage);
      clock.after(1000, () => s.destroy());
    } else {
      s?.destroy();
    }
    this.finish();
  }

  /**
   * Sends a CancelRequest for whatever this server is running, on a new connection. The server
   * may move on while that connection opens (a round trip): `stillWanted` is asked again right
   * before the packet is written, so a cancel whose reason has passed is dropped instead of
   * hitting what the server runs next. Without it the cancel is sent unconditionally (for a
   * server about to be closed: its cancel key dies with its process, so no one else is hit).
   */
  cancel(stillWanted?: () => boolean): void {
    const a = this.options.address;
    const sock =
      "path" in a ? net.connect({ path: a.path }) : net.connect({ host: a.host, port: a.port });
    sock.on("error", () => sock.destroy());
    sock.setTimeout(5000, () => sock.destroy());
    sock.once("connect", () => {
      if (stillWanted !== undefined && !stillWanted()) {
        sock.destroy();
        return;
      }
      sock.end(msg.cancelRequest(this.pid, this.secret));
    });
  }

  // --- internals -------------------------------------------------------------------------------

  private emitSimulated(l: BackendListener): void {
    const ex = this.owed;
    while (!ex.empty && ex.headAction === Action.Simulate) {
      l.insert(ex.headPayload as Buffer);
      ex.shift();
    }
  }

  /** A Parse we sent is settled: remember the statement as prepared here, or forget it. */
  private settleParse(headCode: number, replyCode: number): void {
    if (headCode !== FrontendCode.Parse) return;
    const name = this.owed.headPayload;
    if (typeof name !== "string") return;
    if (replyCode === BackendCode.ParseComplete) this.statementCache.confirm(name);
    else this.statementCache.forget(name);
  }

  private recordParameter(
    buf: Buffer,
    start: number,
    end: number,
    l: BackendListener | null,
    ignored: boolean,
  ): void {
    const nameEnd = buf.indexOf(0, start + 5);
    if (nameEnd < 0 || nameEnd >= end) return;
    const name = buf.toString("utf8", start + 5, nameEnd);
    const value = buf.toString("utf8", nameEnd + 1, end - 1);
    this.params.set(name, value);
    if (name === "in_hot_standby" || name === "default_transaction_read_only") this.checkRole();
    l?.parameter?.(name, value, ignored);
  }

  /**
   * A reported change of role (a writer turned read-only, a standby promoted) after login: a
   * server that no longer fits the pool's target_session_attrs is retired, at once when idle,
   * else when its client is done with it (or the client replays what it refused, see
   * ClientSession.ready).
   */
  private checkRole(): void {
    if (!this.loggedIn || this.roleMismatch) return;
    if (roleFits(this.options.target.targetSessionAttrs, serverRole(this.params))) return;
    this.roleMismatch = true;
    this.bad = true;
    this.closeReason ??= DisconnectReason.RoleChanged;
    if (this.listener === null) this.destroy(DisconnectReason.RoleChanged);
  }

  private isFatal(buf: Buffer, start: number, end: number): boolean {
    // Scan the fields for V (or S) without decoding the rest.
    let pos = start + 5;
    while (pos < end && buf[pos] !== 0) {
      const type = buf[pos];
      const valueEnd = buf.indexOf(0, pos + 1);
      if (valueEnd < 0 || valueEnd >= end) return false;
      if (type === 0x56 /* V */ || type === 0x53 /* S */) {
        const len = valueEnd - pos - 1;
        if (len === 5 && buf.toString("latin1", pos + 1, valueEnd) === "FATAL") return true;
        if (len === 5 && buf.toString("latin1", pos + 1, valueEnd) === "PANIC") return true;
        if (type === 0x56) return false;
      }
      pos = valueEnd + 1;
    }
    return false;
  }

  /** A message from an idle pooled server: only FATALs and parameter changes are expected. */
  private onIdleMessage(code: number, buf: Buffer, start: number, end: number): void {
    switch (code) {
      case BackendCode.ParameterStatus:
        this.recordParameter(buf, start, end, null, true);
        return;
      case BackendCode.NoticeResponse:
      case BackendCode.NotificationResponse:
        return;
      case BackendCode.ErrorResponse:
        this.fatal = serverErrorFrom(buf, start, end);
        this.bad = true;
        return;
      default:
        this.fail(
          new ProxyError(
            "protocol_error",
            "08P01",
            `unexpected message '${String.fromCharCode(code)}' from idle server`,
          ),
          DisconnectReason.ProtocolError,
        );
    }
  }

  private onLoginMessage(code: number, buf: Buffer, start: number, end: number): void {
    switch (code) {
      case BackendCode.Authentication:
        this.onAuthRequest(buf, start, end);
        return;
      case BackendCode.ParameterStatus:
        this.recordParameter(buf, start, end, null, true);
        return;
      case BackendCode.BackendKeyData:
        this.pid = buf.readInt32BE(start + 5);
        this.secret = Buffer.from(buf.subarray(start + 9, end));
        return;
      case BackendCode.ErrorResponse: {
        const err = serverErrorFrom(buf, start, end);
        this.closeReason = DisconnectReason.LoginFailed;
        this.loginReject?.(err);
        this.loginReject = null;
        this.destroy(DisconnectReason.LoginFailed);
        return;
      }
      case BackendCode.ReadyForQuery:
        this.txStatus = buf[start + 5];
        this.loggedIn = true;
        this.idleSince = clock.now();
        this.loginResolve?.();
        this.loginResolve = null;
        this.loginReject = null;
        return;
      case BackendCode.NoticeResponse:
      case BackendCode.NegotiateProtocolVersion:
        return;
      default:
        this.fail(
          new ProxyError("protocol_error", "08P01", "unexpected message during server login"),
          DisconnectReason.ProtocolError,
        );
    }
  }

  private onAuthRequest(buf: Buffer, start: number, end: number): void {
    const kind = buf.readInt32BE(start + 5);
    const password = this.options.password;
    const needPassword = () => {
      this.fail(
        new ProxyError(
          "no_password",
          "28P01",
          `server requested a password for user "${this.options.user}" but none is configured`,
          "FATAL",
        ),
        DisconnectReason.LoginFailed,
      );
    };
    try {
      switch (kind) {
        case AuthCode.Ok:
          // Once SASL has begun, only a verified server signature ends it. AuthenticationOk
          // before that is a server (or a man in the middle) skipping the proof that it knows
          // our password; libpq refuses it the same way ("server sent AuthenticationOk before
          // SASL exchange was complete" is not accepted).
          if (this.scram !== null && !this.scram.done) {
            throw new ProxyError(
              "auth_protocol",
              "08P01",
              "server sent AuthenticationOk before completing SCRAM authentication (no valid server signature)",
              "FATAL",
            );
          }
          return;
        case AuthCode.CleartextPassword:
          if (password === null) return needPassword();
          this.checkPasswordMayTravel("a cleartext password");
          this.socket?.write(msg.passwordMessage(password));
          return;
        case AuthCode.MD5Password:
          if (password === null) return needPassword();
          this.checkPasswordMayTravel("an md5 password");
          this.socket?.write(
            msg.passwordMessage(
              md5Password(this.options.user, password, buf.subarray(start + 9, start + 13)),
            ),
          );
          return;
        case AuthCode.SASL: {
          if (password === null) return needPassword();
          if (this.scram !== null)
            throw new ProxyError(
              "auth_protocol",
              "08P01",
              "unexpected second AuthenticationSASL",
              "FATAL",
            );
          const mechanisms = buf.toString("utf8", start + 9, end).split("\0");
          if (!mechanisms.includes("SCRAM-SHA-256")) {
            throw new ProxyError(
              "auth_unsupported",
              "08P01",
              `server offered no supported SASL mechanism (${mechanisms.filter(Boolean).join(", ")})`,
              "FATAL",
            );
          }
          this.scram = new ScramClientExchange(password, {
            maxIterations: this.options.maxScramIterations,
          });
          this.socket?.write(msg.saslInitialResponse("SCRAM-SHA-256", this.scram.clientFirst()));
          return;
        }
        case AuthCode.SASLContinue: {
          const scram = this.scram;
          if (!scram)
            throw new ProxyError("auth_protocol", "08P01", "unexpected SASLContinue", "FATAL");
          // Hi() runs off the event loop. The server sends nothing until it has our answer; if
          // it does (out of turn), the exchange fails and so does the login. The connection may
          // close or time out meanwhile: then the answer is dropped.
          scram.serverFirst(buf.toString("utf8", start + 9, end)).then(
            (reply) => {
              if (!this.closed) this.socket?.write(msg.saslResponse(reply));
            },
            (err: Error) => this.authFailed(err),
          );
          return;
        }
        case AuthCode.SASLFinal:
          if (!this.scram)
            throw new ProxyError("auth_protocol", "08P01", "unexpected SASLFinal", "FATAL");
          this.scram.serverFinal(buf.toString("utf8", start + 9, end));
          return;
        default:
          throw new ProxyError(
            "auth_unsupported",
            "08P01",
            `server requested unsupported authentication method ${kind}`,
            "FATAL",
          );
      }
    } catch (err) {
      this.authFailed(err as Error);
    }
  }

  /** Ends a login the upstream's authentication made impossible. */
  private authFailed(err: Error): void {
    if (this.closed) return;
    let e: ProxyError;
    if (err instanceof ProxyError) e = err;
    else if (err instanceof ScramError && err.code === "too_many_iterations") {
      e = new ProxyError(
        "scram_iterations",
        "28000",
        `server authentication refused: ${err.message} (server_scram_max_iterations)`,
        "FATAL",
      );
    } else {
      e = new ProxyError(
        "auth_failed",
        "28P01",
        `server authentication failed: ${err.message}`,
        "FATAL",
      );
    }
    this.fail(e, DisconnectReason.LoginFailed);
  }

  /**
   * A cleartext password gives it to anyone who reads the wire; an md5 answer gives an
   * eavesdropper a hash to crack offline and a man in the middle a login it can relay. Without
   * TLS that is allowed only as server_password_without_tls says: by default to loopback
   * addresses, and always over a unix socket, where no one else is on the wire. SCRAM is not
   * affected: it never reveals the password, and a server that does not know it cannot finish.
   */
  private checkPasswordMayTravel(what: string): void {
    const policy = this.options.passwordWithoutTls ?? "loopback";
    if (policy === "allow" || this.socket instanceof tls.TLSSocket) return;
    const a = this.options.address;
    if ("path" in a || (policy === "loopback" && isLoopbackHost(a.host))) return;
    throw new ProxyError(
      "password_without_tls",
      "28000",
      `server ${this.address} requested ${what} over a connection without TLS; not sent (server_password_without_tls: ${policy})`,
      "FATAL",
      "Use sslmode=require or stronger in the upstream URL, or SCRAM-SHA-256 on the server, or set server_password_without_tls: allow.",
    );
  }

  private fail(err: Error, reason: DisconnectReason): void {
    this.closeReason ??= reason;
    const reject = this.loginReject;
    this.loginReject = null;
    this.loginResolve = null;
    this.scanner.stop();
    this.socket?.destroy();
    reject?.(err);
    this.finish();
  }

  private onSocketGone(err: NodeJS.ErrnoException | null): void {
    if (this.closed) return;
    if (err?.code === "ECONNRESET" || err?.code === "EPIPE") this.resetByPeer = true;
    let reason: DisconnectReason;
    if (this.fatal) reason = reasonForFatal(this.fatal.sqlstate);
    else reason = DisconnectReason.Network;
    if (!this.loggedIn) {
      const detail = err
        ? `${err.code ?? ""} ${err.message}`.trim()
        : "server closed the connection";
      // A certificate that fails verification will fail again: report it at once, no backoff.
      const tlsVerify = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(err?.code ?? "");
      const code = tlsVerify ? "tls_verify" : "connect_failed";
      const failure = new ProxyError(code, "08006", `could not connect to server: ${detail}`);
      if (err) failure.cause = err; // its code names the connect-failure reason
      this.fail(this.fatal ?? failure, reason);
      return;
    }
    this.closeReason ??= reason;
    this.finish();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.bad = true;
    this.socket?.destroy();
    const l = this.listener;
    this.listener = null;
    l?.lost(this.closeReason ?? DisconnectReason.Network, this.fatal);
    this.onClose?.(this);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get lastError(): ServerError | null {
    return this.fatal;
  }
}

/** Whether an ErrorResponse/NoticeResponse carries SQLSTATE `code` (field C), without decoding it. */
function errorCodeIs(buf: Buffer, start: number, end: number, code: string): boolean {
  let pos = start + 5;
  while (pos < end && buf[pos] !== 0) {
    const valueEnd = buf.indexOf(0, pos + 1);
    if (valueEnd < 0 || valueEnd >= end) return false;
    if (buf[pos] === 0x43) return buf.toString("latin1", pos + 1, valueEnd) === code;
    pos = valueEnd + 1;
  }
  return false;
}

const SERVER_STATEMENT_PREFIX = Buffer.from("pgsc_");

/** Whether an ErrorResponse mentions one of our server-side statement names (cold path). */
function namesServerStatement(buf: Buffer, start: number, end: number): boolean {
  const at = buf.indexOf(SERVER_STATEMENT_PREFIX, start);
  return at >= 0 && at < end;
}

/** Whether a server message of type `reply` completes the request of type `request`. */
function isTerminal(request: number, reply: number): boolean {
  switch (request) {
    case FrontendCode.Parse:
      return reply === BackendCode.ParseComplete || reply === BackendCode.ErrorResponse;
    case FrontendCode.Bind:
      return reply === BackendCode.BindComplete || reply === BackendCode.ErrorResponse;
    case FrontendCode.Close:
      return reply === BackendCode.CloseComplete || reply === BackendCode.ErrorResponse;
    case FrontendCode.Describe:
      return (
        reply === BackendCode.RowDescription ||
        reply === BackendCode.NoData ||
        reply === BackendCode.ErrorResponse
      );
    case FrontendCode.Execute:
      return (
        reply === BackendCode.CommandComplete ||
        reply === BackendCode.EmptyQueryResponse ||
        reply === BackendCode.PortalSuspended ||
        reply === BackendCode.ErrorResponse
      );
    default:
      // Sync, Query, FunctionCall: everything up to ReadyForQuery belongs to them.
      return reply === BackendCode.ReadyForQuery;
  }
}

const fileCache = new Map<string, Buffer>();
function readFileCached(path: string): Buffer {
  let b = fileCache.get(path);
  if (!b) {
    b = readFileSync(path);
    fileCache.set(path, b);
  }
  return b;
}
