// Login: a client from its first byte until ReadyForQuery. The startup packet (SSLRequest,
// GSSENCRequest, direct TLS, CancelRequest, the protocol version), authentication, routing to a
// pool or the admin console, and the first login a pool waits for (it learns the server's
// parameters; a client's startup settings are tried on a server there, as Postgres applies them).
// The session drops this object once the client is logged in.

import type { BackendConnection } from "../backend/backend-connection.js";
import { Action } from "../backend/expected-responses.js";
import type { Pool } from "../backend/pool.js";
import * as clock from "../clock.js";
import {
  lostConnectionError,
  type ProxyError,
  ProxyErrorReason,
  proxyError,
  proxyErrorFrom,
  type ServerError,
} from "../errors.js";
import type { Logger } from "../log.js";
import { FrontendCode } from "../protocol/codes.js";
import type { FrameScanner } from "../protocol/frame-scanner.js";
import * as msg from "../protocol/messages.js";
import {
  decodeStartupPacket,
  parseOptions,
  type StartupError,
  type StartupPacket,
  startupPacketLength,
} from "../protocol/startup.js";
import { ClientCloseReason } from "../reasons.js";
import { ClientAuth, MAX_PASSWORD_MESSAGE } from "./client-auth.js";
import { type ClientSettings, setStatement } from "./client-settings.js";
import type { ClientWire } from "./client-wire.js";
import { asFatal } from "./replies.js";
import type { Route, SessionContextOf } from "./session-context.js";

const HEADER = 5;
/** Names the length limit before login in a protocol error. */
const AUTH_LIMIT = "the limit for authentication messages";

/** Startup parameters that are not settings to try at login (the usual ones a driver sends). */
const LOGIN_ONLY_PARAMETERS = new Set([
  "user",
  "database",
  "replication",
  "application_name",
  "fallback_application_name",
  "client_encoding",
]);

/** The parameters the admin console reports at login. */
const ADMIN_PARAMETERS: ReadonlyMap<string, string> = new Map([
  ["server_version", "15.0 (pgsidecar)"],
  ["client_encoding", "UTF8"],
]);

/**
 * One Route object per pool, shared by its clients (the proxy makes a new one per login): the last
 * one seen for the pool, as long as it routes the same way.
 */
const routes = new WeakMap<Pool, Route>();
function sharedRoute(route: Route): Route {
  const known = routes.get(route.pool);
  if (
    known !== undefined &&
    known.mode === route.mode &&
    known.retry === route.retry &&
    known.notifications === route.notifications
  ) {
    return known;
  }
  routes.set(route.pool, route);
  return route;
}

/** Something the session waits for: a server checkout, or the pool's LISTEN server. */
export interface Wait {
  readonly done?: boolean;
  cancel(): void;
}

/** What a login reads of its session, and the moves it asks the session to make. */
export interface LoginOwner {
  readonly id: number;
  readonly log: Logger;
  readonly wire: ClientWire;
  readonly scanner: FrameScanner;
  readonly settings: ClientSettings;
  readonly user: string;
  readonly database: string;
  /** The session's state, for the log. */
  readonly state: string;
  /** The session closed (the client left while a login step was under way). */
  readonly closed: boolean;
  /** Who the StartupMessage says the client is. */
  identify(user: string, database: string, applicationName: string): void;
  /** The StartupMessage was accepted: password messages come next. */
  authenticating(): void;
  /** Whether this user may use the admin console; the session becomes an admin session if so. */
  openAdmin(): boolean;
  /** The client's work goes to `route` from now on. */
  routed(route: Route): void;
  /** Authenticated, waiting for the pool's first server login. */
  loggingIn(): void;
  waitFor(wait: Wait): void;
  /** Issues the client's cancel key: its BackendKeyData. */
  issueKey(protocolMinor: number): Buffer;
  /** The client was told its parameters and key: the session is ready for queries. */
  loggedIn(): void;
  /** Client messages pipelined behind the StartupMessage. */
  scan(bytes: Buffer): void;
  fatal(reason: ClientCloseReason, err: ProxyError): void;
  close(reason: ClientCloseReason): void;
}

/**
 * The session waits on its Login (a Wait) from authentication until ReadyForQuery: what the client
 * pipelines meanwhile is kept, never sent for a server of its own (a second checkout would race the
 * login's, and the server of one would be left leased to nobody). loggedIn() ends the wait.
 */
export class Login implements Wait {
  private startupBuf: Buffer | null = null;
  /** The pool checkout of the first login or the startup settings' check, until answered. */
  private checkout: Wait | null = null;
  private auth: ClientAuth | null = null;
  private readonly timer: clock.Timer;
  private protocolMinor = 0;
  /** The StartupMessage was accepted (authentication began). */
  private started = false;
  /** The StartupMessage carried settings (statement_timeout, options ...): tried at login. */
  private startupSettings = false;

  constructor(
    private readonly owner: LoginOwner,
    private readonly ctx: SessionContextOf<never>,
  ) {
    // Until login, messages are held to Postgres's limits for authentication (see onStartup).
    owner.scanner.setLimit(MAX_PASSWORD_MESSAGE, AUTH_LIMIT);
    this.timer = clock.after(ctx.loginTimeoutMs, () => this.onTimeout());
    // The info logs below name the client's address, also after it left: read it while the socket
    // is open (Node then keeps it on the socket; below info, no client holds it).
    if (ctx.log.isLevelEnabled("info")) void owner.wire.remote;
  }

  /** The session closed while the login waited on the pool: withdraw the checkout. */
  cancel(): void {
    const checkout = this.checkout;
    this.checkout = null;
    checkout?.cancel();
  }

  /** The session closed before the login completed. */
  stop(): void {
    clock.cancel(this.timer);
    if (!this.started && this.startupBuf !== null && this.startupBuf.length > 0) {
      // Postgres logs this (COMMERROR) and, the client being gone, tells it nothing.
      this.owner.log.info(
        { client: this.owner.id, remote: this.owner.wire.remote },
        "incomplete startup packet",
      );
    }
  }

  /** Bytes before the StartupMessage: an SSL/GSS request, a CancelRequest, or a ClientHello. */
  onStartupData(chunk: Buffer): void {
    const owner = this.owner;
    const data = this.startupBuf?.length ? Buffer.concat([this.startupBuf, chunk]) : chunk;
    this.startupBuf = data;
    if (data[0] === 0x16 && !owner.wire.isTls) {
      // A TLS ClientHello: direct SSL negotiation (Postgres 17, sslnegotiation=direct).
      this.startupBuf = null;
      if (!this.ctx.tls) owner.close(ClientCloseReason.ProtocolError);
      else owner.wire.startDirectTls(data, this.ctx.tls);
      return;
    }
    let len: number;
    let packet: StartupPacket;
    try {
      len = startupPacketLength(data);
      if (len === 0) return;
      packet = decodeStartupPacket(data.subarray(0, len));
    } catch (err) {
      const e = err as StartupError;
      owner.log.info(
        { client: owner.id, remote: owner.wire.remote, err: e.message },
        "bad startup packet",
      );
      // Where Postgres only logs (an impossible length, a bad CancelRequest) it closes without a
      // word: a client that sends Terminate before its StartupMessage (node-postgres's end()
      // right after connect()) must not see an error it would report.
      if (e.quiet) owner.close(ClientCloseReason.ProtocolError);
      else
        owner.fatal(ClientCloseReason.ProtocolError, proxyErrorFrom(ProxyErrorReason.Startup, e));
      return;
    }
    const rest = data.subarray(len);
    this.startupBuf = null;
    switch (packet.kind) {
      case "ssl":
      case "gssenc":
        if (rest.length > 0) {
          // Data after the request would be read as if it came over TLS (CVE-2021-23222).
          owner.fatal(
            ClientCloseReason.ProtocolError,
            proxyError(ProxyErrorReason.Startup, "received unencrypted data after SSL request"),
          );
          return;
        }
        if (packet.kind === "ssl" && this.ctx.tls && !owner.wire.isTls) {
          owner.wire.writeNow(msg.sslRequestYes);
          owner.wire.upgradeTls(this.ctx.tls);
        } else {
          owner.wire.writeNow(msg.sslRequestNo);
        }
        return;
      case "cancel":
        this.ctx.cancels.cancel(packet.pid, packet.secret);
        owner.close(ClientCloseReason.CancelRequest);
        return;
      case "startup":
        this.onStartup(packet);
        // What it pipelined behind the StartupMessage.
        if (rest.length > 0 && !owner.closed) owner.scan(rest);
        return;
    }
  }

  private onStartup(p: Extract<StartupPacket, { kind: "startup" }>): void {
    const owner = this.owner;
    // 3.0 and 3.2 are served as asked; any other 3.x minor, or unknown _pq_ options, get
    // NegotiateProtocolVersion, but never a client that asked for exactly 3.0 (libpq < 18 would
    // fail on the unexpected message).
    this.protocolMinor = p.minor >= 2 ? 2 : 0;
    const needsNegotiation = p.minor !== 0 && (p.minor !== 2 || p.protocolOptions.length > 0);
    if (needsNegotiation) {
      owner.wire.writeNow(msg.negotiateProtocolVersion(this.protocolMinor, p.protocolOptions));
    }
    const user = p.params.get("user") as string;
    owner.identify(
      user,
      p.params.get("database") || user,
      p.params.get("application_name") ?? p.params.get("fallback_application_name") ?? "",
    );
    const settings = owner.settings;
    for (const [key, value] of p.params) {
      if (key === "user" || key === "database" || key === "replication" || key === "options")
        continue;
      if (key === "fallback_application_name") continue;
      settings.set(key.toLowerCase(), { name: key, value });
    }
    if (!p.params.has("application_name") && p.params.has("fallback_application_name")) {
      settings.set("application_name", {
        name: "application_name",
        value: p.params.get("fallback_application_name") as string,
      });
    }
    const options = p.params.get("options");
    this.startupSettings = false;
    for (const k of p.params.keys()) if (!LOGIN_ONLY_PARAMETERS.has(k)) this.startupSettings = true;
    if (options) {
      for (const [key, value] of parseOptions(options))
        settings.set(key.toLowerCase(), { name: key, value });
    }
    if (p.params.get("replication") && p.params.get("replication") !== "false") {
      owner.fatal(ClientCloseReason.ProtocolError, proxyError(ProxyErrorReason.Replication));
      return;
    }
    if (this.ctx.tlsRequired && !owner.wire.isTls && owner.wire.remote !== "unix") {
      // Postgres's hostssl-only refusal: 28000 once the StartupMessage is read.
      owner.fatal(ClientCloseReason.LoginFailed, proxyError(ProxyErrorReason.TlsRequired));
      return;
    }
    owner.authenticating();
    this.started = true;
    this.auth = new ClientAuth(this.ctx.authType, user, this.ctx.findUser(user));
    owner.scanner.setLimit(this.auth.maxResponseBytes, AUTH_LIMIT);
    owner.scanner.expectOnly(FrontendCode.PasswordMessage, this.auth.responseName);
    this.onAuthStep(this.auth.start());
  }

  /** A message while authenticating: only the password (or SASL) response is expected. */
  onAuthMessage(code: number, buf: Buffer, start: number, end: number): void {
    if (code !== FrontendCode.PasswordMessage) {
      this.owner.fatal(
        ClientCloseReason.ProtocolError,
        proxyError(
          ProxyErrorReason.AuthProtocol,
          `expected password response, got message type ${code}`,
        ),
      );
      return;
    }
    this.onAuthStep((this.auth as ClientAuth).respond(buf.subarray(start + HEADER, end)));
  }

  private onAuthStep(step: ReturnType<ClientAuth["start"]>): void {
    const owner = this.owner;
    switch (step.kind) {
      case "send":
        owner.wire.writeNow(step.message);
        return;
      case "fail":
        owner.log.info(
          { client: owner.id, user: owner.user, sqlstate: step.error.sqlstate },
          "client authentication failed",
        );
        owner.fatal(ClientCloseReason.LoginFailed, step.error);
        return;
      case "ok":
        if (step.message) owner.wire.writeNow(step.message);
        owner.wire.writeNow(msg.authenticationOk);
        this.auth = null;
        owner.scanner.expectOnly(-1);
        this.afterAuthentication();
        return;
    }
  }

  private afterAuthentication(): void {
    const owner = this.owner;
    if (this.ctx.draining) {
      owner.fatal(
        ClientCloseReason.Shutdown,
        proxyError(ProxyErrorReason.Shutdown, "the sidecar is shutting down"),
      );
      return;
    }
    if (this.ctx.openAdmin && owner.database === "pgsidecar") {
      if (!owner.openAdmin()) {
        owner.fatal(
          ClientCloseReason.LoginFailed,
          proxyError(
            ProxyErrorReason.AdminDenied,
            `user "${owner.user}" is not an admin of the pgsidecar console`,
          ),
        );
        return;
      }
      this.finish(ADMIN_PARAMETERS);
      return;
    }
    const found = this.ctx.route(owner.database, owner.user);
    if (found === null) {
      owner.fatal(
        ClientCloseReason.LoginFailed,
        proxyError(ProxyErrorReason.NoDatabase, `database "${owner.database}" does not exist`),
      );
      return;
    }
    const route = sharedRoute(found);
    owner.routed(route);
    const known = route.pool.serverParams;
    if (known && !this.startupSettings) {
      this.finish(known);
      return;
    }
    // The first client of a pool waits for one server login to learn server_version & co; a
    // client with startup settings has them tried on a server, as Postgres applies them at login.
    owner.loggingIn();
    // Until ReadyForQuery, what the client pipelines is kept for after its login (see Login).
    owner.waitFor(this);
    // The callback may run before checkout() returns (an idle server was at hand).
    const checkout = route.pool.checkout((err, conn) => {
      this.checkout = null;
      if (owner.closed) {
        if (conn) route.pool.giveBack(conn, "clean");
        return;
      }
      if (err || !conn) {
        this.failed(err as ProxyError | ServerError);
        return;
      }
      this.checkStartupSettings(route, conn);
    });
    if (!checkout.done) this.checkout = checkout;
  }

  /**
   * Runs the client's startup settings (statement_timeout, search_path, ... from its
   * StartupMessage or `options`) on a server before login completes: a value Postgres would
   * reject gets Postgres's FATAL, as it does at login, never a stray ERROR before a later query.
   */
  private checkStartupSettings(route: Route, conn: BackendConnection): void {
    const owner = this.owner;
    const finish = () => {
      route.pool.giveBack(conn, "clean");
      // A copy of the server's: its parameters change as it reports them, and login shares
      // what it makes of the ones it is given (ClientSettings.loggedIn).
      this.finish(route.pool.serverParams ?? new Map(conn.params));
    };
    const reported = new Set([...conn.params.keys()].map((k) => k.toLowerCase()));
    const statements: Array<[string, string]> = [];
    for (const [lc, s] of owner.settings.entries()) {
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
        if (owner.closed) return route.pool.giveBack(conn, "clean");
        if (rejected === null) {
          // The server now has them: the first unit on it needs no SET.
          for (const [lc, statement] of statements) conn.recordSetting(lc, statement);
          return finish();
        }
        route.pool.giveBack(conn, "clean"); // the failed statement left nothing behind (one implicit transaction)
        owner.wire.writeNow(asFatal(rejected));
        owner.close(ClientCloseReason.LoginFailed);
      },
      lost: (_reason, error) => this.failed(error ?? lostConnectionError(false)),
    };
    conn.expect(FrontendCode.Query, Action.Forward);
    conn.write(msg.query(statements.map(([, statement]) => `${statement};`).join("")));
  }

  private failed(err: ProxyError | ServerError): void {
    if ("raw" in err) {
      // A server FATAL the client must see (bad password upstream, database gone), unchanged.
      this.owner.wire.writeNow(err.raw);
      this.owner.close(ClientCloseReason.LoginFailed);
      return;
    }
    this.owner.fatal(ClientCloseReason.LoginFailed, err.asFatal());
  }

  /** ParameterStatus for each reported parameter, BackendKeyData, ReadyForQuery. */
  private finish(serverParams: ReadonlyMap<string, string>): void {
    const owner = this.owner;
    clock.cancel(this.timer);
    owner.scanner.setLimit(this.ctx.maxMessageBytes);
    owner.settings.loggedIn(serverParams, this.ctx.trackExtraParameters);
    owner.wire.writeNow(
      Buffer.concat([
        owner.settings.loginMessages(),
        owner.issueKey(this.protocolMinor),
        msg.readyForQueryIdle,
      ]),
    );
    owner.loggedIn();
  }

  private onTimeout(): void {
    const owner = this.owner;
    if (owner.closed) return;
    owner.log.info({ client: owner.id, state: owner.state }, "client_login_timeout");
    if (!this.started) {
      owner.close(ClientCloseReason.LoginTimeout);
      return;
    }
    owner.fatal(ClientCloseReason.LoginTimeout, proxyError(ProxyErrorReason.LoginTimeout));
  }
}
