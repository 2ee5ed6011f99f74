// ClientSession: one client's state machine. enter() is the only change of state; each state
// decides what a client message means (dispatch below). The parts own the rest: Login until the
// client is logged in, then the Unit of work, the Relay of its frames to the server it holds, the
// ServerLease (checkout, replies, release), and UnitLoss when that server dies. Upstream failures
// never close the client: they are replayed or reported as ordinary errors (DESIGN.md section 1).

import type net from "node:net";
import type { BackendConnection } from "../backend/backend-connection.js";
import type { Pool } from "../backend/pool.js";
import * as clock from "../clock.js";
import { type ProxyError, ProxyErrorReason, proxyError } from "../errors.js";
import type { Logger } from "../log.js";
import { TxStatus } from "../protocol/codes.js";
import { FrameScanner, type FrameSink } from "../protocol/frame-scanner.js";
import * as msg from "../protocol/messages.js";
import { ClientCloseReason, type PinReason, type ReplayOutcome } from "../reasons.js";
import {
  type CancelKey,
  type Cancellable,
  type CancelSecret,
  newCancelSecret,
  secretBytes,
} from "./cancel.js";
import { MAX_PASSWORD_MESSAGE } from "./client-auth.js";
import { ClientSettings } from "./client-settings.js";
import { ClientStatements } from "./client-statements.js";
import { ClientWire, type WireOwner } from "./client-wire.js";
import { type LeaseOwner, ServerLease } from "./lease.js";
import { ClientListens, type ListensOwner } from "./listens.js";
import { type AdminOwner, answerAdmin, type LocalOwner } from "./local-answers.js";
import { Login, type LoginOwner, type Wait } from "./login.js";
import type { NotificationHub } from "./notification-hub.js";
import { Relay, type RelayOwner } from "./relay.js";
import { type ChangesOwner, SessionChanges } from "./session-changes.js";
import type {
  Route,
  SessionContextOf,
  SessionEventsOf,
  StatementLookup,
} from "./session-context.js";
import { Unit, type UnitOwner } from "./unit.js";
import { UnitLoss, type UnitLossOwner } from "./unit-loss.js";

export type { Route } from "./session-context.js";
export type SessionContext = SessionContextOf<ClientSession>;
export type SessionEvents = SessionEventsOf<ClientSession>;

export const SessionState = {
  Startup: "startup",
  Authenticating: "authenticating",
  /** Authenticated; waiting for the pool to learn the server's parameters. */
  LoggingIn: "logging_in",
  /** Logged in; no server, nothing in flight (or only what we answer ourselves). */
  Idle: "idle",
  /** Waiting for a server from the pool. */
  Waiting: "waiting",
  /** Holding a server (a lease). */
  Active: "active",
  Closed: "closed",
} as const;
export type SessionState = (typeof SessionState)[keyof typeof SessionState];

let nextSessionId = 1;
const NO_PINS: ReadonlySet<string> = new Set();
/**
 * Times are kept as milliseconds since this instant: small integers, held in the object itself,
 * where epoch milliseconds would each take a heap number of their own (16 bytes per field).
 */
const EPOCH = clock.now();

/**
 * Short strings every client of a pool repeats (user, database, application_name): one copy each,
 * not one per client. Bounded (it is filled before authentication): names up to 63 characters,
 * and when full it starts over.
 */
const interned = new Map<string, string>();
function intern(s: string): string {
  if (s.length > 63) return s;
  const known = interned.get(s);
  if (known !== undefined) return known;
  if (interned.size >= 1024) interned.clear();
  interned.set(s, s);
  return s;
}

/**
 * An idle client holds its socket, this object, its wire and scanner, and little else: the parts
 * below (unit, relay, lease, loss, changes, statements) are created on first use, its settings are
 * shared with the other clients of its pool until they differ, and its cancel key is two numbers.
 */
export class ClientSession
  implements
    Cancellable,
    FrameSink,
    WireOwner,
    UnitOwner,
    LoginOwner,
    RelayOwner,
    ChangesOwner,
    UnitLossOwner,
    LeaseOwner,
    ListensOwner,
    LocalOwner,
    AdminOwner
{
  readonly id = nextSessionId++;
  /** Milliseconds since EPOCH. */
  readonly #connectedAt = clock.now() - EPOCH;
  user = "";
  database = "";
  applicationName = "";
  /** Sidecar-issued BackendKeyData: the pid (0 until issued) and the secret (see CancelKey). */
  #keyPid = 0;
  #keySecret: CancelSecret = 0;
  /** The client's transaction status, as last reported to it. */
  txStatus: number = TxStatus.Idle;
  /** When the client last sent anything (client_idle_timeout), in milliseconds since EPOCH. */
  #lastActivity = this.#connectedAt;

  readonly wire: ClientWire;
  readonly scanner: FrameScanner;
  /** Settings this client expects on any server, and the parameters it was told of. */
  readonly settings = new ClientSettings();
  #statements: ClientStatements | null = null;
  #unit: Unit | null = null;
  #changes: SessionChanges | null = null;
  #relay: Relay | null = null;
  #loss: UnitLoss | null = null;
  #serverLease: ServerLease | null = null;
  /** Until the client is logged in. */
  private login: Login | null;
  private listening: ClientListens | null = null;
  #state: SessionState = SessionState.Startup;
  #route: Route | null = null;
  #admin = false;
  /** A server checkout, a LISTEN waiting for the pool's listening server, or the login. */
  private waiter: Wait | null = null;

  constructor(
    socket: net.Socket,
    private readonly ctx: SessionContext,
  ) {
    this.wire = new ClientWire(socket, this);
    this.scanner = new FrameScanner(MAX_PASSWORD_MESSAGE);
    this.login = new Login(this, ctx);
  }

  // --- the parts, created on first use -----------------------------------------------------------

  get statements(): ClientStatements {
    this.#statements ??= new ClientStatements();
    return this.#statements;
  }

  get unit(): Unit {
    this.#unit ??= new Unit(this);
    return this.#unit;
  }

  get changes(): SessionChanges {
    this.#changes ??= new SessionChanges(this);
    return this.#changes;
  }

  get relay(): Relay {
    this.#relay ??= new Relay(this);
    return this.#relay;
  }

  get loss(): UnitLoss {
    this.#loss ??= new UnitLoss(this);
    return this.#loss;
  }

  private get serverLease(): ServerLease {
    this.#serverLease ??= new ServerLease(this);
    return this.#serverLease;
  }

  /** When the client connected, in epoch milliseconds. */
  get connectedAt(): number {
    return EPOCH + this.#connectedAt;
  }

  /** When the client last sent anything, in epoch milliseconds. */
  get lastActivityAt(): number {
    return EPOCH + this.#lastActivity;
  }

  /** Sidecar-issued BackendKeyData, or null before it is issued. */
  get key(): CancelKey | null {
    return this.#keyPid === 0 ? null : { pid: this.#keyPid, secret: this.#keySecret };
  }

  get cancelSecret(): CancelSecret {
    return this.#keySecret;
  }

  /** A CancelRequest named this client's key: the server running its work, if any, is cancelled. */
  cancelCurrent(): void {
    this.#serverLease?.cancelCurrent();
  }

  get state(): SessionState {
    return this.#state;
  }

  get route(): Route | null {
    return this.#route;
  }

  /** The server the session holds, or null. */
  get lease(): BackendConnection | null {
    return this.#serverLease?.server ?? null;
  }

  get isAdmin(): boolean {
    return this.#admin;
  }

  get closed(): boolean {
    return this.#state === SessionState.Closed;
  }

  get log(): Logger {
    return this.ctx.log;
  }

  get pins(): ReadonlySet<string> {
    return this.lease?.pins ?? NO_PINS;
  }

  get preparedCount(): number {
    return this.#statements?.size ?? 0;
  }

  /** ip:port of the client, or "unix". */
  get remote(): string {
    return this.wire.remote;
  }

  /** The only change of state; `why` names the cause in the trace log. Closed is close()'s. */
  private enter(next: SessionState, why: string): void {
    const from = this.#state;
    this.#state = next;
    if (this.ctx.log.isLevelEnabled("trace")) {
      this.ctx.log.trace({ client: this.id, from, to: next, why }, "client state");
    }
  }

  // --- what the parts read of the session ------------------------------------------------------

  get retryBufferBytes(): number {
    return this.#route?.retry.bufferBytes ?? 0;
  }

  get pooledByTransaction(): boolean {
    return this.#route?.mode === "transaction";
  }

  get transactionPool(): Pool | null {
    const route = this.#route;
    return route?.mode === "transaction" ? route.pool : null;
  }

  get namesStatements(): boolean {
    return this.pooledByTransaction && this.ctx.maxPreparedStatements > 0;
  }

  get hub(): NotificationHub | null {
    return this.#route?.notifications ?? null;
  }

  get trackExtraParameters(): ReadonlySet<string> {
    return this.ctx.trackExtraParameters;
  }

  /** Waiting for a server, or for the pool's LISTEN server. */
  get awaiting(): boolean {
    return this.waiter !== null;
  }

  /** A unit may be replayed (retry is not off): its replies are held outside a transaction. */
  get mayReplay(): boolean {
    return this.#route?.retry.mode !== "off";
  }

  /** Between transactions with nothing in flight or awaited: notifications may be delivered. */
  get quiet(): boolean {
    return !this.#unit?.open && this.waiter === null && this.txStatus === TxStatus.Idle;
  }

  /** The client's LISTENs through the pool's listening server, created on first use. */
  listens(hub: NotificationHub): ClientListens {
    this.listening ??= new ClientListens(this, hub);
    return this.listening;
  }

  unlistenAll(): void {
    this.listening?.unlistenAll();
  }

  countBytesOut(n: number): void {
    this.ctx.events.bytes("out", n);
  }

  countClientError(sqlstate: string): void {
    this.ctx.events.clientError(this, sqlstate);
  }

  countReplay(outcome: ReplayOutcome): void {
    this.ctx.events.replay(this, outcome);
  }

  countPin(reason: PinReason): void {
    this.ctx.events.pinned(this, reason);
  }

  countStatement(kind: StatementLookup): void {
    this.ctx.events.statement(this, kind);
  }

  countUnit(seconds: number, transactionEnded: boolean): void {
    this.ctx.events.unitDone(this, seconds, transactionEnded);
  }

  countDropped(n: number): void {
    this.ctx.events.notificationsDropped?.(n);
  }

  reportError(err: ProxyError): void {
    this.countClientError(err.sqlstate);
    this.wire.write(err.toMessage());
  }

  adminQuery(sql: string): Buffer[] {
    return this.ctx.adminQuery ? this.ctx.adminQuery(this, sql) : [];
  }

  flushClient(): void {
    this.#unit?.flushOut();
    this.wire.flush();
  }

  waitFor(wait: Wait): void {
    this.waiter = wait.done ? null : wait;
  }

  waitOver(): void {
    this.waiter = null;
  }

  // --- login (Login calls these) ---------------------------------------------------------------

  identify(user: string, database: string, applicationName: string): void {
    this.user = intern(user);
    this.database = intern(database);
    this.applicationName = intern(applicationName);
  }

  authenticating(): void {
    this.enter(SessionState.Authenticating, "startup message");
  }

  openAdmin(): boolean {
    this.#admin = this.ctx.openAdmin?.(this) === true;
    return this.#admin;
  }

  routed(route: Route): void {
    this.#route = route;
  }

  loggingIn(): void {
    this.enter(SessionState.LoggingIn, "first login of the pool");
  }

  issueKey(protocolMinor: number): Buffer {
    const secret = newCancelSecret(protocolMinor >= 2 ? 32 : 4);
    this.#keySecret = secret;
    this.#keyPid = this.ctx.cancels.issue(this);
    return msg.backendKeyData(this.#keyPid, secretBytes(secret));
  }

  loggedIn(): void {
    this.login = null;
    this.waiter = null; // the login's (see Login): what the client pipelined now asks for a server
    this.enter(SessionState.Idle, "logged in");
    if (this.log.isLevelEnabled("debug")) {
      this.log.debug(
        { client: this.id, user: this.user, database: this.database, pool: this.#route?.pool.key },
        "client logged in",
      );
    }
    if (this.#unit?.open) this.requestServer(); // what it pipelined behind its StartupMessage
  }

  scan(bytes: Buffer): void {
    this.scanner.push(bytes, this);
  }

  // --- client bytes (WireOwner, FrameSink) -----------------------------------------------------

  onData(chunk: Buffer): void {
    try {
      this.#lastActivity = clock.now() - EPOCH;
      this.ctx.events.bytes("in", chunk.length);
      if (this.#state === SessionState.Startup) this.login?.onStartupData(chunk);
      else {
        // Authentication needs no relay: it is created for the first chunk after login.
        (this.#state === SessionState.Authenticating ? this.#relay : this.relay)?.beginChunk();
        this.scanner.push(chunk, this);
        this.#relay?.endChunk();
      }
    } catch (err) {
      this.onInternalError(err);
    }
  }

  /** The client went away: close, with the same last-resort guard as onData. */
  onGone(): void {
    try {
      this.close(ClientCloseReason.ClientGone);
    } catch (err) {
      this.onInternalError(err);
    }
  }

  /**
   * Last resort for a bug met while handling this client's bytes. An exception out of a socket
   * handler would end the process, and every client with it: this client alone gets FATAL XX000.
   */
  private onInternalError(err: unknown): void {
    this.#relay?.abortChunk();
    const e = err instanceof Error ? err : new Error(String(err));
    this.log.error(
      { client: this.id, user: this.user, state: this.#state, err: e.message, stack: e.stack },
      "internal error, closing the client",
    );
    this.ctx.events.internalError(this);
    const alreadyClosed = this.closed;
    try {
      this.fatal(ClientCloseReason.InternalError, proxyError(ProxyErrorReason.ClientInternalError));
      if (!alreadyClosed) return;
    } catch {
      // closing failed as well: drop the socket and forget the session at least
    }
    this.wire.destroy();
    this.ctx.sessionClosed(this, ClientCloseReason.InternalError);
  }

  onMessage(code: number, buf: Buffer, start: number, end: number): void {
    const current = this.#state;
    switch (current) {
      case SessionState.Authenticating:
        this.login?.onAuthMessage(code, buf, start, end);
        return;
      case SessionState.LoggingIn:
        // Sent before its login completed (pipelined): kept, and run once it has.
        this.relay.receive(code, buf, start, end);
        return;
      case SessionState.Idle:
      case SessionState.Waiting:
      case SessionState.Active:
        if (this.#admin) answerAdmin(this, code, buf, start, end);
        else this.relay.receive(code, buf, start, end);
        return;
      case SessionState.Startup:
      case SessionState.Closed:
        return;
      default: {
        const unknown: never = current;
        throw new Error(`unknown session state ${unknown}`);
      }
    }
  }

  onContinuation(): void {
    // The client side reassembles every message; nothing is streamed.
  }

  onChunkEnd(): void {
    this.#unit?.endInputRun();
    this.#relay?.flush();
    this.lease?.flushSimulated();
    this.flushClient();
  }

  onProtocolError(message: string): void {
    this.log.info({ client: this.id, err: message }, "client protocol violation");
    this.fatal(
      ClientCloseReason.ProtocolError,
      proxyError(ProxyErrorReason.ProtocolViolation, message),
    );
    // Nothing more it sends matters: stop reading rather than take in (and discard) the rest of a
    // flood while the socket lingers; it is destroyed shortly (close()).
    this.wire.stopReading();
  }

  // --- the lease (ServerLease and UnitLoss call these) ---------------------------------------------

  requestServer(): void {
    this.serverLease.request();
  }

  letGo(conn: BackendConnection): void {
    this.serverLease.letGo(conn);
  }

  waiting(): void {
    this.enter(SessionState.Waiting, "unit needs a server");
  }

  active(why: string): void {
    this.enter(SessionState.Active, why);
  }

  idle(why = "unit over without a server"): void {
    this.enter(SessionState.Idle, why);
  }

  unitOver(): void {
    this.listening?.unitOver();
  }

  betweenUnits(): void {
    this.listening?.flush();
  }

  forgetUnitSettings(): void {
    this.#changes?.forgetUnit();
  }

  /** The client must act on what it has been sent (COPY FROM STDIN began): stop holding. */
  mustFlush(): void {
    this.unit.release();
  }

  // --- timeouts, cancel and close ----------------------------------------------------------------

  /** client_write_timeout: closes a client that stopped reading while holding a server. */
  closeIfStalledFor(ms: number, now: number): void {
    if (!this.closed) this.#serverLease?.closeIfStalledFor(ms, now);
  }

  /** client_idle_timeout: closes a client idle (no transaction, no server) for longer than `ms`. */
  closeIfIdleFor(ms: number, now: number): void {
    if (this.#state !== SessionState.Idle || this.lease !== null) return;
    if (this.txStatus !== TxStatus.Idle || now - this.lastActivityAt <= ms) return;
    this.fatal(ClientCloseReason.IdleTimeout, proxyError(ProxyErrorReason.ClientIdleTimeout));
  }

  /** Sends a FATAL (when the protocol allows one) and closes for `reason`. */
  fatal(reason: ClientCloseReason, err: ProxyError): void {
    if (this.closed) return;
    this.countClientError(err.sqlstate);
    this.wire.writeNow(err.toMessage());
    this.close(reason);
  }

  /** Closes the client: withdraws a wait, returns (or cleans) the server, frees the cancel key. */
  close(reason: ClientCloseReason): void {
    if (this.closed) return;
    const was = this.#state;
    this.login?.stop();
    this.login = null;
    this.enter(SessionState.Closed, reason);
    this.wire.end();
    this.scanner.stop();
    this.waiter?.cancel();
    this.waiter = null;
    this.listening?.close();
    this.#serverLease?.giveBack();
    if (this.#keyPid !== 0) this.ctx.cancels.release(this.#keyPid);
    if (this.log.isLevelEnabled("debug")) {
      this.log.debug(
        { client: this.id, pool: this.#route?.pool.key, reason, state: was },
        "client closed",
      );
    }
    this.ctx.sessionClosed(this, reason);
  }
}
