// Pool: the servers of one (database, user). Each connection sits in exactly one of idle (LIFO),
// active or connecting; clients that find none wait in FIFO order up to query_wait_timeout.
// The pool touches no client bytes: it hands out, checks, resets and retires connections.

import type { UpstreamPassword } from "../auth/upstream-password.js";
import type { PasswordWithoutTls, TargetSessionAttrs } from "../config/schema.js";
import { DisconnectReason, ProxyError, ServerError } from "../errors.js";
import type { Logger } from "../log.js";
import { TxStatus } from "../protocol/codes.js";
import * as msg from "../protocol/messages.js";
import {
  BackendConnection,
  type BackendListener,
  type BackendOptions,
  BackendState,
} from "./backend-connection.js";
import { Action } from "./expected-responses.js";
import type { KeepaliveSettings } from "./keepalive.js";
import { KnownStatements } from "./prepared-statements.js";
import { roleFits, serverRole, type Upstream } from "./upstream.js";

export interface PoolSettings {
  poolSize: number;
  minPoolSize: number;
  queryWaitTimeoutMs: number;
  connectTimeoutMs: number;
  checkDelayMs: number;
  checkTimeoutMs: number;
  checkQuery: string;
  lifetimeMs: number;
  idleTimeoutMs: number;
  /**
   * pool_idle_timeout: a pool no client used this long closes every server, min_pool_size
   * included, and opens none until the next checkout (0 = off).
   */
  poolIdleTimeoutMs: number;
  resetQuery: string;
  resetTimeoutMs: number;
  keepalive: KeepaliveSettings;
  maxPreparedStatements: number;
  /** Close a server that owes replies but sent nothing for this long (0 = off). */
  responseTimeoutMs: number;
  /** server_password_without_tls (default loopback). */
  passwordWithoutTls?: PasswordWithoutTls;
  /** server_scram_max_iterations (default 100,000). */
  maxScramIterations?: number;
}

export type CheckoutCallback = (
  err: ProxyError | ServerError | null,
  conn: BackendConnection | null,
) => void;

/** A client waiting for a server. `cancel()` withdraws it (the client left). */
export class Waiter {
  done = false;
  timer: NodeJS.Timeout | null = null;
  readonly since = Date.now();
  constructor(
    readonly callback: CheckoutCallback,
    private readonly onDone: () => void,
  ) {}
  cancel(): void {
    if (this.done) return;
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    this.onDone();
  }
}

export interface PoolEvents {
  serverOpened(pool: Pool, conn: BackendConnection): void;
  serverClosed(pool: Pool, conn: BackendConnection, reason: DisconnectReason): void;
  connectFailed(pool: Pool, err: Error): void;
  checkoutWaited(pool: Pool, seconds: number): void;
  /** A checkout found the pool at zero (no server open or opening): the time until one was handed out. */
  woke(pool: Pool, seconds: number): void;
}

const UNEXPECTED_LOSS = new Set<DisconnectReason>([
  DisconnectReason.Terminated,
  DisconnectReason.Crashed,
  DisconnectReason.Network,
  DisconnectReason.ServerFatal,
]);

/**
 * A login refused with a rotating password (28P01) is tried again at most this many times: once
 * with the other value (the source's new one, or the last accepted), and once more if an
 * ALTER ROLE landed between the two and refused that one as well.
 */
const MAX_RELOGINS = 2;
/** Before a relogin with no other value in hand: the source may follow the ALTER ROLE shortly. */
const RELOGIN_PAUSE_MS = 500;

/** What one server login used, for relogins after a 28P01. */
interface LoginAttempt {
  password: string | null;
  /** Relogins so far (0: the first try). */
  relogins: number;
}

const SQLSTATE_PERMANENT = new Set(["28P01", "28000", "3D000", "42501", "3F000"]);
/** Our own login refusals that the next attempt would repeat: reported at once, not retried. */
const PROXY_PERMANENT = new Set(["tls_verify", "password_without_tls", "scram_iterations"]);

export class Pool {
  readonly idle: BackendConnection[] = [];
  readonly active = new Set<BackendConnection>();
  readonly connecting = new Set<BackendConnection>();
  /** Being checked or reset by the pool itself. */
  readonly maintaining = new Set<BackendConnection>();
  private waiters: Waiter[] = [];
  private waiterHead = 0;
  /** Waiters not yet served, expired or cancelled. */
  private liveWaiters = 0;
  /** Connections being resolved (DNS) before they exist as BackendConnections. */
  private resolving = 0;
  paused = false;
  /** Set by RECONNECT: servers older than this are retired at their next release. */
  private retireBefore = 0;
  /** ParameterStatus of the first successful login: what a new client is told at startup. */
  serverParams: Map<string, string> | null = null;
  /** Statements some server of this pool accepted (content-named; see ClientSession). */
  readonly knownStatements = new KnownStatements();
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /**
   * Gone to zero after pool_idle_timeout without a checkout: min_pool_size is not kept and nothing
   * is sent upstream (no check, no reconnect) until the next checkout wakes the pool.
   */
  asleep = false;
  /** The last checkout or release (epoch ms): what pool_idle_timeout counts from. */
  private lastUsedAt = Date.now();
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
  ) {}

  get size(): number {
    return (
      this.idle.length +
      this.active.size +
      this.connecting.size +
      this.maintaining.size +
      this.resolving
    );
  }

  get waiting(): number {
    return this.liveWaiters;
  }

  /** The oldest waiter's wait so far, in ms (SHOW POOLS maxwait). */
  get maxWaitMs(): number {
    for (let i = this.waiterHead; i < this.waiters.length; i++) {
      if (!this.waiters[i].done) return Date.now() - this.waiters[i].since;
    }
    return 0;
  }

  /** Asks for a server; the callback runs exactly once (unless the waiter is cancelled). */
  checkout(callback: CheckoutCallback): Waiter {
    const now = Date.now();
    this.lastUsedAt = now;
    // A pool that had servers and has none now, open or opening, with nobody waiting: this client
    // wakes it (a suspended compute starts). Measured until a server is handed out.
    if (this.size === 0 && this.liveWaiters === 0 && this.serverParams !== null)
      this.wakeStartedAt = now;
    if (this.asleep) {
      this.asleep = false;
      this.log.info({ pool: this.key }, "pool woken by a client");
    }
    const waiter = new Waiter(callback, () => this.liveWaiters--);
    this.liveWaiters++;
    const timeout = this.settings.queryWaitTimeoutMs;
    if (timeout > 0) {
      waiter.timer = setTimeout(() => this.expire(waiter), timeout);
      waiter.timer.unref?.();
    }
    this.waiters.push(waiter);
    this.dispatch();
    return waiter;
  }

  /** Returns a server after a unit of work. It must be idle (ReadyForQuery 'I', nothing owed). */
  release(conn: BackendConnection): void {
    if (!this.takeBack(conn)) return;
    const sessionState = conn.pins.size > 0 || conn.needsReset;
    if (!conn.expected.empty || conn.txStatus !== TxStatus.Idle || sessionState) {
      this.cleanAndRelease(
        conn,
        sessionState ? this.settings.resetQuery || "DISCARD ALL" : "ROLLBACK",
      );
      return;
    }
    this.toIdle(conn);
  }

  /**
   * First step of every return: the server leaves `active`; one with unsynced extended-protocol
   * work is cleaned as dirty and one that is broken is closed (false: nothing more to do).
   */
  private takeBack(conn: BackendConnection): boolean {
    this.active.delete(conn);
    conn.listener = null;
    this.lastUsedAt = Date.now();
    // Unsynced work (an implicit transaction), or an error the server still skips to Sync after:
    // a Sync from anyone else would commit the one, and the next client's work vanishes in the other.
    if (conn.unsynced || conn.skipping) {
      this.releaseDirty(conn);
      return false;
    }
    if (conn.bad || conn.isClosed) {
      conn.destroy(conn.closeReason ?? DisconnectReason.Network);
      this.dispatch();
      return false;
    }
    return true;
  }

  /** Returns a server after a session (session mode): reset it first with server_reset_query. */
  releaseAfterSession(conn: BackendConnection): void {
    if (!this.takeBack(conn)) return;
    const reset = this.settings.resetQuery;
    const sql = conn.txStatus !== TxStatus.Idle ? `ROLLBACK; ${reset}` : reset;
    if (!sql.trim() && conn.expected.empty && conn.txStatus === TxStatus.Idle) this.toIdle(conn);
    else this.cleanAndRelease(conn, sql.trim() ? sql : "ROLLBACK");
  }

  /**
   * A client left while holding `conn` in an unknown state. A running statement is cancelled and
   * the server closed; an open transaction or session state is rolled back / discarded under
   * server_reset_timeout, or the server is closed.
   */
  releaseDirty(conn: BackendConnection): void {
    this.active.delete(conn);
    conn.listener = null;
    this.lastUsedAt = Date.now();
    if (conn.bad || conn.isClosed || !conn.expected.empty || conn.unsynced || conn.skipping) {
      if (!conn.isClosed && !conn.expected.empty) conn.cancel();
      conn.destroy(DisconnectReason.ClientGone);
      this.dispatch();
      return;
    }
    this.release(conn);
  }

  /** Closes a server that is no longer fit (the caller holds it). */
  discard(conn: BackendConnection, reason: DisconnectReason): void {
    this.active.delete(conn);
    conn.listener = null;
    this.lastUsedAt = Date.now();
    conn.destroy(reason);
    this.dispatch();
  }

  /** Closes idle servers now and the others when released (RECONNECT, planned failover). */
  reconnectAll(): void {
    this.retireBefore = Date.now() + 1;
    for (const conn of this.idle.splice(0)) conn.destroy(DisconnectReason.Reconnect);
    this.dispatch();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.dispatch();
  }

  /** Periodic upkeep: idle timeout, lifetime, and keeping min_pool_size servers open. */
  sweep(now = Date.now()): void {
    const s = this.settings;
    if (
      s.poolIdleTimeoutMs > 0 &&
      !this.asleep &&
      this.active.size === 0 &&
      this.liveWaiters === 0 &&
      now - this.lastUsedAt > s.poolIdleTimeoutMs
    ) {
      this.fallAsleep(now);
    } else if (this.asleep && s.poolIdleTimeoutMs === 0) {
      // pool_idle_timeout turned off by a reload: min_pool_size applies again.
      this.asleep = false;
    }
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const conn = this.idle[i];
      let reason: DisconnectReason | null = null;
      if (s.lifetimeMs > 0 && now - conn.createdAt > s.lifetimeMs)
        reason = DisconnectReason.Lifetime;
      else if (conn.createdAt < this.retireBefore) reason = DisconnectReason.Reconnect;
      else if (
        s.idleTimeoutMs > 0 &&
        now - conn.idleSince > s.idleTimeoutMs &&
        this.size > s.minPoolSize
      ) {
        reason = DisconnectReason.IdleTimeout;
      }
      if (reason) {
        this.idle.splice(i, 1);
        conn.destroy(reason);
      } else if (now - conn.lastReceivedAt > s.checkDelayMs) {
        // Idle and silent for a while: prove it alive now, so a dead or black-holed server is
        // replaced before a client needs it.
        this.idle.splice(i, 1);
        this.runInternal(
          conn,
          this.checkQuery(),
          s.checkTimeoutMs,
          DisconnectReason.CheckFailed,
          (ok) => {
            if (ok) this.backToIdle(conn);
            else this.dispatch();
          },
        );
      }
    }
    if (s.responseTimeoutMs > 0) {
      for (const conn of this.active) {
        const quiet = now - Math.max(conn.lastReceivedAt, conn.lastSentAt);
        if (!conn.expected.empty && quiet > s.responseTimeoutMs) {
          this.log.warn(
            { pool: this.key, server: conn.id, quiet_ms: quiet },
            "server stopped answering",
          );
          // Closing alone would leave the statement running on the server (it notices a gone
          // client only when it writes), and each replay would add a copy: cancel it first.
          conn.cancel();
          conn.destroy(DisconnectReason.ResponseTimeout);
        }
      }
    }
    this.dispatch();
  }

  /**
   * pool_idle_timeout reached: every idle server is closed now, one being checked or opened when it
   * comes back; min_pool_size is not kept, so nothing reaches the upstream until a checkout.
   */
  private fallAsleep(now: number): void {
    this.asleep = true;
    const closing = this.idle.length;
    for (const conn of this.idle.splice(0)) conn.destroy(DisconnectReason.IdleTimeout);
    this.log.info(
      { pool: this.key, unused_ms: now - this.lastUsedAt, servers_closed: closing },
      "pool unused for pool_idle_timeout: servers closed, nothing sent upstream until a client needs one",
    );
  }

  /** Returns a checked server to the idle list, keeping its idle time (server_idle_timeout). */
  private backToIdle(conn: BackendConnection): void {
    if (conn.isClosed) return this.dispatch();
    if (this.asleep) return conn.destroy(DisconnectReason.IdleTimeout);
    conn.state = BackendState.Idle;
    if (!this.paused && this.nextWaiter() !== null) {
      this.handOut(conn);
      return;
    }
    this.idle.push(conn);
    // Keep LIFO order meaningful: most recently used at the end.
    this.idle.sort((a, b) => a.idleSince - b.idleSince);
  }

  private checkQuery(): Buffer {
    const q = this.settings.checkQuery;
    return q ? msg.query(q) : msg.emptyQuery;
  }

  /** Closes everything (shutdown). Waiters get an error. */
  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const conn of [...this.idle, ...this.connecting, ...this.maintaining, ...this.active]) {
      conn.destroy(DisconnectReason.Shutdown);
    }
    this.idle.length = 0;
    this.failWaiters(
      new ProxyError(
        "shutdown",
        "57P01",
        "terminating connection due to administrator command",
        "FATAL",
      ),
    );
  }

  // --- internals -------------------------------------------------------------------------------

  private nextWaiter(): Waiter | null {
    while (this.waiterHead < this.waiters.length) {
      const w = this.waiters[this.waiterHead];
      if (!w.done) return w;
      this.waiterHead++;
    }
    if (this.waiterHead > 0) {
      this.waiters = [];
      this.waiterHead = 0;
    }
    return null;
  }

  private takeWaiter(): Waiter | null {
    const w = this.nextWaiter();
    if (w === null) return null;
    this.waiterHead++;
    if (this.waiterHead > 1024 && this.waiterHead * 2 > this.waiters.length) {
      this.waiters = this.waiters.slice(this.waiterHead);
      this.waiterHead = 0;
    }
    w.cancel();
    return w;
  }

  /** Matches waiters with servers, opening new ones within pool_size. */
  private dispatch(): void {
    if (this.closed) return;
    if (!this.paused) {
      // Servers under a pre-use check are already promised to the oldest waiters.
      while (this.liveWaiters > this.maintaining.size && this.idle.length > 0) {
        const conn = this.idle.pop() as BackendConnection;
        if (conn.isClosed || conn.bad) {
          conn.destroy(conn.closeReason ?? DisconnectReason.Network);
          continue;
        }
        const s = this.settings;
        if (Date.now() - conn.lastReceivedAt > s.checkDelayMs) {
          this.check(conn);
          continue;
        }
        this.handOut(conn);
      }
    }
    const wanted = Math.max(
      this.paused
        ? 0
        : this.liveWaiters - this.connecting.size - this.resolving - this.maintaining.size,
      this.asleep ? 0 : this.settings.minPoolSize - this.size,
    );
    for (let i = 0; i < wanted && this.size < this.settings.poolSize; i++) {
      if (!this.openServer()) break;
    }
  }

  private handOut(conn: BackendConnection): void {
    const waiter = this.takeWaiter();
    if (waiter === null) {
      this.toIdle(conn);
      return;
    }
    conn.state = BackendState.Active;
    conn.bytesSent = 0;
    this.active.add(conn);
    const now = Date.now();
    this.events.checkoutWaited(this, (now - waiter.since) / 1000);
    if (this.wakeStartedAt !== null) {
      this.events.woke(this, (now - this.wakeStartedAt) / 1000);
      this.wakeStartedAt = null;
    }
    waiter.callback(null, conn);
  }

  private toIdle(conn: BackendConnection): void {
    if (conn.isClosed) return this.dispatch();
    // Asleep means no waiter: a server opened or reset meanwhile is not kept.
    if (this.asleep) return conn.destroy(DisconnectReason.IdleTimeout);
    const s = this.settings;
    if (s.lifetimeMs > 0 && Date.now() - conn.createdAt > s.lifetimeMs) {
      conn.destroy(DisconnectReason.Lifetime);
      return this.dispatch();
    }
    if (conn.createdAt < this.retireBefore) {
      conn.destroy(DisconnectReason.Reconnect);
      return this.dispatch();
    }
    if (this.size >= s.poolSize) {
      // pool_size was lowered by a reload (`size` does not count this connection).
      conn.destroy(DisconnectReason.PoolShrink);
      return this.dispatch();
    }
    conn.state = BackendState.Idle;
    conn.idleSince = Date.now();
    if (!this.paused && this.nextWaiter() !== null) {
      this.handOut(conn);
      return;
    }
    this.idle.push(conn);
  }

  /** Starts a new server connection unless the upstream is in backoff. */
  private openServer(): boolean {
    const delay = this.upstream.delay();
    if (delay > 0) {
      this.scheduleRetry(delay);
      return false;
    }
    this.connectServer();
    return true;
  }

  /** How every server of this pool is opened (its address is resolved for each). */
  private serverOptions(): Omit<BackendOptions, "address"> {
    return {
      target: this.upstream.target,
      user: this.user,
      password: this.credential.latest,
      database: this.upstream.target.database,
      connectTimeoutMs: this.settings.connectTimeoutMs,
      keepalive: this.settings.keepalive,
      maxPreparedStatements: this.settings.maxPreparedStatements,
      knownStatements: this.knownStatements,
      passwordWithoutTls: this.settings.passwordWithoutTls,
      maxScramIterations: this.settings.maxScramIterations,
    };
  }

  /**
   * Opens a server outside the pool (the LISTEN hub's): the same target, credentials and
   * options, not counted in pool_size and never handed to a client.
   */
  async openDedicated(): Promise<BackendConnection> {
    // The password as a pool login gets it: a rotated password_file or command is followed.
    const [address, password] = await Promise.all([this.upstream.resolve(), this.credential.get()]);
    const conn = new BackendConnection({ ...this.serverOptions(), password, address });
    await conn.connect();
    this.credential.accepted(password, false);
    return conn;
  }

  /**
   * Opens one server. `retry`: a relogin after the upstream refused a rotating password (28P01),
   * with the value to try (null: ask the source again).
   */
  /**
   * Opens one server on the first host that answers and whose role fits target_session_attrs,
   * as libpq tries them: in the order listed (shuffled with load_balance_hosts=random), any
   * failure moving on to the next host; prefer-standby looks for a standby first, then takes any.
   * DNS is resolved again for every host tried. Called with one slot reserved in `resolving`,
   * which moves to `connecting` while a host is dialled and is released whatever happens.
   */
  private async openOnSomeHost(
    options: Omit<BackendOptions, "address">,
  ): Promise<BackendConnection> {
    const target = this.upstream.target;
    const passes: TargetSessionAttrs[] =
      target.targetSessionAttrs === "prefer-standby"
        ? ["standby", "any"]
        : [target.targetSessionAttrs];
    let lastError: Error | null = null;
    for (const attrs of passes) {
      for (const h of this.upstream.hostsInOrder()) {
        let address: BackendOptions["address"];
        try {
          address = await this.upstream.resolve(h);
        } catch (err) {
          lastError = new ProxyError(
            "dns",
            "08006",
            `could not resolve host "${h.host}": ${(err as Error).message}`,
          );
          continue;
        }
        const conn = new BackendConnection({ ...options, address, hostName: h.host });
        this.resolving--;
        this.connecting.add(conn);
        try {
          await conn.connect();
        } catch (err) {
          this.connecting.delete(conn);
          this.resolving++;
          lastError = err as Error;
          continue;
        }
        if (roleFits(attrs, serverRole(conn.params))) return conn; // its slot stays in connecting
        this.connecting.delete(conn);
        this.resolving++;
        conn.destroy(DisconnectReason.RoleChanged);
        this.log.info(
          { pool: this.key, address: conn.address, target_session_attrs: attrs },
          "server skipped: its role does not fit target_session_attrs",
        );
        lastError = new ProxyError(
          "wrong_role",
          "08006",
          `no server of ${formatHosts(target)} is ${target.targetSessionAttrs} (target_session_attrs)`,
        );
      }
    }
    this.resolving--;
    throw lastError ?? new ProxyError("connect_failed", "08006", "no upstream host");
  }

  private connectServer(retry?: { password: string | null; relogins: number }): void {
    const options = this.serverOptions();
    const credential = this.credential;
    const attempt: LoginAttempt = { password: null, relogins: retry?.relogins ?? 0 };
    // Reserve the slot synchronously so dispatch() does not open too many.
    this.resolving++;
    Promise.resolve(
      retry?.password ??
        credential.get().catch((err: Error) => {
          throw new ProxyError("credential_unavailable", "08006", err.message);
        }),
    )
      .then(
        (password) => {
          attempt.password = password;
          return this.openOnSomeHost({ ...options, password });
        },
        (err: Error) => {
          this.resolving--;
          throw err;
        },
      )
      .then(
        (conn) => {
          credential.accepted(attempt.password, attempt.relogins > 0);
          this.onServerReady(conn);
        },
        (err: Error) => this.onConnectFailed(err, credential, attempt),
      );
  }

  /**
   * The upstream refused a rotating password (28P01): it may have been rotated a moment ago.
   * The source is read again and the login tried again, at once with a value not refused yet,
   * else after a short pause (the file or the command may follow the ALTER ROLE a little later).
   * Waiters keep waiting meanwhile, and the slot stays taken.
   */
  private relogin(credential: UpstreamPassword, attempt: LoginAttempt, err: Error): void {
    this.resolving++;
    credential
      .refused(attempt.password)
      .catch(() => null)
      .then((next) => {
        this.log.warn(
          { pool: this.key, err: err.message, relogin: attempt.relogins + 1, pause: next === null },
          "server login refused (28P01); password source read again, logging in again",
        );
        const go = () => {
          this.resolving--;
          if (this.closed) return;
          this.connectServer({ password: next, relogins: attempt.relogins + 1 });
        };
        if (next !== null) go();
        else setTimeout(go, RELOGIN_PAUSE_MS).unref?.();
      });
  }

  private onServerReady(conn: BackendConnection): void {
    this.connecting.delete(conn);
    this.upstream.succeeded();
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

  private onConnectFailed(err: Error, credential: UpstreamPassword, attempt: LoginAttempt): void {
    this.events.connectFailed(this, err);
    if (this.closed) return;
    if (err instanceof ServerError && err.sqlstate === "28P01" && credential.rotates) {
      if (attempt.relogins < MAX_RELOGINS) return this.relogin(credential, attempt, err);
      credential.retryRefused();
    }
    const permanent =
      (err instanceof ServerError && SQLSTATE_PERMANENT.has(err.sqlstate)) ||
      (err instanceof ProxyError && PROXY_PERMANENT.has(err.code));
    this.log.warn(
      { pool: this.key, err: err.message, sqlstate: (err as ServerError).sqlstate },
      "server connection failed",
    );
    if (permanent) {
      // Wrong password, missing database: every waiter gets the server's FATAL, as Postgres sends it.
      this.upstream.failed(err);
      this.failWaiters(err as ServerError | ProxyError);
      return;
    }
    this.upstream.failed(err);
    this.dispatch();
  }

  private scheduleRetry(delay: number): void {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.dispatch();
    }, delay);
    this.retryTimer.unref?.();
  }

  private onServerClosed(conn: BackendConnection): void {
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    this.active.delete(conn);
    this.maintaining.delete(conn);
    const reason = conn.closeReason ?? DisconnectReason.Network;
    this.log.info({ pool: this.key, server: conn.id, reason }, "server connection closed");
    this.events.serverClosed(this, conn, reason);
    if (UNEXPECTED_LOSS.has(reason)) {
      // Servers rarely die alone (a restart, a crash, a sweep of pg_terminate_backend): check
      // the idle ones before handing them out, rather than let a replay land on the next corpse.
      for (const c of this.idle) c.lastReceivedAt = 0;
    }
    // Replace it (min_pool_size, waiters) on the next tick, after the caller has settled.
    setImmediate(() => this.dispatch());
  }

  /** Runs the check query on a server idle past server_check_delay, then hands it out. */
  private check(conn: BackendConnection): void {
    const s = this.settings;
    this.runInternal(
      conn,
      this.checkQuery(),
      s.checkTimeoutMs,
      DisconnectReason.CheckFailed,
      (ok) => {
        if (ok) this.handOut(conn);
        else this.dispatch();
      },
    );
  }

  private cleanAndRelease(conn: BackendConnection, sql: string): void {
    conn.pins.clear();
    conn.needsReset = false;
    this.runInternal(
      conn,
      msg.query(sql),
      this.settings.resetTimeoutMs,
      DisconnectReason.ResetFailed,
      (ok) => {
        if (ok) {
          // The server's session was reset: so is our record of it (statements, settings).
          const upper = sql.toUpperCase();
          if (upper.includes("DISCARD ALL")) conn.prepared.clear();
          if (upper.includes("DISCARD ALL") || upper.includes("RESET ALL")) conn.settings.clear();
          this.toIdle(conn);
        } else this.dispatch();
      },
    );
  }

  /**
   * Sends one pool-owned query (check or reset) and waits for its ReadyForQuery('I') within
   * `timeoutMs`; a server that fails or stays silent (black-holed) is closed with `reason`.
   */
  private runInternal(
    conn: BackendConnection,
    query: Buffer,
    timeoutMs: number,
    reason: DisconnectReason,
    done: (ok: boolean) => void,
  ): void {
    this.maintaining.add(conn);
    conn.state = BackendState.Active;
    let finished = false;
    const finish = (ok: boolean) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      this.maintaining.delete(conn);
      conn.listener = null;
      if (!ok) conn.destroy(reason);
      done(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    const listener: BackendListener = {
      forward() {},
      forwardAsync() {},
      insert() {},
      chunkEnd() {},
      ready: (status) => finish(status === TxStatus.Idle),
      lost: () => finish(false),
    };
    conn.listener = listener;
    conn.expected.push(0x51, Action.Ignore);
    conn.write(query);
  }

  private expire(waiter: Waiter): void {
    if (waiter.done) return;
    waiter.cancel();
    const last = this.upstream.lastError;
    const starting = last instanceof ServerError && last.sqlstate === "57P03";
    const why = last ? `: ${last.message}` : "";
    waiter.callback(
      new ProxyError(
        "query_wait_timeout",
        starting ? "57P03" : "08006",
        `no server connection available within query_wait_timeout (${this.settings.queryWaitTimeoutMs} ms)${why}`,
      ),
      null,
    );
    this.nextWaiter();
  }

  private failWaiters(err: ProxyError | ServerError): void {
    for (let w = this.takeWaiter(); w !== null; w = this.takeWaiter()) w.callback(err, null);
  }

  get key(): string {
    return `${this.database}/${this.user}`;
  }
}

function formatHosts(t: { hosts: ReadonlyArray<{ host: string; port: number }> }): string {
  return t.hosts.map((h) => `${h.host}:${h.port}`).join(",");
}
