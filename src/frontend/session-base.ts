// SessionBase: what a client session is apart from its state machine. ClientSession extends it
// (as BackendConnection extends ServerSession): who the client is (id, names, admin, cancel key,
// times), where its work goes (its route, and what the parts read of it), and the counters the
// parts report through it to the session events. Plain fields and no objects of its own: an idle
// client holds its socket, its session, wire and scanner, and little else (see ClientSession).

import type { Pool } from "../backend/pool.js";
import * as clock from "../clock.js";
import type { Logger } from "../log.js";
import * as msg from "../protocol/messages.js";
import type { PinReason, ReplayOutcome } from "../reasons.js";
import {
  type CancelKey,
  type Cancellable,
  type CancelSecret,
  newCancelSecret,
  secretBytes,
} from "./cancel.js";
import { intern } from "./interned-names.js";
import type { NotificationHub } from "./notification-hub.js";
import type { Route, SessionContextOf, StatementLookup } from "./session-context.js";

let nextSessionId = 1;
/**
 * Times are kept as milliseconds since this instant: small integers, held in the object itself,
 * where epoch milliseconds would each take a heap number of their own (16 bytes per field).
 */
const EPOCH = clock.now();

export abstract class SessionBase implements Cancellable {
  readonly id = nextSessionId++;
  /** Milliseconds since EPOCH. */
  readonly #connectedAt = clock.now() - EPOCH;
  user = "";
  database = "";
  applicationName = "";
  /** Sidecar-issued BackendKeyData: the pid (0 until issued) and the secret (see CancelKey). */
  #keyPid = 0;
  #keySecret: CancelSecret = 0;
  /** When the client last sent anything (client_idle_timeout), in milliseconds since EPOCH. */
  #lastActivity = this.#connectedAt;
  #route: Route | null = null;
  #admin = false;

  /** The proxy's context; the session (ClientSession) is what its callbacks and events receive. */
  protected abstract readonly ctx: SessionContextOf<this>;

  /** A CancelRequest named this client's key: the server running its work, if any, is cancelled. */
  abstract cancelCurrent(): void;

  // --- who the client is -------------------------------------------------------------------------

  /** When the client connected, in epoch milliseconds. */
  get connectedAt(): number {
    return EPOCH + this.#connectedAt;
  }

  /** When the client last sent anything, in epoch milliseconds. */
  get lastActivityAt(): number {
    return EPOCH + this.#lastActivity;
  }

  /** The client sent something (client_idle_timeout counts from here). */
  protected heard(): void {
    this.#lastActivity = clock.now() - EPOCH;
  }

  /** Who the StartupMessage says the client is. */
  identify(user: string, database: string, applicationName: string): void {
    this.user = intern(user);
    this.database = intern(database);
    this.applicationName = intern(applicationName);
  }

  get isAdmin(): boolean {
    return this.#admin;
  }

  /** Whether this user may use the admin console; the session becomes an admin session if so. */
  openAdmin(): boolean {
    this.#admin = this.ctx.openAdmin?.(this) === true;
    return this.#admin;
  }

  /** SHOW, PAUSE, RELOAD ...: the admin console's answer, before ReadyForQuery. */
  adminQuery(sql: string): Buffer[] {
    return this.ctx.adminQuery ? this.ctx.adminQuery(this, sql) : [];
  }

  /** Sidecar-issued BackendKeyData, or null before it is issued. */
  get key(): CancelKey | null {
    return this.#keyPid === 0 ? null : { pid: this.#keyPid, secret: this.#keySecret };
  }

  get cancelSecret(): CancelSecret {
    return this.#keySecret;
  }

  /** Issues the client's cancel key: its BackendKeyData. */
  issueKey(protocolMinor: number): Buffer {
    const secret = newCancelSecret(protocolMinor >= 2 ? 32 : 4);
    this.#keySecret = secret;
    this.#keyPid = this.ctx.cancels.issue(this);
    return msg.backendKeyData(this.#keyPid, secretBytes(secret));
  }

  /** The client closed: its key no longer cancels anything. */
  protected releaseKey(): void {
    if (this.#keyPid !== 0) this.ctx.cancels.release(this.#keyPid);
  }

  // --- where its work goes, and what the parts read of it ----------------------------------------

  get route(): Route | null {
    return this.#route;
  }

  /** The client's work goes to `route` from now on. */
  routed(route: Route): void {
    this.#route = route;
  }

  get log(): Logger {
    return this.ctx.log;
  }

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

  /** A unit may be replayed (retry is not off): its replies are held outside a transaction. */
  get mayReplay(): boolean {
    return this.#route?.retry.mode !== "off";
  }

  // --- what the parts count (the session events, into metrics) -----------------------------------

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
}
