// ClientSession: one client's state machine. Startup (SSL/GSS negotiation, protocol version,
// CancelRequest), authentication, then the relay: client frames go to a leased server as ranges,
// server replies come back as ranges, and the lease is returned at ReadyForQuery('I') in
// transaction mode. Upstream failures never close the client: they are replayed or reported as
// ordinary errors (DESIGN.md section 1).

import type net from "node:net";
import type tls from "node:tls";
import type { BackendConnection, BackendListener } from "../backend/backend-connection.js";
import { Action } from "../backend/expected-responses.js";
import type { Pool } from "../backend/pool.js";
import {
  DisconnectReason,
  lostConnectionError,
  ProxyError,
  resolutionUnknownError,
  type ServerError,
} from "../errors.js";
import type { Logger } from "../log.js";
import { ByteRun } from "../protocol/byte-run.js";
import { FrontendCode, TxStatus } from "../protocol/codes.js";
import { FrameScanner, type FrameSink } from "../protocol/frame-scanner.js";
import * as msg from "../protocol/messages.js";
import {
  decodeStartupPacket,
  parseOptions,
  type StartupError,
  type StartupPacket,
  startupPacketLength,
} from "../protocol/startup.js";
import { frontendMessageError } from "../protocol/validate.js";
import { ClientCloseReason, PinReason, ReplayOutcome } from "../reasons.js";
import type { CancelRegistry } from "./cancel.js";
import { type AuthType, ClientAuth, type KnownUser, MAX_PASSWORD_MESSAGE } from "./client-auth.js";
import { ClientSettings, setStatement } from "./client-settings.js";
import { type ClientStatement, ClientStatements, spliceName } from "./client-statements.js";
import { ClientWire, type WireOwner } from "./client-wire.js";
import type { NotificationHub, Subscriber } from "./notification-hub.js";
import {
  abortedTransactionError,
  asFatal,
  errorFromServer,
  noParameters,
  renameStatements,
} from "./replies.js";
import { type LostUnit, type RetryPolicy, refusedBeforeRunning } from "./retry-policy.js";
import { detectSessionState, type StateChange, TRACKED_PARAMETERS } from "./session-state.js";
import { classifyStatement } from "./statement-class.js";
import { mayCommit, transactionControl } from "./transaction-words.js";
import { Unit, type UnitOwner } from "./unit.js";
import { countSyncs, type ListenCommand, listenCommand, unitTexts } from "./unit-frames.js";

export const SessionState = {
  Startup: "startup",
  Authenticating: "authenticating",
  /** Authenticated; waiting for the pool to learn the server's parameters. */
  LoggingIn: "logging_in",
  Idle: "idle",
  Waiting: "waiting",
  Active: "active",
  Closed: "closed",
} as const;
export type SessionState = (typeof SessionState)[keyof typeof SessionState];

/** Where an authenticated client's work goes. */
export interface Route {
  pool: Pool;
  mode: "session" | "transaction";
  retry: RetryPolicy;
  /** LISTEN/NOTIFY without pins (transaction mode); null in session mode. */
  notifications: NotificationHub | null;
}

/** What a session needs from the proxy; read live, so a reload applies to running sessions. */
export interface SessionContext {
  readonly log: Logger;
  readonly cancels: CancelRegistry;
  readonly authType: AuthType;
  readonly loginTimeoutMs: number;
  readonly maxMessageBytes: number;
  readonly maxPreparedStatements: number;
  readonly trackExtraParameters: ReadonlySet<string>;
  readonly tls: tls.SecureContext | null;
  /** client_tls: require. TCP clients that did not negotiate TLS are refused (28000). */
  readonly tlsRequired?: boolean;
  readonly draining: boolean;
  findUser(name: string): KnownUser | undefined;
  /** null: no such database (FATAL 3D000). */
  route(database: string, user: string): Route | null;
  /** Admin console sessions (database `pgsidecar`); null when the user may not use it. */
  openAdmin?(session: ClientSession): boolean;
  adminQuery?(session: ClientSession, sql: string): Buffer[];
  /** Called once per session, with the reason it closed (counted by reason). */
  sessionClosed(session: ClientSession, reason: ClientCloseReason): void;
  events: SessionEvents;
}

export interface SessionEvents {
  clientError(session: ClientSession, sqlstate: string): void;
  replay(session: ClientSession, outcome: ReplayOutcome): void;
  pinned(session: ClientSession, reason: PinReason): void;
  statement(session: ClientSession, kind: "hit" | "miss" | "reprepare"): void;
  unitDone(session: ClientSession, seconds: number, transactionEnded: boolean): void;
  bytes(direction: "in" | "out", n: number): void;
  /** Notifications dropped for a client that fell too far behind (LISTEN in transaction mode). */
  notificationsDropped?(n: number): void;
  /** A bug was caught in a socket handler of this session (pgsidecar_internal_errors_total). */
  internalError(session: ClientSession): void;
}

const HEADER = 5;
/** Names the length limit before login in a protocol error. */
const AUTH_LIMIT = "the limit for authentication messages";
let nextSessionId = 1;

export class ClientSession implements FrameSink, BackendListener, Subscriber, WireOwner, UnitOwner {
  readonly id = nextSessionId++;
  state: SessionState = SessionState.Startup;
  readonly connectedAt = Date.now();
  user = "";
  database = "";
  applicationName = "";
  isAdmin = false;
  /** Sidecar-issued BackendKeyData. */
  key: { pid: number; secret: Buffer } | null = null;
  /** The client's transaction status, as last reported to it. */
  txStatus: number = TxStatus.Idle;
  route: Route | null = null;
  lease: BackendConnection | null = null;

  readonly wire: ClientWire;
  private startupBuf: Buffer = Buffer.alloc(0);
  private scanner: FrameScanner;
  private auth: ClientAuth | null = null;
  private loginTimer: NodeJS.Timeout | null = null;
  private protocolMinor = 0;
  /** A server checkout, or a LISTEN waiting for the pool's listening server. */
  private waiter: { cancel(): void } | null = null;

  /** ParameterStatus values as this client last saw them (canonical server names). */
  private readonly reported = new Map<string, string>();
  /** Settings this client expects on any server, keyed by lower-case name. */
  private readonly settings = new ClientSettings();
  private readonly statements = new ClientStatements();

  /** The current unit of work: its frames, held replies, and what reached the client. */
  private readonly unit: Unit = new Unit(this);
  /** The server was lost inside a transaction: answer ROLLBACK ourselves, 25P02 to the rest. */
  private lostTransaction = false;
  /** Discard the client's messages up to the next Sync (after an error we reported). */
  private skipToSync = false;
  private closing = false;
  /** A client chunk is being scanned (server writes are corked until its end). */
  private scanning = false;
  private corkedServer: BackendConnection | null = null;
  /** When the client last sent anything (client_idle_timeout). */
  lastActivityAt = Date.now();

  constructor(
    socket: net.Socket,
    private readonly ctx: SessionContext,
  ) {
    this.wire = new ClientWire(socket, this);
    // Until login, messages are held to Postgres's limits for authentication (see onStartupMessage).
    this.scanner = new FrameScanner(MAX_PASSWORD_MESSAGE);
    this.scanner.setLimit(MAX_PASSWORD_MESSAGE, AUTH_LIMIT);
    this.loginTimer = setTimeout(() => this.onLoginTimeout(), ctx.loginTimeoutMs);
    this.loginTimer.unref?.();
  }

  get log(): Logger {
    return this.ctx.log;
  }

  get pins(): ReadonlySet<string> {
    return this.lease?.pins ?? new Set();
  }

  get preparedCount(): number {
    return this.statements.size;
  }

  /** ip:port of the client, or "unix". */
  get remote(): string {
    return this.wire.remote;
  }

  get retryBufferBytes(): number {
    return this.route?.retry.bufferBytes ?? 0;
  }

  countBytesOut(n: number): void {
    this.ctx.events.bytes("out", n);
  }

  /** The client went away: close, with the same last-resort guard as onData. */
  onGone(): void {
    try {
      this.close(ClientCloseReason.ClientGone);
    } catch (err) {
      this.onInternalError(err);
    }
  }

  onData(chunk: Buffer): void {
    try {
      this.lastActivityAt = Date.now();
      this.ctx.events.bytes("in", chunk.length);
      if (this.state === SessionState.Startup) this.onStartupData(chunk);
      else {
        this.scanning = true;
        this.scanner.push(chunk, this);
        this.scanning = false;
        this.uncorkServer();
      }
    } catch (err) {
      this.onInternalError(err);
    }
  }

  /**
   * Last resort for a bug met while handling this client's bytes. An exception out of a socket
   * handler would end the process, and every client with it: this client alone gets FATAL XX000.
   */
  private onInternalError(err: unknown): void {
    this.scanning = false;
    const e = err instanceof Error ? err : new Error(String(err));
    this.log.error(
      { client: this.id, user: this.user, state: this.state, err: e.message, stack: e.stack },
      "internal error, closing the client",
    );
    this.ctx.events.internalError(this);
    const alreadyClosing = this.closing;
    try {
      this.fatal(
        ClientCloseReason.InternalError,
        new ProxyError("internal_error", "XX000", "internal error in pgsidecar", "FATAL"),
      );
      if (!alreadyClosing) return;
    } catch {
      // closing failed as well: drop the socket and forget the session at least
    }
    this.wire.destroy();
    this.ctx.sessionClosed(this, ClientCloseReason.InternalError);
  }

  // --- startup -----------------------------------------------------------------------------------

  private onStartupData(chunk: Buffer): void {
    this.startupBuf = this.startupBuf.length ? Buffer.concat([this.startupBuf, chunk]) : chunk;
    if (this.startupBuf[0] === 0x16 && !this.wire.isTls) {
      // A TLS ClientHello: direct SSL negotiation (Postgres 17, sslnegotiation=direct).
      this.startDirectTls(this.startupBuf);
      return;
    }
    let len: number;
    let packet: StartupPacket;
    try {
      len = startupPacketLength(this.startupBuf);
      if (len === 0) return;
      packet = decodeStartupPacket(this.startupBuf.subarray(0, len));
    } catch (err) {
      const e = err as StartupError;
      this.log.info({ client: this.id, remote: this.remote, err: e.message }, "bad startup packet");
      // Where Postgres only logs (an impossible length, a bad CancelRequest) it closes without a
      // word: a client that sends Terminate before its StartupMessage (node-postgres's end()
      // right after connect()) must not see an error it would report.
      if (e.quiet) this.close(ClientCloseReason.ProtocolError);
      else
        this.fatal(
          ClientCloseReason.ProtocolError,
          new ProxyError("startup", e.sqlstate ?? "08P01", e.message, "FATAL"),
        );
      return;
    }
    const rest = this.startupBuf.subarray(len);
    this.startupBuf = Buffer.alloc(0);
    switch (packet.kind) {
      case "ssl":
      case "gssenc":
        if (rest.length > 0) {
          // Data after the request would be read as if it came over TLS (CVE-2021-23222).
          this.fatal(
            ClientCloseReason.ProtocolError,
            new ProxyError(
              "startup",
              "08P01",
              "received unencrypted data after SSL request",
              "FATAL",
            ),
          );
          return;
        }
        if (packet.kind === "ssl" && this.ctx.tls && !this.wire.isTls) {
          this.wire.writeNow(msg.sslRequestYes);
          this.wire.upgradeTls(this.ctx.tls);
        } else {
          this.wire.writeNow(msg.sslRequestNo);
        }
        return;
      case "cancel":
        this.ctx.cancels.cancel(packet.pid, packet.secret);
        this.close(ClientCloseReason.CancelRequest);
        return;
      case "startup":
        this.onStartupMessage(packet);
        if (rest.length > 0 && this.state !== SessionState.Closed) this.scanner.push(rest, this);
        return;
    }
  }

  /** Replays the bytes already read (the ClientHello) into a TLS server socket. */
  private startDirectTls(hello: Buffer): void {
    this.startupBuf = Buffer.alloc(0);
    if (!this.ctx.tls) {
      this.close(ClientCloseReason.ProtocolError);
      return;
    }
    this.wire.startDirectTls(hello, this.ctx.tls);
  }

  private onStartupMessage(p: Extract<StartupPacket, { kind: "startup" }>): void {
    // 3.0 and 3.2 are served as asked; any other 3.x minor, or unknown _pq_ options, get
    // NegotiateProtocolVersion, but never a client that asked for exactly 3.0 (libpq < 18 would
    // fail on the unexpected message).
    this.protocolMinor = p.minor >= 2 ? 2 : 0;
    const needsNegotiation = p.minor !== 0 && (p.minor !== 2 || p.protocolOptions.length > 0);
    if (needsNegotiation) {
      this.wire.writeNow(msg.negotiateProtocolVersion(this.protocolMinor, p.protocolOptions));
    }
    this.user = p.params.get("user") as string;
    this.database = p.params.get("database") || this.user;
    this.applicationName =
      p.params.get("application_name") ?? p.params.get("fallback_application_name") ?? "";
    for (const [key, value] of p.params) {
      if (key === "user" || key === "database" || key === "replication" || key === "options")
        continue;
      if (key === "fallback_application_name") continue;
      this.settings.set(key.toLowerCase(), { name: key, value });
    }
    if (!p.params.has("application_name") && p.params.has("fallback_application_name")) {
      this.settings.set("application_name", {
        name: "application_name",
        value: p.params.get("fallback_application_name") as string,
      });
    }
    const options = p.params.get("options");
    this.startupSettings = [...p.params.keys()].some((k) => !LOGIN_ONLY_PARAMETERS.has(k));
    if (options) {
      for (const [key, value] of parseOptions(options))
        this.settings.set(key.toLowerCase(), { name: key, value });
    }
    if (p.params.get("replication") && p.params.get("replication") !== "false") {
      this.fatal(
        ClientCloseReason.ProtocolError,
        new ProxyError(
          "replication",
          "08P01",
          "replication connections are not supported by pgsidecar",
          "FATAL",
        ),
      );
      return;
    }
    if (this.ctx.tlsRequired && !this.wire.isTls && this.remote !== "unix") {
      // Postgres's hostssl-only refusal: 28000 once the StartupMessage is read.
      this.fatal(
        ClientCloseReason.LoginFailed,
        new ProxyError("tls_required", "28000", "pgsidecar requires TLS connections", "FATAL"),
      );
      return;
    }
    this.state = SessionState.Authenticating;
    this.auth = new ClientAuth(this.ctx.authType, this.user, this.ctx.findUser(this.user));
    this.scanner.setLimit(this.auth.maxResponseBytes, AUTH_LIMIT);
    this.scanner.expectOnly(FrontendCode.PasswordMessage, this.auth.responseName);
    this.onAuthStep(this.auth.start());
  }

  private onAuthStep(step: ReturnType<ClientAuth["start"]>): void {
    switch (step.kind) {
      case "send":
        this.wire.writeNow(step.message);
        return;
      case "fail":
        this.log.info(
          { client: this.id, user: this.user, sqlstate: step.error.sqlstate },
          "client authentication failed",
        );
        this.fatal(ClientCloseReason.LoginFailed, step.error);
        return;
      case "ok":
        if (step.message) this.wire.writeNow(step.message);
        this.wire.writeNow(msg.authenticationOk);
        this.auth = null;
        this.scanner.expectOnly(-1);
        this.afterAuthentication();
        return;
    }
  }

  private afterAuthentication(): void {
    if (this.ctx.draining) {
      this.fatal(
        ClientCloseReason.Shutdown,
        new ProxyError("shutdown", "57P01", "the sidecar is shutting down", "FATAL"),
      );
      return;
    }
    if (this.ctx.openAdmin && this.database === "pgsidecar") {
      if (!this.ctx.openAdmin(this)) {
        this.fatal(
          ClientCloseReason.LoginFailed,
          new ProxyError(
            "admin_denied",
            "28000",
            `user "${this.user}" is not an admin of the pgsidecar console`,
            "FATAL",
          ),
        );
        return;
      }
      this.isAdmin = true;
      this.finishLogin(
        new Map([
          ["server_version", "15.0 (pgsidecar)"],
          ["client_encoding", "UTF8"],
        ]),
      );
      return;
    }
    const route = this.ctx.route(this.database, this.user);
    if (route === null) {
      this.fatal(
        ClientCloseReason.LoginFailed,
        new ProxyError(
          "no_database",
          "3D000",
          `database "${this.database}" does not exist`,
          "FATAL",
        ),
      );
      return;
    }
    this.route = route;
    const known = route.pool.serverParams;
    if (known && !this.startupSettings) {
      this.finishLogin(known);
      return;
    }
    // The first client of a pool waits for one server login to learn server_version & co; a
    // client with startup settings has them tried on a server, as Postgres applies them at login.
    this.state = SessionState.LoggingIn;
    const waiter = route.pool.checkout((err, conn) => {
      this.waiter = null;
      if (this.state === SessionState.Closed) {
        if (conn) route.pool.release(conn);
        return;
      }
      if (err || !conn) {
        this.loginFailed(err as ProxyError | ServerError);
        return;
      }
      this.checkStartupSettings(route, conn);
    });
    this.waiter = waiter.done ? null : waiter;
  }

  /**
   * Runs the client's startup settings (statement_timeout, search_path, ... from its
   * StartupMessage or `options`) on a server before login completes: a value Postgres would
   * reject gets Postgres's FATAL, as it does at login, never a stray ERROR before a later query.
   */
  private checkStartupSettings(route: Route, conn: BackendConnection): void {
    const finish = () => {
      route.pool.release(conn);
      this.finishLogin(route.pool.serverParams ?? conn.params);
    };
    const reported = new Set([...conn.params.keys()].map((k) => k.toLowerCase()));
    const statements: Array<[string, string]> = [];
    for (const [lc, s] of this.settings.entries()) {
      if (!reported.has(lc)) statements.push([lc, setStatement(s.name, s.value)]);
    }
    if (statements.length === 0) return finish();
    let rejected: Buffer | null = null;
    conn.listener = {
      forward: (buf, start, end) => {
        if (buf[start] === 0x45 && rejected === null)
          rejected = Buffer.from(buf.subarray(start, end));
      },
      forwardAsync: () => {},
      insert: () => {},
      chunkEnd: () => {},
      ready: () => {
        conn.listener = null;
        if (this.state === SessionState.Closed) return route.pool.release(conn);
        if (rejected === null) {
          // The server now has them: the first unit on it needs no SET.
          for (const [lc, statement] of statements) conn.recordSetting(lc, statement);
          return finish();
        }
        route.pool.release(conn); // the failed statement left nothing behind (one implicit transaction)
        this.wire.writeNow(asFatal(rejected));
        this.close(ClientCloseReason.LoginFailed);
      },
      lost: (_reason, error) => this.loginFailed(error ?? lostConnectionError(false)),
    };
    conn.expect(FrontendCode.Query, Action.Forward);
    conn.write(msg.query(statements.map(([, statement]) => `${statement};`).join("")));
  }

  private loginFailed(err: ProxyError | ServerError): void {
    if ("raw" in err) {
      // A server FATAL the client must see (bad password upstream, database gone), unchanged.
      this.wire.writeNow(err.raw);
      this.close(ClientCloseReason.LoginFailed);
      return;
    }
    this.fatal(
      ClientCloseReason.LoginFailed,
      new ProxyError(err.code, err.sqlstate, err.message, "FATAL", err.detail),
    );
  }

  private finishLogin(serverParams: ReadonlyMap<string, string>): void {
    if (this.loginTimer) clearTimeout(this.loginTimer);
    this.loginTimer = null;
    this.scanner.setLimit(this.ctx.maxMessageBytes);
    const tracked = new Set([...TRACKED_PARAMETERS, ...this.ctx.trackExtraParameters]);
    for (const [name, value] of serverParams) {
      const lc = name.toLowerCase();
      const mine = this.settings.get(lc);
      if (mine) mine.name = name;
      else if (tracked.has(lc)) this.settings.set(lc, { name, value });
      this.reported.set(name, mine ? mine.value : value);
    }
    this.settings.sealLogin();
    const out: Buffer[] = [];
    for (const [name, value] of this.reported) out.push(msg.parameterStatus(name, value));
    this.key = this.ctx.cancels.issue(
      { cancelCurrent: () => this.cancelCurrent() },
      this.protocolMinor >= 2 ? 32 : 4,
    );
    out.push(msg.backendKeyData(this.key.pid, this.key.secret));
    out.push(msg.readyForQueryIdle);
    this.wire.writeNow(Buffer.concat(out));
    this.state = SessionState.Idle;
    this.log.debug(
      { client: this.id, user: this.user, database: this.database, pool: this.route?.pool.key },
      "client logged in",
    );
    if (this.unit.open) this.requestServer(); // what it pipelined behind its StartupMessage
  }

  private onLoginTimeout(): void {
    if (this.state === SessionState.Closed || this.state === SessionState.Idle) return;
    this.log.info({ client: this.id, state: this.state }, "client_login_timeout");
    if (this.state === SessionState.Startup) this.close(ClientCloseReason.LoginTimeout);
    else
      this.fatal(
        ClientCloseReason.LoginTimeout,
        new ProxyError(
          "login_timeout",
          "08P01",
          "canceling authentication due to timeout",
          "FATAL",
        ),
      );
  }

  // --- client frames (FrameSink) ---------------------------------------------------------------

  onMessage(code: number, buf: Buffer, start: number, end: number): void {
    switch (this.state) {
      case SessionState.Authenticating:
        if (code !== FrontendCode.PasswordMessage) {
          this.fatal(
            ClientCloseReason.ProtocolError,
            new ProxyError(
              "auth_protocol",
              "08P01",
              `expected password response, got message type ${code}`,
              "FATAL",
            ),
          );
          return;
        }
        this.onAuthStep((this.auth as ClientAuth).respond(buf.subarray(start + HEADER, end)));
        return;
      case SessionState.LoggingIn:
        // Sent before its login completed (pipelined): kept, and run once it has.
        this.onRelayMessage(code, buf, start, end);
        return;
      case SessionState.Startup:
      case SessionState.Closed:
        return;
      default:
        if (this.isAdmin) this.onAdminMessage(code, buf, start, end);
        else this.onRelayMessage(code, buf, start, end);
    }
  }

  onContinuation(): void {
    // The client side reassembles every message; nothing is streamed.
  }

  onChunkEnd(): void {
    this.unit.endInputRun();
    this.flushServerRun();
    this.uncorkServer();
    this.lease?.flushSimulated();
    this.flushClient();
  }

  onProtocolError(message: string): void {
    this.log.info({ client: this.id, err: message }, "client protocol violation");
    this.fatal(
      ClientCloseReason.ProtocolError,
      new ProxyError("protocol_violation", "08P01", message, "FATAL"),
    );
    // Nothing more it sends matters: stop reading rather than take in (and discard) the rest of a
    // flood while the socket lingers; it is destroyed shortly (close()).
    this.wire.stopReading();
  }

  private onRelayMessage(code: number, buf: Buffer, start: number, end: number): void {
    // Everything below reads names and SQL out of the message: it must be well formed first.
    const malformed = frontendMessageError(code, buf, start, end);
    if (malformed !== null) return this.onProtocolError(malformed);
    switch (code) {
      case FrontendCode.Terminate:
        this.close(ClientCloseReason.ClientExit);
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
        if (this.lease === null && this.waiter === null) return;
        break;
      default:
        this.onProtocolError(`invalid frontend message type ${code}`);
        return;
    }
    if (this.skipToSync) {
      if (code === FrontendCode.Sync) {
        this.skipToSync = false;
        this.wire.write(msg.readyForQuery(this.txStatus));
      }
      return;
    }
    if (this.lostTransaction) {
      this.answerAbortedTransaction(code, buf, start, end);
      return;
    }
    if (
      code === FrontendCode.Flush &&
      this.unit.holding &&
      (this.lease === null || this.lease.unsynced)
    ) {
      // The client wants replies before its Sync: it cannot wait for ReadyForQuery.
      this.mustFlush();
    }
    const idle = this.lease === null && this.waiter === null && !this.unit.open;
    if (idle && this.answerLocally(code, buf, start, end)) return;
    this.appendInput(buf, start, end);
    if (this.lease) this.send(code, buf, start, end);
    else if (this.waiter === null) this.requestServer();
  }

  /**
   * Messages that need no server when the client has nothing outstanding: a lone Sync or Flush,
   * closing a named statement, and SQL that only manages the client's own statements.
   */
  private answerLocally(code: number, buf: Buffer, start: number, end: number): boolean {
    const mode = this.route?.mode;
    switch (code) {
      case FrontendCode.Sync:
        this.wire.write(msg.readyForQuery(this.txStatus));
        return true;
      case FrontendCode.Flush:
        return true;
      case FrontendCode.Parse: {
        // A named statement some server already accepted needs no server now: it is prepared
        // wherever the client's Bind lands. This saves psycopg's prepare round trip, and keeps a
        // client that prepares synchronously (pgbench -M prepared) from waiting for a server.
        if (mode !== "transaction" || this.ctx.maxPreparedStatements === 0) return false;
        const nameEnd = buf.indexOf(0, start + HEADER);
        if (nameEnd === start + HEADER) return false;
        const stmt = this.statements.register(
          buf,
          start,
          end,
          nameEnd,
          this.route?.mode === "transaction",
        );
        if (stmt.sessionChange !== null || !this.route?.pool.knownStatements.has(stmt.serverName))
          return false;
        this.ctx.events.statement(this, "hit");
        this.wire.write(msg.parseComplete);
        return true;
      }
      case FrontendCode.Close: {
        if (mode !== "transaction" || buf[start + HEADER] !== 0x53) return false;
        this.statements.delete(buf.toString("utf8", start + HEADER + 1, end - 1));
        this.wire.write(msg.closeComplete);
        return true;
      }
      case FrontendCode.Query: {
        if (mode !== "transaction") return false;
        const hub = this.route?.notifications;
        if (hub && this.txStatus === TxStatus.Idle) {
          const command = listenCommand(buf, start + HEADER, end - 1);
          if (command !== null) {
            this.answerListen(hub, command);
            return true;
          }
        }
        const tag = this.statements.applySql(
          buf,
          start + HEADER,
          end - 1,
          this.txStatus === TxStatus.Idle,
        );
        if (tag === null) return false;
        this.wire.write(msg.commandComplete(tag));
        if (tag === "DISCARD ALL") this.resetSettings();
        this.wire.write(msg.readyForQuery(this.txStatus));
        return true;
      }
      default:
        return false;
    }
  }

  /**
   * After the server was lost mid-transaction, behave as Postgres does in an aborted transaction:
   * ROLLBACK is answered, anything else gets 25P02. The first statement after a loss the client
   * has not been told about gets 08006 instead, and so does a COMMIT: a client must never believe
   * a lost transaction committed.
   */
  private answerAbortedTransaction(code: number, buf: Buffer, start: number, end: number): void {
    if (code === FrontendCode.Sync) {
      this.wire.write(msg.readyForQuery(this.txStatus));
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
      if (code === FrontendCode.Bind) this.wire.write(msg.bindComplete);
      else if (code === FrontendCode.Describe) this.wire.write(msg.noData);
      else this.endAbortedTransaction(this.pendingAbortEnd, true);
      return;
    }
    let sql: string | undefined;
    if (code === FrontendCode.Query) sql = buf.toString("utf8", start + HEADER, end - 1);
    else if (code === FrontendCode.Parse) {
      const nameEnd = buf.indexOf(0, start + HEADER);
      sql = buf.toString("utf8", nameEnd + 1, buf.indexOf(0, nameEnd + 1));
    } else if (code === FrontendCode.Bind) {
      // A named statement prepared earlier (psycopg names its ROLLBACK at prepare_threshold).
      const portalEnd = buf.indexOf(0, start + HEADER);
      sql = this.statements.get(
        buf.toString("utf8", portalEnd + 1, buf.indexOf(0, portalEnd + 1)),
      )?.sql;
    }
    // Only a full ROLLBACK ends the lost transaction; Postgres answers COMMIT (and PREPARE
    // TRANSACTION) in an aborted transaction with ROLLBACK. Savepoints died with the server:
    // ROLLBACK TO, RELEASE and SAVEPOINT get 25P02 like any other statement.
    const control = sql === undefined ? "other" : transactionControl(sql);
    if (control === "rollback" || control === "commit" || control === "prepare_transaction") {
      const tag = control === "rollback" ? "ROLLBACK" : "COMMIT";
      if (code === FrontendCode.Parse || code === FrontendCode.Bind) {
        this.pendingAbortEnd = tag;
        this.wire.write(code === FrontendCode.Parse ? msg.parseComplete : msg.bindComplete);
        return;
      }
      this.endAbortedTransaction(tag, false);
      return;
    }
    this.reportError(this.lostUnreported ? lostConnectionError(true) : abortedTransactionError());
    this.lostUnreported = false;
    if (code !== FrontendCode.Query) this.skipToSync = true;
    else this.wire.write(msg.readyForQueryFailed);
  }

  /** Ends the aborted transaction: ROLLBACK as asked, or COMMIT refused if the loss is news. */
  private endAbortedTransaction(tag: "ROLLBACK" | "COMMIT", extended: boolean): void {
    if (tag === "COMMIT" && this.lostUnreported) this.reportError(lostConnectionError(true));
    else this.wire.write(msg.commandComplete("ROLLBACK"));
    this.lostTransaction = false;
    this.lostUnreported = false;
    this.pendingAbortEnd = null;
    this.txStatus = TxStatus.Idle;
    if (extended) return; // its Sync is answered with ReadyForQuery('I') below
    this.wire.write(msg.readyForQueryIdle);
  }
  private pendingAbortEnd: "ROLLBACK" | "COMMIT" | null = null;
  /** The loss of the transaction has not been reported to the client yet. */
  private lostUnreported = false;

  // --- sending to the server -------------------------------------------------------------------

  /** Records a client frame in the current unit. */
  private appendInput(buf: Buffer, start: number, end: number): void {
    if (!this.unit.open) {
      // Hold replies only where a replay is possible: outside a transaction, retry not off.
      this.unit.begin(this.txStatus === TxStatus.Idle && this.route?.retry.mode !== "off");
    }
    this.unit.append(buf, start, end);
  }

  private requestServer(): void {
    const route = this.route as Route;
    this.state = SessionState.Waiting;
    // The callback may run before checkout() returns (an idle server was at hand).
    const waiter = route.pool.checkout((err, conn) => this.onCheckout(err, conn));
    this.waiter = waiter.done ? null : waiter;
  }

  private onCheckout(err: ProxyError | ServerError | null, conn: BackendConnection | null): void {
    this.waiter = null;
    if (this.state === SessionState.Closed) {
      if (conn) this.route?.pool.release(conn);
      return;
    }
    if (err || conn === null) {
      const status = this.txStatus === TxStatus.Failed ? TxStatus.Failed : TxStatus.Idle;
      this.failUnit(err ?? lostConnectionError(false), status);
      return;
    }
    this.lease = conn;
    this.state = SessionState.Active;
    conn.listener = this;
    this.errorsBefore = conn.errors;
    this.refusalsBefore = conn.readOnlyRefusals;
    if (this.wire.stalledSince !== null) conn.pauseReading();
    this.corkServer(conn); // settings, injected Parses and the held unit in one write
    this.applySettings(conn);
    // Send everything the unit holds so far, frame by frame (names may need rewriting). The
    // chunk's pending range joins the unit first, whatever its size: it is sent from there.
    this.unit.sendTo((code, buf, start, end) => this.send(code, buf, start, end));
    this.flushServerRun();
    if (!this.scanning) this.uncorkServer(); // else at the end of the client chunk
    this.wire.resumeAfterUnit();
    conn.flushSimulated();
    this.flushClient();
  }

  /** The StartupMessage carried settings (statement_timeout, options ...): tried at login. */
  private startupSettings = false;
  /** LISTEN through the pool's listening server: notifications waiting for a transaction's end. */
  private notifications: Buffer[] | null = null;
  private droppedNotifications = 0;
  /** UNLISTENs of the current unit, applied when it ends. */
  private unlistenAfterUnit: Array<string | null> | null = null;
  /** The client LISTENed through the hub (its subscriptions end with it). */
  private subscribed = false;

  /** The lease's error count when the unit began (a unit's SETs stay only if it had none). */
  private errorsBefore = 0;
  /** The lease's 25006 count when the unit began (see replayOnWriter). */
  private refusalsBefore = 0;
  /** A Sync of the unit ended inside a transaction (its SETs' fate depends on it). */
  private unitSawTransaction = false;

  /** The unnamed statement / portal is a DEALLOCATE or DISCARD we answer: its command tag. */
  private localUnnamed: string | null = null;
  private localPortal: string | null = null;

  // Writes to the server are coalesced: one range per client chunk unless a frame is rewritten.
  private readonly serverRun = new ByteRun();

  /**
   * Queues the replies a client frame owes and writes it to the server, rewriting statement names
   * where the frame needs it.
   */
  private send(code: number, buf: Buffer, start: number, end: number): void {
    const conn = this.lease as BackendConnection;
    const named = this.route?.mode === "transaction" && this.ctx.maxPreparedStatements > 0;
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
        this.trackSessionState(conn, buf, start + HEADER, end - 1);
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
          this.trackSessionState(conn, buf, nameEnd + 1, buf.indexOf(0, nameEnd + 1));
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
          const stmt = this.prepareFor(conn, buf.toString("utf8", portalEnd + 1, stmtEnd));
          if (stmt) {
            if (stmt.sessionChange !== null) {
              this.applySessionChange(conn, stmt.sessionChange, () => stmt.sql);
            }
            replacement = spliceName(buf, start, end, portalEnd + 1, stmtEnd, stmt.serverName);
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
          const stmt = this.prepareFor(conn, buf.toString("utf8", start + HEADER + 1, end - 1));
          if (stmt)
            replacement = spliceName(buf, start, end, start + HEADER + 1, end - 1, stmt.serverName);
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
          this.statements.delete(buf.toString("utf8", start + HEADER + 1, end - 1));
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
    if (replacement === undefined) {
      const previous = this.serverRun.add(buf, start, end);
      if (previous !== null) this.writeServerDirect(previous);
      return;
    }
    this.flushServerRun();
    if (replacement !== null) this.writeServerDirect(replacement);
  }

  /**
   * DEALLOCATE of the client's own statement names, and DISCARD ALL, are answered by us: the
   * server never knew those names. Returns the command tag, or null to send the SQL on. A pinned
   * server's session has state of its own (SQL PREPARE, SET...): DEALLOCATE ALL and DISCARD ALL
   * go to it (the client's names are dropped all the same, see applySessionChange).
   */
  private manageStatements(
    conn: BackendConnection,
    buf: Buffer,
    start: number,
    end: number,
  ): string | null {
    if (conn.skipping) return null; // the server skips it, and so must we
    const tag = this.statements.applySql(buf, start, end, conn.txStatus === TxStatus.Idle);
    if (tag !== null && tag !== "DEALLOCATE" && conn.pins.size > 0) return null;
    return tag;
  }

  /**
   * LISTEN / UNLISTEN inside a unit (after other statements of a pipeline): served by the pool's
   * listening server when that needs no wait, answered in stream order; else (LISTEN of a channel
   * nobody listens to yet) sent to the server, which pins the client as before.
   */
  private listenInUnit(
    conn: BackendConnection,
    buf: Buffer,
    start: number,
    end: number,
  ): string | null {
    const hub = this.route?.notifications;
    if (!hub || conn.skipping || conn.txStatus !== TxStatus.Idle) return null;
    if (conn.pins.has(PinReason.Listen)) return null; // its server listens for it already
    const command = listenCommand(buf, start, end);
    if (command === null) return null;
    if ("unlisten" in command) {
      if (!this.subscribed) return null;
      // Applied once the unit ended (after its own NOTIFYs were delivered, see ready()).
      this.unlistenAfterUnit ??= [];
      this.unlistenAfterUnit.push(command.unlisten);
      return "UNLISTEN";
    }
    if (!hub.isListening(command.listen)) return null;
    this.subscribed = true;
    hub.listen(command.listen, this, () => {});
    return "LISTEN";
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
    const stmt = this.statements.register(
      buf,
      start,
      end,
      nameEnd,
      this.route?.mode === "transaction",
    );
    const serverName = stmt.serverName;
    if (conn.hasStatement(serverName)) {
      this.ctx.events.statement(this, "hit");
      conn.expect(FrontendCode.Parse, Action.Simulate, msg.parseComplete);
      return null;
    }
    this.ctx.events.statement(this, "miss");
    this.evictFor(conn, serverName);
    conn.expectParse(serverName, Action.Forward);
    return stmt.parse;
  }

  /** Makes sure the server has the client's statement, injecting a Parse when it does not. */
  private prepareFor(conn: BackendConnection, clientName: string): ClientStatement | null {
    const stmt = this.statements.get(clientName);
    if (stmt === undefined) return null; // unknown name: the server reports 26000 as Postgres would
    if (!conn.hasStatement(stmt.serverName)) {
      this.ctx.events.statement(this, "reprepare");
      this.evictFor(conn, stmt.serverName);
      conn.expectParse(stmt.serverName, Action.Ignore);
      this.flushServerRun();
      this.writeServerDirect(stmt.parse);
    }
    return stmt;
  }

  /** Closes the least recently used statements on a full server before preparing another. */
  private evictFor(conn: BackendConnection, keep: string): void {
    const victims = conn.evictFor(keep);
    if (victims.length === 0) return;
    this.flushServerRun();
    for (const name of victims) this.writeServerDirect(msg.close("S", name));
  }

  private trackSessionState(
    conn: BackendConnection,
    buf: Buffer,
    start: number,
    end: number,
  ): void {
    if (this.route?.mode !== "transaction") return;
    const effects = detectSessionState(buf, start, end);
    if (effects.length > 0) {
      this.applySessionChange(conn, effects, () => buf.toString("utf8", start, end));
    }
  }

  /**
   * Whether the SETs and RESETs of a statement can travel with the client instead of pinning it:
   * outside a transaction, and not in a statement string that opens or ends one (its outcome
   * would decide whether they stay). The unit must then end cleanly (see ready()).
   */
  private settingsTravel(conn: BackendConnection, text: () => string): boolean {
    return (
      this.route?.mode === "transaction" &&
      conn.txStatus === TxStatus.Idle &&
      !/\b(begin|start|commit|end|rollback|abort|savepoint|prepare)\b/i.test(text())
    );
  }

  private applySessionChange(
    conn: BackendConnection,
    change: NonNullable<StateChange>,
    text: () => string,
  ): void {
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
        if ("set" in effect && TRACKED_PARAMETERS.has(name)) continue; // reported: see parameter()
        travels ??= this.settingsTravel(conn, text);
        if (!travels) {
          if ("reset" in effect) this.pin(conn, PinReason.Set);
          continue;
        }
        this.settings.hold(effect);
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
          if (this.subscribed) this.route?.notifications?.unlisten(null, this);
          travels ??= this.settingsTravel(conn, text);
          if (travels) this.settings.hold({ reset: "all" });
        }
        conn.forgetStatements();
        this.statements.clear();
      }
    }
  }

  /**
   * LISTEN / UNLISTEN in transaction mode: the pool's listening server listens for the client,
   * which holds no server of its own. LISTEN is answered once that server listens; the client's
   * next messages wait meanwhile, as they would for a server.
   */
  private answerListen(hub: NotificationHub, command: ListenCommand): void {
    let answered = false;
    if ("unlisten" in command) {
      // After a round trip to the listening server: the client's own earlier NOTIFYs arrive first.
      hub.unlisten(command.unlisten, this, () => {
        answered = true;
        if (this.state === SessionState.Closed) return;
        this.waiter = null;
        this.wire.write(msg.commandComplete("UNLISTEN"));
        this.afterLocalWait();
      });
      if (!answered) this.waiter = { cancel: () => {} };
      return;
    }
    this.subscribed = true;
    const cancel = hub.listen(command.listen, this, (err) => {
      answered = true;
      if (this.state === SessionState.Closed) return;
      this.waiter = null;
      if (err) this.reportError(err);
      else this.wire.write(msg.commandComplete("LISTEN"));
      this.afterLocalWait();
    });
    if (!answered) this.waiter = { cancel };
  }

  /** A LISTEN / UNLISTEN we answered is done: its ReadyForQuery, then what came meanwhile. */
  private afterLocalWait(): void {
    this.wire.write(msg.readyForQuery(this.txStatus));
    this.flushClient();
    if (this.unit.open)
      this.requestServer(); // messages that came meanwhile
    else this.flushNotifications();
  }

  notify(frame: Buffer): void {
    if (this.notifications === null) this.notifications = [];
    if (this.notifications.length >= MAX_QUEUED_NOTIFICATIONS) {
      this.droppedNotifications++;
      return;
    }
    this.notifications.push(frame);
    this.flushNotifications();
  }

  listenerLost(): void {
    this.notify(
      msg.noticeResponse({
        severity: "WARNING",
        code: "01000",
        message:
          "pgsidecar: the connection that LISTENs for this client was lost and replaced; notifications may have been missed",
      }),
    );
  }

  private applyUnlistens(): void {
    const channels = this.unlistenAfterUnit;
    if (channels === null) return;
    this.unlistenAfterUnit = null;
    for (const channel of channels) this.route?.notifications?.unlisten(channel, this, () => {});
  }

  /** Notifications reach the client between transactions, as Postgres delivers them. */
  private flushNotifications(): void {
    const queued = this.notifications;
    if (queued === null || queued.length === 0) return;
    if (this.unit.open || this.waiter !== null || this.txStatus !== TxStatus.Idle) return;
    if (this.state === SessionState.Closed) return;
    this.notifications = null;
    for (const frame of queued) this.wire.write(frame);
    if (this.droppedNotifications > 0) {
      this.ctx.events.notificationsDropped?.(this.droppedNotifications);
      this.wire.write(
        msg.noticeResponse({
          severity: "WARNING",
          code: "01000",
          message: `pgsidecar: ${this.droppedNotifications} notifications were dropped: more than ${MAX_QUEUED_NOTIFICATIONS} arrived while this client was busy`,
        }),
      );
      this.droppedNotifications = 0;
    }
    this.flushClient();
  }

  /**
   * DISCARD ALL answered without a server: settings go back to what login established, and the
   * client hears of each reported parameter that changes, as Postgres reports them.
   */
  private resetSettings(): void {
    this.settings.resetAll();
    if (this.subscribed) this.route?.notifications?.unlisten(null, this);
    for (const [name, value] of this.reported) {
      const wanted = this.settings.get(name.toLowerCase());
      if (wanted === undefined || wanted.value === value) continue;
      this.reported.set(name, wanted.value);
      this.wire.write(msg.parameterStatus(name, wanted.value));
    }
  }

  private pin(conn: BackendConnection, reason: PinReason): void {
    if (!conn.pin(reason)) return;
    this.ctx.events.pinned(this, reason);
    this.log.debug({ client: this.id, server: conn.id, reason }, "client pinned to server");
  }

  private flushServerRun(): void {
    const range = this.serverRun.take();
    if (range !== null) this.writeServerDirect(range);
  }

  private writeServerDirect(bytes: Buffer): void {
    const conn = this.lease;
    if (conn === null) return;
    // Everything one client chunk produces (a rewritten Bind, an injected Parse, the ranges
    // between them) leaves in one writev at the chunk's end.
    if (this.scanning) this.corkServer(conn);
    // A full server buffer: the client is not read until that server drains (or is gone: a
    // dead server never drains, so loss and release unblock too).
    if (!conn.write(bytes)) this.wire.serverFull(conn);
  }

  private corkServer(conn: BackendConnection): void {
    if (this.corkedServer === conn) return;
    this.uncorkServer();
    conn.cork();
    this.corkedServer = conn;
  }

  private uncorkServer(): void {
    const conn = this.corkedServer;
    if (conn === null) return;
    this.corkedServer = null;
    conn.uncork();
  }

  /** SETs the client's settings on a server whose values differ, before the client's frames. */
  private applySettings(conn: BackendConnection): void {
    const sql = this.settings.sqlFor(conn, this.reported);
    if (sql === "") return;
    conn.expect(FrontendCode.Query, Action.Ignore);
    conn.write(msg.query(sql));
  }

  // --- server replies (BackendListener) --------------------------------------------------------

  forward(buf: Buffer, start: number, end: number): void {
    this.unit.forward(buf, start, end);
  }

  forwardAsync(buf: Buffer, start: number, end: number): void {
    this.unit.forwardAsync(buf, start, end);
  }

  insert(bytes: Buffer): void {
    this.unit.insert(bytes);
  }

  /** The client must act on what it has been sent (COPY FROM STDIN began): stop holding. */
  mustFlush(): void {
    this.unit.release();
  }

  chunkEnd(): void {
    this.flushClient();
  }

  parameter(name: string, value: string, ignored: boolean): void {
    const lc = name.toLowerCase();
    const mine = this.settings.get(lc);
    if (ignored) {
      // Our own SET: adopt the server's spelling, and tell the client if its view changed.
      if (mine) mine.value = value;
      if (this.reported.get(name) !== value && (mine || !this.reported.has(name))) {
        this.reported.set(name, value);
        // Not part of the unit's response: it does not prevent a replay.
        this.unit.flushOut();
        this.wire.write(msg.parameterStatus(name, value));
      }
      return;
    }
    this.reported.set(name, value);
    if (mine) mine.value = value;
    else if (TRACKED_PARAMETERS.has(lc) || this.ctx.trackExtraParameters.has(lc))
      this.settings.set(lc, { name, value });
  }

  ready(status: number): void {
    const conn = this.lease as BackendConnection;
    if (
      conn.roleMismatch &&
      conn.readOnlyRefusals > this.refusalsBefore &&
      this.replayOnWriter(conn)
    ) {
      return;
    }
    this.txStatus = status;
    this.unit.release();
    this.flushClient();
    if (this.unit.replays > 0) this.ctx.events.replay(this, ReplayOutcome.Succeeded);
    this.ctx.events.unitDone(this, this.unit.seconds, status === TxStatus.Idle);
    this.unit.end();
    if (this.settings.hasPending) {
      // The unit's SETs stayed only if it ended outside a transaction, with no error.
      if (
        status === TxStatus.Idle &&
        conn.errors === this.errorsBefore &&
        !this.unitSawTransaction
      ) {
        this.settings.commitPending(conn);
      } else {
        this.settings.dropPending();
        this.pin(conn, PinReason.Set); // what the server holds now is unknown: keep it
      }
    }
    this.errorsBefore = conn.errors;
    this.refusalsBefore = conn.readOnlyRefusals;
    this.unitSawTransaction = false;
    this.applyUnlistens();
    if (this.route?.mode === "transaction" && status === TxStatus.Idle && conn.pins.size === 0) {
      this.releaseLease();
    } else {
      this.state = SessionState.Active;
    }
    this.flushNotifications();
  }

  /**
   * The unit got 25006 from a server that reported, before its ReadyForQuery, that it is no longer
   * a writer (a failover): the refusal came before anything ran, and a read-only server wrote
   * nothing, so the unit goes to the writer instead, its held replies dropped. Only a unit none
   * of whose reply reached the client, under a retry policy, within retry_max.
   */
  private replayOnWriter(conn: BackendConnection): boolean {
    const policy = this.route?.retry;
    const unit = this.unit;
    if (!unit.holding || unit.forwarded || unit.overflow || !policy) return false;
    if (policy.mode === "off" || unit.replays >= policy.maxReplays) return false;
    this.lease = null;
    this.wire.serverDrained(conn);
    this.route?.pool.discard(conn, DisconnectReason.RoleChanged);
    unit.dropHeld();
    this.settings.dropPending();
    this.unitSawTransaction = false;
    const attempt = unit.replay();
    this.log.info(
      { client: this.id, server: conn.id, attempt },
      "server turned read-only (25006): replaying the unit on the writer",
    );
    this.requestServer();
    return true;
  }

  /** A Sync of a pipeline completed with more Syncs owed: its replies are final, send them. */
  synced(status: number): void {
    this.txStatus = status;
    if (status !== TxStatus.Idle) this.unitSawTransaction = true;
    // The rest of the unit can no longer be replayed: these replies were its first part.
    this.unit.release();
  }

  renamedError(buf: Buffer, start: number, end: number): void {
    const renamed = renameStatements(buf.subarray(start, end), (n) =>
      this.statements.clientNameOf(n),
    );
    this.unit.forwardRewritten(renamed);
  }

  ownNotification(buf: Buffer, start: number, end: number): void {
    const copy = Buffer.from(buf.subarray(start, end));
    if (this.key) copy.writeInt32BE(this.key.pid, 5);
    this.unit.emitAside(copy);
  }

  lost(reason: DisconnectReason, error: ServerError | null): void {
    const conn = this.lease;
    this.lease = null;
    if (conn === null) return;
    this.wire.serverDrained(conn);
    this.log.info(
      {
        client: this.id,
        server: conn.id,
        reason,
        sqlstate: error?.sqlstate,
        pool: this.route?.pool.key,
        in_unit: this.unit.open,
        in_transaction: conn.txStatus !== TxStatus.Idle,
        reply_forwarded: this.unit.forwarded,
        replied: this.unit.replied,
        reset_by_peer: conn.resetByPeer,
        owed: conn.owedReadyForQuery(),
        unit_bytes: this.unit.bytes,
      },
      "server lost while serving client",
    );
    this.route?.pool.discard(conn, reason);
    this.settings.dropPending(); // sent again with the unit if it is replayed
    this.unitSawTransaction = false;
    if (this.unit.holding) this.unit.dropHeld();
    else this.unit.flushOut();
    const owed = conn.owedReadyForQuery();
    const inTransaction = conn.txStatus !== TxStatus.Idle;
    conn.forgetOwedReplies();
    if (this.route?.mode === "transaction" && conn.pins.size > 0) {
      this.closeForLostState(conn);
      return;
    }
    if (!this.unit.open) {
      // Nothing in flight. A transaction the client holds open is gone: it learns at its next statement.
      if (inTransaction) {
        this.lostTransaction = true;
        this.lostUnreported = true;
        this.txStatus = TxStatus.Failed;
      }
      this.state = SessionState.Idle;
      this.flushClient();
      return;
    }
    const policy = this.route?.retry;
    const unit = this.unit.overflow ? null : this.unit.kept;
    // 8192: Postgres reads client input in 8 kB pieces (PQ_RECV_BUFFER_SIZE).
    const resetBeforeRead = conn.resetByPeer && owed === 1 && this.unit.bytes <= 8192;
    const statementText = (name: string) => this.statements.get(name)?.sql;
    const uncommitted =
      owed === 0 &&
      unit !== null &&
      !unitTexts(unit, statementText).some((t) => t === null || mayCommit(t));
    const lostUnit: LostUnit = {
      unit,
      written: conn.bytesSent > 0,
      replied: this.unit.replied,
      resetBeforeRead,
      uncommitted,
      replays: this.unit.replays,
      error,
      statementText,
    };
    if (!inTransaction && policy) {
      // Part of its reply reached the client: never replayed, whatever the policy.
      const verdict = this.unit.forwarded ? ReplayOutcome.NotRetryable : policy.decide(lostUnit);
      if (verdict === "replay") {
        const attempt = this.unit.replay();
        this.log.info({ client: this.id, attempt }, "replaying unit on another server");
        this.requestServer();
        return;
      }
      // gave_up is counted by failUnit (unit.replays > 0), once.
      if (verdict === ReplayOutcome.NotRetryable) {
        this.ctx.events.replay(this, ReplayOutcome.NotRetryable);
      }
    }
    const outcome = this.lostUnitOutcome(lostUnit, inTransaction);
    this.failUnit(outcome.error, outcome.status, owed);
  }

  /**
   * What the client is told about a unit its server died under (DESIGN.md section 1): work that
   * certainly did not run was simply lost (08006); a transaction that ended with the server was
   * rolled back, unless the unit may have committed it, whose outcome is unknown (08007).
   */
  private lostUnitOutcome(
    lost: LostUnit,
    inTransaction: boolean,
  ): { error: ProxyError; status: number } {
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
    const texts = unitTexts(this.unit.kept, lost.statementText);
    const commits = this.unit.overflow || texts.some((t) => t === null || mayCommit(t));
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
      !this.unit.overflow && texts.every((t) => t !== null && classifyStatement(t) === "read_only");
    return readOnly
      ? { error: lostConnectionError(false), status: TxStatus.Idle }
      : { error: resolutionUnknownError(), status: TxStatus.Idle };
  }

  /**
   * The backend of a pinned client died: the state it held (a role, a lock, temp tables) cannot
   * be rebuilt elsewhere, so the client must know its session is gone. Its work is not replayed.
   */
  private closeForLostState(conn: BackendConnection): void {
    const state = [...conn.pins].join(", ");
    this.log.info({ client: this.id, server: conn.id, pins: state }, "pinned server lost");
    this.unit.dropHeld();
    this.unit.end();
    const err = new ProxyError(
      "pinned_state_lost",
      "08006",
      `the server connection was lost with session state pgsidecar cannot restore (${state})`,
      "FATAL",
      "The session's state was lost with its server; reconnect and set it up again.",
    );
    this.ctx.events.clientError(this, err.sqlstate);
    this.wire.write(err.toMessage());
    this.flushClient();
    this.close(ClientCloseReason.ServerLost);
  }

  /** Ends the current unit with a non-fatal error: one ErrorResponse + ReadyForQuery per Sync owed. */
  private failUnit(err: ProxyError | ServerError, status: number, owed = -1): void {
    this.unit.endInputRun();
    if (owed < 0) owed = countSyncs(this.unit.kept);
    // A server's FATAL (e.g. its password changed) is reported as an ERROR: this connection lives on.
    const error = "raw" in err ? errorFromServer(err) : err.toMessage();
    this.unit.stopHolding();
    const sqlstate = err.sqlstate;
    for (let i = 0; i < owed; i++) {
      this.ctx.events.clientError(this, sqlstate);
      this.wire.write(error);
      this.wire.write(msg.readyForQuery(status));
    }
    if (owed === 0) {
      // Only Flush-terminated work was pending: report once and skip to the client's next Sync.
      this.ctx.events.clientError(this, sqlstate);
      this.wire.write(error);
      this.skipToSync = true;
    }
    // A transaction that ended as failed is answered by us until the client's ROLLBACK.
    this.lostTransaction = status === TxStatus.Failed;
    this.txStatus = status;
    if (this.unit.replays > 0) this.ctx.events.replay(this, ReplayOutcome.GaveUp);
    this.applyUnlistens();
    this.unit.end();
    this.state = SessionState.Idle;
    this.wire.resumeAfterUnit();
    this.flushClient();
  }

  private releaseLease(): void {
    const conn = this.lease;
    if (conn === null) return;
    this.lease = null;
    this.state = SessionState.Idle;
    this.wire.serverDrained(conn);
    conn.resumeReading();
    this.route?.pool.release(conn);
  }

  // --- writing to the client -------------------------------------------------------------------

  private flushClient(): void {
    this.unit.flushOut();
    this.wire.flush();
  }

  private reportError(err: ProxyError): void {
    this.ctx.events.clientError(this, err.sqlstate);
    this.wire.write(err.toMessage());
  }

  // --- admin console ----------------------------------------------------------------------------

  private onAdminMessage(code: number, buf: Buffer, start: number, end: number): void {
    if (code === FrontendCode.Terminate) {
      this.close(ClientCloseReason.ClientExit);
      return;
    }
    if (code !== FrontendCode.Query) {
      if (code === FrontendCode.Sync) this.wire.write(msg.readyForQueryIdle);
      else if (code === FrontendCode.Parse) {
        this.reportError(
          new ProxyError(
            "admin_extended",
            "0A000",
            "the admin console supports only simple queries",
          ),
        );
      }
      this.flushClient();
      return;
    }
    const sql = buf.toString("utf8", start + HEADER, end - 1);
    const out = this.ctx.adminQuery ? this.ctx.adminQuery(this, sql) : [];
    for (const b of out) this.wire.write(b);
    this.wire.write(msg.readyForQueryIdle);
    this.flushClient();
  }

  // --- cancel and close ---------------------------------------------------------------------------

  /**
   * client_write_timeout: closes a client that holds a server but has not read its replies (its
   * socket full, no 'drain') for longer than `ms`. Its server is paused meanwhile, and would be
   * held for good: enough such clients and no one else gets a server. The server is released as
   * dirty (cancelled and closed); a client that reads slowly is never cut, as every drain counts.
   */
  closeIfStalledFor(ms: number, now: number): void {
    const since = this.wire.stalledSince;
    if (since === null || this.lease === null || this.state === SessionState.Closed) return;
    if (now - since <= ms) return;
    this.log.info(
      { client: this.id, server: this.lease.id, pool: this.route?.pool.key, ms },
      "client_write_timeout: client stopped reading while holding a server",
    );
    const err = new ProxyError(
      "client_write_timeout",
      "08006",
      `terminating connection: the client has not read its results for ${Math.round(ms / 1000)} s (client_write_timeout)`,
      "FATAL",
    );
    this.ctx.events.clientError(this, err.sqlstate);
    this.wire.writeNow(err.toMessage()); // read only if the client ever reads again
    this.close(ClientCloseReason.WriteTimeout);
  }

  /** client_idle_timeout: closes a client idle (no transaction, no server) for longer than `ms`. */
  closeIfIdleFor(ms: number, now: number): void {
    if (this.state !== SessionState.Idle || this.lease !== null || this.txStatus !== TxStatus.Idle)
      return;
    if (now - this.lastActivityAt <= ms) return;
    this.fatal(
      ClientCloseReason.IdleTimeout,
      new ProxyError(
        "client_idle_timeout",
        "57P05",
        "terminating connection due to idle-session timeout (client_idle_timeout)",
        "FATAL",
      ),
    );
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
    const conn = this.lease;
    if (conn === null || !conn.owesReplies) return;
    conn.cancel(() => this.lease === conn && conn.owesReplies);
  }

  /** Sends a FATAL (when the protocol allows one) and closes for `reason`. */
  fatal(reason: ClientCloseReason, err: ProxyError): void {
    if (this.state === SessionState.Closed) return;
    this.ctx.events.clientError(this, err.sqlstate);
    this.wire.writeNow(err.toMessage());
    this.close(reason);
  }

  /** Closes the client: withdraws a wait, returns (or cleans) the server, frees the cancel key. */
  close(reason: ClientCloseReason): void {
    if (this.closing) return;
    this.closing = true;
    const wasActive = this.state;
    if (wasActive === SessionState.Startup && this.startupBuf.length > 0) {
      // Postgres logs this (COMMERROR) and, the client being gone, tells it nothing.
      this.log.info({ client: this.id, remote: this.remote }, "incomplete startup packet");
    }
    this.state = SessionState.Closed;
    this.wire.end();
    this.scanner.stop();
    if (this.loginTimer) clearTimeout(this.loginTimer);
    this.waiter?.cancel();
    this.waiter = null;
    if (this.subscribed) this.route?.notifications?.unlisten(null, this);
    this.notifications = null;
    const conn = this.lease;
    this.lease = null;
    if (conn && this.route) {
      conn.resumeReading();
      const clean = !conn.owesReplies && conn.txStatus === TxStatus.Idle && conn.pins.size === 0;
      if (this.route.mode === "session") {
        if (!conn.owesReplies) this.route.pool.releaseAfterSession(conn);
        else this.route.pool.releaseDirty(conn);
      } else if (clean) this.route.pool.release(conn);
      else this.route.pool.releaseDirty(conn);
    }
    if (this.key) this.ctx.cancels.release(this.key.pid);
    this.log.debug(
      { client: this.id, pool: this.route?.pool.key, reason, state: wasActive },
      "client closed",
    );
    this.ctx.sessionClosed(this, reason);
  }
}

/** Startup parameters that are not settings to try at login (the usual ones a driver sends). */
const LOGIN_ONLY_PARAMETERS = new Set([
  "user",
  "database",
  "replication",
  "application_name",
  "fallback_application_name",
  "client_encoding",
]);

/** Notifications kept for a client while it is in a transaction; more are dropped (and counted). */
const MAX_QUEUED_NOTIFICATIONS = 1000;
