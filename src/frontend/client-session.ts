// ClientSession: one client's state machine. enter() is the only change of state (SessionState,
// client-state.ts); each state decides what a client message means (dispatch below). The parts own
// the rest: Login until the client is logged in, then the Unit of work, the Relay of its frames to
// the server it holds, the ServerLease (checkout, replies, release), and UnitLoss when that server
// dies. Who the client is, its route and its counters are SessionBase's (session-base.ts). Upstream
// failures never close the client: they are replayed or reported as ordinary errors (DESIGN.md
// section 1).

import type net from "node:net";
import type { BackendConnection } from "../backend/backend-connection.js";
import { type ProxyError, ProxyErrorReason, proxyError } from "../errors.js";
import { TxStatus } from "../protocol/codes.js";
import { FrameScanner, type FrameSink } from "../protocol/frame-scanner.js";
import { ClientCloseReason } from "../reasons.js";
import { MAX_PASSWORD_MESSAGE } from "./client-auth.js";
import { ClientSettings } from "./client-settings.js";
import { SessionState } from "./client-state.js";
import { ClientStatements } from "./client-statements.js";
import { ClientWire, type WireOwner } from "./client-wire.js";
import { type LeaseOwner, ServerLease } from "./lease.js";
import { ClientListens, type ListensOwner } from "./listens.js";
import { type AdminOwner, answerAdmin, type LocalOwner } from "./local-answers.js";
import { Login, type LoginOwner, type Wait } from "./login.js";
import type { NotificationHub } from "./notification-hub.js";
import { Relay, type RelayOwner } from "./relay.js";
import { SessionBase } from "./session-base.js";
import { type ChangesOwner, SessionChanges } from "./session-changes.js";
import type { SessionContextOf, SessionEventsOf } from "./session-context.js";
import { Unit, type UnitOwner } from "./unit.js";
import { UnitLoss, type UnitLossOwner } from "./unit-loss.js";

export { SessionState } from "./client-state.js";
export type { Route } from "./session-context.js";
export type SessionContext = SessionContextOf<ClientSession>;
export type SessionEvents = SessionEventsOf<ClientSession>;

const NO_PINS: ReadonlySet<string> = new Set();

/**
 * An idle client holds its socket, this object, its wire and scanner, and little else: the parts
 * below (unit, relay, lease, loss, changes, statements) are created on first use, its settings are
 * shared with the other clients of its pool until they differ, and its cancel key is two numbers
 * (SessionBase's fields are this object's: a base class, not a part).
 */
export class ClientSession
  extends SessionBase
  implements
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
  /** The client's transaction status, as last reported to it. */
  txStatus: number = TxStatus.Idle;

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
  /** A server checkout, a LISTEN waiting for the pool's listening server, or the login. */
  private waiter: Wait | null = null;

  constructor(
    socket: net.Socket,
    protected readonly ctx: SessionContext,
  ) {
    super();
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

  /** A CancelRequest named this client's key: the server running its work, if any, is cancelled. */
  cancelCurrent(): void {
    this.#serverLease?.cancelCurrent();
  }

  get state(): SessionState {
    return this.#state;
  }

  /** The server the session holds, or null. */
  get lease(): BackendConnection | null {
    return this.#serverLease?.server ?? null;
  }

  get closed(): boolean {
    return this.#state === SessionState.Closed;
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

  /** Waiting for a server, or for the pool's LISTEN server. */
  get awaiting(): boolean {
    return this.waiter !== null;
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

  reportError(err: ProxyError): void {
    this.countClientError(err.sqlstate);
    this.wire.write(err.toMessage());
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

  authenticating(): void {
    this.enter(SessionState.Authenticating, "startup message");
  }

  loggingIn(): void {
    this.enter(SessionState.LoggingIn, "first login of the pool");
  }

  loggedIn(): void {
    this.login = null;
    this.waiter = null; // the login's (see Login): what the client pipelined now asks for a server
    this.enter(SessionState.Idle, "logged in");
    if (this.log.isLevelEnabled("debug")) {
      this.log.debug(
        { client: this.id, user: this.user, database: this.database, pool: this.route?.pool.key },
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
      this.heard();
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
        if (this.isAdmin) answerAdmin(this, code, buf, start, end);
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
    this.releaseKey();
    if (this.log.isLevelEnabled("debug")) {
      this.log.debug(
        { client: this.id, pool: this.route?.pool.key, reason, state: was },
        "client closed",
      );
    }
    this.ctx.sessionClosed(this, reason);
  }
}
