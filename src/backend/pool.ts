// Pool: the servers of one (database, user). Herding servers between lists happens here: each
// connection sits in at most one of idle (LIFO), active, connecting or maintaining, and moveTo() is
// the only place that moves it; clients that find none wait in FIFO order up to
// query_wait_timeout. The pool touches no client bytes: it hands out, checks, resets and retires.

import type { UpstreamPassword } from "../auth/upstream-password.js";
import * as clock from "../clock.js";
import {
  DisconnectReason,
  type ProxyError,
  ProxyErrorReason,
  proxyError,
  type ServerError,
} from "../errors.js";
import type { Logger } from "../log.js";
import * as msg from "../protocol/messages.js";
import type { BackendConnection } from "./backend-connection.js";
import {
  checkQuery,
  cleanupSql,
  closeUnresponsive,
  idleVerdict,
  needsCheck,
  retireReason,
  runPoolQuery,
} from "./health-check.js";
import type { GiveBack, PoolEvents, PoolSettings } from "./pool-options.js";
import { KnownStatements } from "./prepared-statements.js";
import { newServer, type ServerFactory } from "./server-factory.js";
import { OPENING, ServerList, ServerLists } from "./server-lists.js";
import { type OpenerHooks, ServerOpener } from "./server-opener.js";
import type { Upstream } from "./upstream.js";
import {
  ANSWERED,
  type CheckoutCallback,
  type CheckoutWait,
  type Waiter,
  WaitQueue,
  waitTimeoutError,
} from "./waiters.js";

export type { GiveBack, PoolEvents, PoolSettings } from "./pool-options.js";
export { ServerList } from "./server-lists.js";
export type { CheckoutCallback, Waiter } from "./waiters.js";

const UNEXPECTED_LOSS = new Set<DisconnectReason>([
  DisconnectReason.Terminated,
  DisconnectReason.Crashed,
  DisconnectReason.Network,
  DisconnectReason.ServerFatal,
]);

export class Pool {
  /** Where each server is: changed only by its moveTo(). */
  private readonly lists = new ServerLists();
  private readonly waiters = new WaitQueue((w) => this.expire(w));
  paused = false;
  /** Set by RECONNECT: servers older than this are retired at their next release. */
  private retireBefore = 0;
  /** ParameterStatus of the first successful login: what a new client is told at startup. */
  serverParams: Map<string, string> | null = null;
  /** Statements some server of this pool accepted (content-named; see ClientSession). */
  readonly knownStatements = new KnownStatements();
  private retryTimer: clock.Timer | null = null;
  private closed = false;
  /**
   * Gone to zero after pool_idle_timeout without a checkout: min_pool_size is not kept and nothing
   * is sent upstream (no check, no reconnect) until the next checkout wakes the pool.
   */
  asleep = false;
  /** The last checkout or release (epoch ms): what pool_idle_timeout counts from. */
  private lastUsedAt = clock.now();
  /** When a checkout found the pool at zero (epoch ms), until a server is handed out. */
  private wakeStartedAt: number | null = null;

  constructor(
    readonly database: string,
    readonly user: string,
    /** Where new server logins get their password (replaced by a reload). */
    public credential: UpstreamPassword,
    readonly upstream: Upstream,
    public settings: PoolSettings,
    private readonly log: Logger,
    private readonly events: PoolEvents,
    /** How server connections are built (a stub in unit tests). */
    createServer: ServerFactory = newServer,
  ) {
    this.opener = new ServerOpener(this, createServer, this.openerHooks(), log);
  }

  private readonly opener: ServerOpener;

  /** How the opener's attempts change this pool: the slot and the server move through moveTo. */
  private openerHooks(): OpenerHooks {
    return {
      hold: (slot, held) => this.lists.moveTo(slot, held ? OPENING : null),
      dial: (slot, conn, dialling) => {
        this.lists.moveTo(slot, dialling ? null : OPENING);
        this.lists.moveTo(conn, dialling ? ServerList.Connecting : null);
      },
      opened: (conn) => this.onServerReady(conn),
      counted: (err, reason) => this.events.connectFailed(this, err, reason),
      // Wrong password, missing database: every waiter gets the server's FATAL, as Postgres sends it.
      failed: (err, permanent) =>
        permanent ? this.waiters.failAll(err as ServerError | ProxyError) : this.dispatch(),
      closed: () => this.closed,
    };
  }

  get idle(): ReadonlyArray<BackendConnection> {
    return this.lists.idle;
  }
  get active(): ReadonlySet<BackendConnection> {
    return this.lists.active;
  }
  get connecting(): ReadonlySet<BackendConnection> {
    return this.lists.connecting;
  }
  get maintaining(): ReadonlySet<BackendConnection> {
    return this.lists.maintaining;
  }
  /** Servers open or being opened, against pool_size. */
  get size(): number {
    return this.lists.size;
  }

  get waiting(): number {
    return this.waiters.size;
  }

  /** The oldest waiter's wait so far, in ms (SHOW POOLS maxwait). */
  get maxWaitMs(): number {
    return this.waiters.oldestWaitMs();
  }

  /** The list `conn` is in (null: none). */
  stateOf(conn: BackendConnection): ServerList | null {
    return this.lists.stateOf(conn);
  }

  /**
   * Asks for a server; the callback runs exactly once (unless the wait is cancelled), before
   * checkout() returns when a server was at hand.
   */
  checkout(callback: CheckoutCallback): CheckoutWait {
    const now = clock.now();
    this.lastUsedAt = now;
    // A pool that had servers and has none now, open or opening, with nobody waiting: this client
    // wakes it (a suspended compute starts). Measured until a server is handed out.
    if (this.size === 0 && this.waiters.size === 0 && this.serverParams !== null)
      this.wakeStartedAt = now;
    if (this.asleep) {
      this.asleep = false;
      this.log.info({ pool: this.key }, "pool woken by a client");
    }
    // The common case under load: nobody waits ahead and an idle server needs no check. It is
    // lent at once, as dispatch() would, without a waiter or its query_wait_timeout timer.
    const ready = this.waiters.size === 0 ? this.readyIdle(now) : null;
    if (ready !== null) {
      this.lists.moveTo(ready, ServerList.Active);
      this.lent(ready, now, now);
      callback(null, ready);
      return ANSWERED;
    }
    const waiter = this.waiters.add(callback, this.settings.queryWaitTimeoutMs);
    this.dispatch();
    return waiter;
  }

  /**
   * The idle server dispatch() would lend a first waiter, when it can go as it is (else null):
   * the pool open, not paused, no check promised to a waiter, and the newest idle server ready.
   */
  private readyIdle(now: number): BackendConnection | null {
    if (this.closed || this.paused || this.maintaining.size > 0) return null;
    const conn = this.idle[this.idle.length - 1];
    return conn !== undefined && this.idleUse(conn, now) === "lend" ? conn : null;
  }

  /** What an idle server is fit for when a client needs one: closed, checked first, or lent. */
  private idleUse(conn: BackendConnection, now: number): "close" | "check" | "lend" {
    if (conn.isClosed || conn.bad) return "close";
    return needsCheck(conn, this.settings, now) ? "check" : "lend";
  }

  /**
   * The one way a server comes back from its client. `clean` (a unit of work ended): it goes idle,
   * after a ROLLBACK or server_reset_query when a transaction, replies or session state are left.
   * `reset` (a session ended): server_reset_query runs first. `destroy`: it is closed with
   * `reason`, a statement still running cancelled first so it does not run on; a replacement
   * opens if min_pool_size or a waiter wants one. A server that is broken, still owes replies, holds
   * unsynced extended-protocol work or skips to a Sync, is destroyed whatever `how` says: a Sync from
   * anyone else would commit the one, and the next client's work would vanish in the other.
   */
  giveBack(
    conn: BackendConnection,
    how: GiveBack,
    reason: DisconnectReason = DisconnectReason.ClientGone,
  ): void {
    this.lists.moveTo(conn, null);
    conn.listener = null;
    this.lastUsedAt = clock.now();
    if (how !== "destroy") {
      // A statement still running (replies owed) is cancelled and its server closed rather than
      // waited for: the client that asked for it is gone.
      if (conn.unsynced || conn.skipping || conn.owesReplies)
        [how, reason] = ["destroy", DisconnectReason.ClientGone];
      else if (conn.bad || conn.isClosed)
        [how, reason] = ["destroy", conn.closeReason ?? DisconnectReason.Network];
    }
    if (how === "destroy") {
      if (!conn.isClosed && !conn.expected.empty) conn.cancel();
      conn.destroy(reason);
      this.dispatch();
      return;
    }
    const sql = cleanupSql(conn, how, this.settings.resetQuery);
    if (sql === null) this.toIdle(conn);
    else this.reset(conn, sql);
  }

  /** Closes idle servers now and the others when released (RECONNECT, planned failover). */
  reconnectAll(): void {
    this.retireBefore = clock.now() + 1;
    this.closeIdle(DisconnectReason.Reconnect);
    this.dispatch();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.dispatch();
  }

  /** Periodic upkeep: idle timeout, lifetime, checks, response_timeout, min_pool_size. */
  sweep(now = clock.now()): void {
    const s = this.settings;
    if (
      s.poolIdleTimeoutMs > 0 &&
      !this.asleep &&
      this.active.size === 0 &&
      this.waiters.size === 0 &&
      now - this.lastUsedAt > s.poolIdleTimeoutMs
    ) {
      this.fallAsleep(now);
    } else if (this.asleep && s.poolIdleTimeoutMs === 0) {
      // pool_idle_timeout turned off by a reload: min_pool_size applies again.
      this.asleep = false;
    }
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const conn = this.idle[i];
      const verdict = idleVerdict(conn, s, now, this.retireBefore, this.size);
      if (verdict === null) continue;
      this.lists.moveTo(conn, null);
      if (verdict !== "check") conn.destroy(verdict);
      else
        this.maintain(conn, checkQuery(s), s.checkTimeoutMs, DisconnectReason.CheckFailed, () =>
          this.backToIdle(conn),
        );
    }
    closeUnresponsive(this.active, s, now, this.log, this.key);
    this.dispatch();
  }

  /**
   * pool_idle_timeout reached: every idle server is closed now, one being checked or opened when it
   * comes back; min_pool_size is not kept, so nothing reaches the upstream until a checkout.
   */
  private fallAsleep(now: number): void {
    this.asleep = true;
    const closing = this.idle.length;
    this.closeIdle(DisconnectReason.IdleTimeout);
    this.log.info(
      { pool: this.key, unused_ms: now - this.lastUsedAt, servers_closed: closing },
      "pool unused for pool_idle_timeout: servers closed, nothing sent upstream until a client needs one",
    );
  }

  private closeIdle(reason: DisconnectReason): void {
    for (const conn of [...this.idle]) {
      this.lists.moveTo(conn, null);
      conn.destroy(reason);
    }
  }

  /** Closes everything (shutdown). Waiters get an error. */
  close(): void {
    this.closed = true;
    clock.cancel(this.retryTimer);
    for (const conn of [...this.idle, ...this.connecting, ...this.maintaining, ...this.active]) {
      this.lists.moveTo(conn, null);
      conn.destroy(DisconnectReason.Shutdown);
    }
    this.waiters.failAll(
      proxyError(ProxyErrorReason.Shutdown, "terminating connection due to administrator command"),
    );
  }

  get key(): string {
    return `${this.database}/${this.user}`;
  }

  // --- handing out -----------------------------------------------------------------------------

  /** Matches waiters with servers, opening new ones within pool_size. */
  private dispatch(): void {
    if (this.closed) return;
    if (!this.paused) {
      // Servers under a pre-use check are already promised to the oldest waiters.
      while (this.waiters.size > this.maintaining.size && this.idle.length > 0) {
        const conn = this.idle[this.idle.length - 1];
        this.lists.moveTo(conn, null);
        const use = this.idleUse(conn, clock.now());
        if (use === "close") conn.destroy(conn.closeReason ?? DisconnectReason.Network);
        else if (use === "check") this.check(conn);
        else this.handOut(conn);
      }
    }
    const wanted = Math.max(
      this.paused
        ? 0
        : this.waiters.size - this.connecting.size - this.lists.opening - this.maintaining.size,
      this.asleep ? 0 : this.settings.minPoolSize - this.size,
    );
    for (let i = 0; i < wanted && this.size < this.settings.poolSize; i++) {
      if (!this.openServer()) break;
    }
  }

  /** Gives `conn` (in no list) to the oldest waiter, or makes it idle if nobody waits. */
  private handOut(conn: BackendConnection): void {
    const waiter = this.waiters.take();
    if (waiter === null) {
      this.toIdle(conn);
      return;
    }
    this.lists.moveTo(conn, ServerList.Active);
    this.lent(conn, waiter.since, clock.now());
    waiter.callback(null, conn);
  }

  /** `conn`, now active, goes to a client that asked at `since`. */
  private lent(conn: BackendConnection, since: number, now: number): void {
    conn.bytesSent = 0;
    this.events.checkoutWaited(this, (now - since) / 1000);
    if (this.wakeStartedAt !== null) {
      this.events.woke(this, (now - this.wakeStartedAt) / 1000);
      this.wakeStartedAt = null;
    }
  }

  /** A server (in no list) is ready for the next client: handed out, made idle, or retired. */
  private toIdle(conn: BackendConnection): void {
    if (conn.isClosed) return this.dispatch();
    // Asleep means no waiter: a server opened or reset meanwhile is not kept.
    if (this.asleep) return conn.destroy(DisconnectReason.IdleTimeout);
    const s = this.settings;
    const now = clock.now();
    // pool_size may have been lowered by a reload (`size` does not count this connection).
    const retire =
      retireReason(conn, s, now, this.retireBefore) ??
      (this.size >= s.poolSize ? DisconnectReason.PoolShrink : null);
    if (retire !== null) {
      conn.destroy(retire);
      return this.dispatch();
    }
    conn.idleSince = now;
    this.idleOrHandOut(conn);
  }

  /** Returns a checked server (in no list) to idle, keeping its idle time (server_idle_timeout). */
  private backToIdle(conn: BackendConnection): void {
    if (conn.isClosed) return this.dispatch();
    if (this.asleep) return conn.destroy(DisconnectReason.IdleTimeout);
    this.idleOrHandOut(conn);
  }

  private idleOrHandOut(conn: BackendConnection): void {
    if (!this.paused && this.waiters.peek() !== null) this.handOut(conn);
    else this.lists.moveTo(conn, ServerList.Idle);
  }

  /** A waiter's query_wait_timeout passed (the queue has let it go). */
  private expire(waiter: Waiter): void {
    waiter.callback(
      waitTimeoutError(this.settings.queryWaitTimeoutMs, this.upstream.lastError),
      null,
    );
  }

  // --- checks and resets -----------------------------------------------------------------------

  /** Runs the check query on a server idle past server_check_delay, then hands it out. */
  private check(conn: BackendConnection): void {
    const s = this.settings;
    this.maintain(conn, checkQuery(s), s.checkTimeoutMs, DisconnectReason.CheckFailed, () =>
      this.handOut(conn),
    );
  }

  /** Cleans a server a client gave back with `sql` (ROLLBACK, server_reset_query), then idles it. */
  private reset(conn: BackendConnection, sql: string): void {
    conn.startReset();
    this.maintain(
      conn,
      msg.query(sql),
      this.settings.resetTimeoutMs,
      DisconnectReason.ResetFailed,
      () => {
        conn.resetDone(sql); // our record of its session (statements, settings) follows
        this.toIdle(conn);
      },
    );
  }

  /**
   * Runs a pool-owned query (check or reset) on `conn` in `maintaining`; a server that fails or
   * stays silent past `timeoutMs` (black-holed) is closed with `reason`, else `then` runs.
   */
  private maintain(
    conn: BackendConnection,
    query: Buffer,
    timeoutMs: number,
    reason: DisconnectReason,
    then: () => void,
  ): void {
    this.lists.moveTo(conn, ServerList.Maintaining);
    runPoolQuery(conn, query, timeoutMs, (ok) => {
      this.lists.moveTo(conn, null);
      if (ok) return then();
      conn.destroy(reason);
      this.dispatch();
    });
  }

  private onServerClosed(conn: BackendConnection): void {
    this.lists.moveTo(conn, null);
    const reason = conn.closeReason ?? DisconnectReason.Network;
    this.log.info({ pool: this.key, server: conn.id, reason }, "server connection closed");
    this.events.serverClosed(this, conn, reason);
    if (UNEXPECTED_LOSS.has(reason)) {
      // Servers rarely die alone (a restart, a crash, a sweep of pg_terminate_backend): check
      // the idle ones before handing them out, rather than let a replay land on the next corpse.
      for (const c of this.idle) c.lastReceivedAt = 0;
    }
    // Replace it (min_pool_size, waiters) on the next tick, after the caller has settled.
    clock.soon(() => this.dispatch());
  }

  // --- opening servers -------------------------------------------------------------------------

  /** Starts a new server connection unless the upstream is in backoff. */
  private openServer(): boolean {
    const delay = this.upstream.delay(clock.now());
    if (delay > 0) {
      this.scheduleRetry(delay);
      return false;
    }
    this.opener.open();
    return true;
  }

  private scheduleRetry(delay: number): void {
    if (this.retryTimer) return;
    this.retryTimer = clock.after(delay, () => {
      this.retryTimer = null;
      this.dispatch();
    });
  }

  /**
   * Opens a server outside the pool (the LISTEN hub's): the same target, credentials and
   * options, not counted in pool_size and never handed to a client.
   */
  openDedicated(): Promise<BackendConnection> {
    return this.opener.openDedicated();
  }

  private onServerReady(conn: BackendConnection): void {
    this.lists.moveTo(conn, null);
    if (this.closed) {
      conn.destroy(DisconnectReason.Shutdown);
      return;
    }
    if (this.serverParams === null) this.serverParams = new Map(conn.params);
    conn.onClose = (c) => this.onServerClosed(c);
    this.events.serverOpened(this, conn);
    this.toIdle(conn);
    this.dispatch();
  }
}
