// Sidecar: the composition root. Builds every part from one Config, starts them in order and stops
// them in reverse; owns the pools (one per database and user) and the live sessions.

import { readFileSync } from "node:fs";
import type net from "node:net";
import tls from "node:tls";
import { AdminConsole } from "./admin/console.js";
import { AdminHttpServer } from "./admin/http.js";
import { credentialMetrics } from "./auth/credential-metrics.js";
import { RdsIamPassword } from "./auth/rds-iam.js";
import { scramSecretFromPassword } from "./auth/scram-sha-256.js";
import {
  CommandPassword,
  type CredentialEvents,
  FilePassword,
  StaticPassword,
  type UpstreamPassword,
} from "./auth/upstream-password.js";
import { Pool, type PoolEvents, type PoolSettings } from "./backend/pool.js";
import { Upstream } from "./backend/upstream.js";
import type { Config, DatabaseConfig } from "./config/schema.js";
import type { ProxyError, ServerError } from "./errors.js";
import { CancelRegistry } from "./frontend/cancel.js";
import type { KnownUser } from "./frontend/client-auth.js";
import {
  ClientSession,
  type Route,
  type SessionContext,
  type SessionEvents,
  SessionState,
} from "./frontend/client-session.js";
import { Listener } from "./frontend/listener.js";
import { NotificationHub } from "./frontend/notification-hub.js";
import { RetryPolicy } from "./frontend/retry-policy.js";
import type { Logger } from "./log.js";
import { bump, connectFailureKey, Metrics, type PoolSnapshot } from "./metrics.js";
import { ClientCloseReason } from "./reasons.js";
import { loadSqlParser } from "./sql/parser.js";

export class Sidecar {
  config: Config;
  readonly metrics: Metrics;
  readonly cancels = new CancelRegistry();
  readonly sessions = new Set<ClientSession>();
  readonly pools = new Map<string, Pool>();
  private readonly hubs = new Map<string, NotificationHub>();
  private readonly upstreams = new Map<string, Upstream>();
  private readonly retryPolicies = new Map<string, RetryPolicy>();
  private users = new Map<string, KnownUser>();
  /** Rotating upstream passwords by source, shared by the pools that log in with them. */
  private readonly credentials = new Map<string, UpstreamPassword>();
  private readonly credentialEvents: CredentialEvents;
  private tlsContext: tls.SecureContext | null = null;
  /** client_tls allow without tls_cert_file: a self-signed certificate made at start, in memory. */
  private ephemeralTls: tls.SecureContext | null = null;
  private ephemeralTlsMaking: Promise<void> | null = null;
  private listener: Listener | null = null;
  private http: AdminHttpServer | null = null;
  private janitor: NodeJS.Timeout | null = null;
  readonly console: AdminConsole;
  draining = false;
  readonly startedAt = Date.now();
  /** /startup: set once listening and (startup_checks_upstream) each database was reached. */
  private startupDone = false;
  /** POST /quitquitquit. In-process it drains; cli.ts replaces it by its SIGTERM drain and exit. */
  quitter: () => void = () => {
    this.drain().catch((err: Error) => this.log.error({ err: err.message }, "drain failed"));
  };

  constructor(
    config: Config,
    readonly log: Logger,
  ) {
    this.config = config;
    this.metrics = new Metrics(
      () => this.snapshot(),
      () => this.sessions.size,
    );
    this.credentialEvents = credentialMetrics(this.metrics.registry);
    this.console = new AdminConsole(this);
    this.applyConfig(config);
  }

  /** The bound client port (after start). */
  get port(): number {
    return this.listener?.port ?? 0;
  }

  get httpPort(): number {
    return this.http?.port ?? 0;
  }

  get listening(): boolean {
    return this.listener?.listening ?? false;
  }

  async start(): Promise<void> {
    // The Postgres grammar (WASM) decides replays and pins: it must be there before any client.
    await loadSqlParser();
    // Before the first client, so that sslmode=require works from the start.
    if (this.needsEphemeralTls(this.config)) await this.makeEphemeralTls();
    const c = this.config;
    this.listener = new Listener({
      host: c.listen.host,
      port: c.listen.port,
      unixSocketDir: c.unix_socket_dir,
      maxClients: () => this.config.max_client_conn,
      clients: () => this.sessions.size,
      accept: (socket) => this.accept(socket),
      rejected: (reason) => this.metrics.clientsRejected.inc({ reason }),
    });
    await this.listener.start();
    if (c.http_listen) {
      this.http = new AdminHttpServer({
        metrics: this.metrics,
        ready: () => this.ready(),
        started: () => this.startupDone,
        quit: () => this.quitter(),
        status: () => this.status(),
        adminPassword: (user) => {
          const u = this.users.get(user);
          return u?.admin ? u.password : null;
        },
      });
      try {
        await this.http.start(c.http_listen.host, c.http_listen.port);
      } catch (err) {
        await this.listener.stop();
        throw err;
      }
    }
    this.janitor = setInterval(() => {
      for (const pool of [...this.pools.values()]) {
        pool.sweep();
        this.forgetIfRefused(pool);
      }
      const idleLimit = this.config.client_idle_timeout;
      const writeLimit = this.config.client_write_timeout;
      if (idleLimit > 0 || writeLimit > 0) {
        const now = Date.now();
        for (const s of [...this.sessions]) {
          if (idleLimit > 0) s.closeIfIdleFor(idleLimit, now);
          if (writeLimit > 0) s.closeIfStalledFor(writeLimit, now);
        }
      }
    }, 1000);
    this.janitor.unref();
    // Open min_pool_size servers for the configured databases and upstream user up front.
    for (const db of Object.values(c.databases)) {
      if (db.min_pool_size > 0) this.poolFor(db, db.target.user);
    }
    if (c.startup_checks_upstream) this.reachUpstreams();
    else this.startupDone = true;
    this.log.info(
      {
        listen: `${c.listen.host}:${this.port}`,
        http: c.http_listen ? `${c.http_listen.host}:${this.httpPort}` : null,
      },
      "pgsidecar listening",
    );
  }

  /**
   * startup_checks_upstream: one server login per configured database (as its URL's user), each
   * tried again until it works; the server stays in the pool. Then /startup answers 200.
   */
  private reachUpstreams(): void {
    const pending = new Set(Object.keys(this.config.databases));
    for (const db of Object.values(this.config.databases)) {
      const attempt = () => {
        if (this.draining) return;
        const pool = this.poolFor(db, db.target.user);
        pool.checkout((_err, conn) => {
          if (conn === null) {
            // Refused (the pool logged why) or query_wait_timeout: try again later.
            setTimeout(attempt, this.config.server_login_retry_max).unref();
            return;
          }
          pool.giveBack(conn, "clean");
          pending.delete(db.name);
          if (pending.size > 0 || this.startupDone) return;
          this.startupDone = true;
          this.log.info({ databases: Object.keys(this.config.databases) }, "upstream reached");
        });
      };
      attempt();
    }
  }

  /** Stops at once: closes listeners, clients and servers. */
  async stop(): Promise<void> {
    this.draining = true;
    if (this.janitor) clearInterval(this.janitor);
    await this.listener?.stop();
    for (const s of [...this.sessions]) s.close(ClientCloseReason.Shutdown);
    for (const hub of this.hubs.values()) hub.close();
    for (const pool of this.pools.values()) pool.close();
    await this.http?.stop();
  }

  /**
   * Graceful drain (SIGTERM): not ready any more; keep accepting for min_sigterm_delay; close each
   * client at its next transaction boundary; resolve when none is left or at shutdown_timeout.
   */
  async drain(): Promise<"drained" | "timeout"> {
    const c = this.config;
    const deadline = Date.now() + c.shutdown_timeout;
    // /readyz fails from here on. While the listener stays open (min_sigterm_delay) new clients
    // still log in and are served: in a classic sidecar the app gets SIGTERM at the same moment
    // and may still connect while it shuts down.
    this.draining = true;
    const delay = Math.min(c.min_sigterm_delay, c.shutdown_timeout);
    if (delay > 0) await sleep(delay);
    await this.listener?.stop();
    // From now on each client is closed at its next transaction boundary: nothing in flight and
    // ReadyForQuery 'I' (0x49) last sent; released (Idle) or holding a session/pinned server.
    for (;;) {
      for (const s of [...this.sessions]) {
        const boundary =
          s.txStatus === 0x49 &&
          (s.state === SessionState.Idle ||
            (s.state === SessionState.Active && s.lease !== null && s.lease.expected.empty));
        if (boundary) s.close(ClientCloseReason.Shutdown);
      }
      const left = deadline - Date.now();
      if (this.sessions.size === 0 || left <= 0) break;
      await sleep(Math.min(50, left));
    }
    const result = this.sessions.size === 0 ? "drained" : "timeout";
    if (result === "timeout")
      this.log.warn({ clients: this.sessions.size }, "shutdown_timeout reached; closing clients");
    await this.stop();
    return result;
  }

  /** SIGHUP: apply a new config to running pools and sessions. Listen addresses need a restart. */
  reload(next: Config): void {
    const prev = this.config;
    // applyConfig may throw (an unreadable TLS file): then nothing of `next` is kept.
    const users = this.users;
    const tlsContext = this.tlsContext;
    try {
      this.applyConfig(next);
    } catch (err) {
      this.users = users;
      this.tlsContext = tlsContext;
      throw err;
    }
    this.config = next;
    if (this.needsEphemeralTls(next) && this.ephemeralTls === null) {
      // tls_cert_file was removed: clients are answered N until the certificate is made.
      this.makeEphemeralTls().catch(() => {});
    }
    for (const [key, pool] of this.pools) {
      const db = this.databaseConfig(pool.database, next);
      if (!db) continue; // a database no longer configured: its pool serves the clients it has
      pool.settings = this.poolSettings(db);
      pool.credential = this.upstreamPassword(db, pool.user);
      this.retryPolicies.delete(key);
      pool.sweep();
    }
    const restart: string[] = [];
    for (const key of ["listen", "http_listen", "unix_socket_dir", "log_format"] as const) {
      if (JSON.stringify(prev[key]) !== JSON.stringify(next[key])) restart.push(key);
    }
    for (const [name, upstream] of this.upstreams) {
      const t = this.databaseConfig(name, next)?.target;
      if (t && (t.host !== upstream.target.host || t.port !== upstream.target.port))
        restart.push(`databases.${name}.upstream`);
    }
    if (restart.length > 0)
      this.log.warn({ settings: restart }, "these changes take effect only after a restart");
    this.log.info({ pools: this.pools.size, log_level: next.log_level }, "configuration reloaded");
  }

  /** track_extra_parameters, lower-cased once per (re)load rather than per use. */
  private trackExtra: ReadonlySet<string> = new Set();

  private applyConfig(c: Config): void {
    this.trackExtra = new Set(c.track_extra_parameters.map((p) => p.toLowerCase()));
    const users = new Map<string, KnownUser>();
    for (const u of c.users) {
      const old = this.users.get(u.name);
      const scramSecret =
        old && old.password === u.password ? old.scramSecret : scramSecretFromPassword(u.password);
      users.set(u.name, { ...u, admin: u.admin || c.admin_users.includes(u.name), scramSecret });
    }
    this.users = users;
    if (c.client_tls === "off") this.tlsContext = null;
    else if (c.tls_cert_file && c.tls_key_file) {
      this.tlsContext = tls.createSecureContext({
        cert: readFileSync(c.tls_cert_file),
        key: readFileSync(c.tls_key_file),
      });
    } else this.tlsContext = this.ephemeralTls;
  }

  private needsEphemeralTls(c: Config): boolean {
    return c.client_tls !== "off" && !(c.tls_cert_file && c.tls_key_file);
  }

  /**
   * Makes the ephemeral certificate (ECDSA P-256, self-signed, never written to disk) and serves
   * client TLS with it while no tls_cert_file is configured. A failure leaves client TLS off
   * (SSLRequest answered N, as before) rather than stopping the sidecar.
   */
  private makeEphemeralTls(): Promise<void> {
    this.ephemeralTlsMaking ??= (async () => {
      const t0 = performance.now();
      try {
        // Loaded only here: the X.509 library and its Reflect polyfill cost nothing otherwise.
        const { makeEphemeralCertificate } = await import("./frontend/ephemeral-cert.js");
        const made = await makeEphemeralCertificate();
        this.ephemeralTls = tls.createSecureContext({ cert: made.cert, key: made.key });
        if (this.needsEphemeralTls(this.config)) this.tlsContext = this.ephemeralTls;
        this.log.info(
          {
            sha256: made.fingerprint,
            ms: Math.round(performance.now() - t0),
            cert_ms: Math.round(made.ms),
          },
          "client TLS: ephemeral self-signed certificate made (sslmode=require works; verify-ca/verify-full need tls_cert_file)",
        );
      } catch (err) {
        this.log.error(
          { err: (err as Error).message },
          "client TLS: could not make an ephemeral certificate; clients asking for TLS are answered N",
        );
      } finally {
        this.ephemeralTlsMaking = null;
      }
    })();
    return this.ephemeralTlsMaking;
  }

  private poolSettings(db: DatabaseConfig): PoolSettings {
    const c = this.config;
    return {
      poolSize: db.pool_size,
      minPoolSize: db.min_pool_size,
      queryWaitTimeoutMs: c.query_wait_timeout,
      connectTimeoutMs: c.server_connect_timeout,
      checkDelayMs: c.server_check_delay,
      checkTimeoutMs: c.server_check_timeout,
      checkQuery: c.server_check_query,
      lifetimeMs: c.server_lifetime,
      idleTimeoutMs: c.server_idle_timeout,
      poolIdleTimeoutMs: c.pool_idle_timeout,
      resetQuery: c.server_reset_query,
      resetTimeoutMs: c.server_reset_timeout,
      keepalive: {
        idleMs: c.server_keepalive_idle,
        intervalMs: c.server_keepalive_interval,
        count: c.server_keepalive_count,
      },
      maxPreparedStatements: c.max_prepared_statements,
      responseTimeoutMs: c.response_timeout,
      passwordWithoutTls: c.server_password_without_tls,
      maxScramIterations: c.server_scram_max_iterations,
    };
  }

  private poolFor(db: DatabaseConfig, user: string): Pool {
    const key = `${db.name}/${user}`;
    let pool = this.pools.get(key);
    if (pool) return pool;
    let upstream = this.upstreams.get(db.name);
    if (!upstream) {
      upstream = new Upstream(
        db.target,
        this.config.server_login_retry,
        this.config.server_login_retry_max,
      );
      this.upstreams.set(db.name, upstream);
    }
    pool = new Pool(
      db.name,
      user,
      this.upstreamPassword(db, user),
      upstream,
      this.poolSettings(db),
      this.log,
      this.poolEvents,
    );
    this.pools.set(key, pool);
    pool.sweep();
    return pool;
  }

  /**
   * Where a pool's server logins get their password: the URL's, for its user; else, for the URL's
   * user, an RDS IAM token (upstream_auth: aws-rds-iam) or password_command; else the user's own
   * from users, followed when it is a password_file.
   */
  private upstreamPassword(db: DatabaseConfig, user: string): UpstreamPassword {
    const c = this.config;
    if (user === db.target.user && db.target.password !== null)
      return new StaticPassword(db.target.password);
    if (user === db.target.user && c.upstream_auth === "aws-rds-iam") {
      const { host, port } = db.target.hosts[0];
      const iam = { hostname: host, port, username: user, region: c.aws_region ?? "" };
      return this.sharedCredential(
        `aws-rds-iam:${JSON.stringify(iam)}`,
        () => new RdsIamPassword(iam, this.credentialEvents, this.log),
      );
    }
    if (user === db.target.user && c.password_command !== null) {
      const settings = {
        command: c.password_command,
        ttlMs: c.password_command_ttl,
        timeoutMs: c.password_command_timeout,
      };
      return this.sharedCredential(
        `command:${JSON.stringify(settings)}`,
        () => new CommandPassword(settings, this.credentialEvents, this.log),
      );
    }
    const u = c.users.find((x) => x.name === user);
    const file = u?.password_file;
    if (u !== undefined && file !== undefined) {
      return this.sharedCredential(
        `file:${file}`,
        () => new FilePassword(file, u.password, this.credentialEvents, this.log),
      );
    }
    return new StaticPassword(u?.password ?? null);
  }

  private sharedCredential(key: string, create: () => UpstreamPassword): UpstreamPassword {
    let credential = this.credentials.get(key);
    if (credential === undefined) {
      credential = create();
      this.credentials.set(key, credential);
    }
    return credential;
  }

  /** Transaction mode: one LISTEN server per pool, opened when a client first listens. */
  private hubFor(pool: Pool, mode: "session" | "transaction"): NotificationHub | null {
    if (mode !== "transaction") return null;
    let hub = this.hubs.get(pool.key);
    if (!hub) {
      hub = new NotificationHub(
        () => pool.openDedicated(),
        this.log.child({ pool: pool.key, role: "listen" }),
        {
          listenerLost: () => this.metrics.listenerReconnects.inc(),
          delivered: (n) => this.metrics.notificationsDelivered.inc(n),
        },
        () => this.config.query_wait_timeout,
      );
      this.hubs.set(pool.key, hub);
    }
    return hub;
  }

  /**
   * A database clients may name: a configured one, else the fallback ("*") entry serving that
   * name from its server (PgBouncer's fallback database); null: none (3D000).
   */
  databaseConfig(name: string, c: Config = this.config): DatabaseConfig | null {
    const db = c.databases[name];
    if (db) return db;
    const any = c.fallback_database;
    if (any === null) return null;
    return { ...any, name, target: { ...any.target, database: name } };
  }

  /**
   * A pool of a database served by the fallback entry whose server never let it in (no such
   * database, no CONNECT right) and that holds nothing: forgotten with its upstream state and
   * stats, so that names clients make up leave nothing behind. It is made again on next use.
   */
  private forgetIfRefused(pool: Pool): void {
    if (pool.serverParams !== null || pool.size > 0 || pool.waiting > 0) return;
    if (this.config.databases[pool.database] !== undefined) return;
    pool.close();
    this.pools.delete(pool.key);
    this.retryPolicies.delete(pool.key);
    const shared = [...this.pools.values()].some((p) => p.database === pool.database);
    if (!shared) this.upstreams.delete(pool.database);
    this.metrics.forgetPool(pool);
  }

  private route(database: string, user: string): Route | null {
    const db = this.databaseConfig(database);
    if (!db) return null;
    const pool = this.poolFor(db, user);
    let retry = this.retryPolicies.get(pool.key);
    if (!retry) {
      retry = new RetryPolicy(db.retry, this.config.retry_max, this.config.retry_buffer_bytes);
      this.retryPolicies.set(pool.key, retry);
    }
    return { pool, mode: db.pool_mode, retry, notifications: this.hubFor(pool, db.pool_mode) };
  }

  private accept(socket: net.Socket): void {
    this.metrics.clientsAccepted.inc();
    const session = new ClientSession(socket, this.sessionContext);
    this.sessions.add(session);
  }

  private ready(): boolean {
    if (this.draining || !this.listening) return false;
    if (!this.config.readyz_checks_upstream) return true;
    for (const u of this.upstreams.values()) if (u.state !== "up") return false;
    return true;
  }

  /** Live state per pool, for metrics, /status and SHOW POOLS. One pass over sessions and servers. */
  snapshot(): PoolSnapshot[] {
    const byPool = new Map<Pool, PoolSnapshot>();
    for (const pool of this.pools.values()) {
      let prepared = 0;
      for (const conn of pool.active) prepared += conn.prepared.size;
      for (const conn of pool.idle) prepared += conn.prepared.size;
      byPool.set(pool, {
        database: pool.database,
        user: pool.user,
        active: pool.active.size,
        idle: pool.idle.length,
        connecting: pool.connecting.size,
        checking: pool.maintaining.size,
        clientsActive: 0,
        clientsWaiting: 0,
        clientsIdle: 0,
        paused: pool.paused,
        pinned: {},
        preparedStatements: prepared,
        poolSize: pool.settings.poolSize,
        maxWaitSeconds: pool.maxWaitMs / 1000,
        upstreamUp: pool.upstream.state === "up",
      });
    }
    for (const s of this.sessions) {
      const p = s.route ? byPool.get(s.route.pool) : undefined;
      if (p === undefined) continue;
      if (s.state === SessionState.Active) p.clientsActive++;
      else if (s.state === SessionState.Waiting || s.state === SessionState.LoggingIn)
        p.clientsWaiting++;
      else if (s.state === SessionState.Idle) p.clientsIdle++;
      for (const reason of s.pins) p.pinned[reason] = (p.pinned[reason] ?? 0) + 1;
    }
    return [...byPool.values()];
  }

  status(): unknown {
    return {
      version: this.console.version,
      uptime_seconds: Math.round((Date.now() - this.startedAt) / 1000),
      draining: this.draining,
      pools: this.snapshot(),
      clients: this.console.clientRows(),
      servers: this.console.serverRows(),
    };
  }

  // Metrics: each event bumps plain numbers in its pool's PoolStats (one WeakMap lookup, no labels).
  private readonly poolEvents: PoolEvents = {
    serverOpened: (pool, conn) => {
      this.metrics.pool(pool).serversOpened++;
      this.log.info(
        { pool: pool.key, server: conn.id, pid: conn.pid, address: conn.address },
        "server connection opened",
      );
    },
    serverClosed: (pool, conn, reason) => {
      bump(this.metrics.pool(pool).serversClosed, reason);
      if (conn.internalError) this.serverInternalError(pool.key, conn.id, conn.internalError);
    },
    connectFailed: (pool, err, reason) => {
      const sqlstate = (err as ServerError).sqlstate ?? "network";
      bump(this.metrics.pool(pool).connectFailures, connectFailureKey(reason, sqlstate));
      if ((err as ProxyError).code === "internal_error") this.serverInternalError(pool.key, 0, err);
    },
    checkoutWaited: (pool, seconds) => this.metrics.pool(pool).checkoutWait.observe(seconds),
    woke: (pool, seconds) => this.metrics.pool(pool).wakeSeconds.observe(seconds),
  };

  /** When the open transaction of a session began (performance.now()), for multi-unit transactions. */
  private readonly txStarted = new WeakMap<ClientSession, number>();

  private readonly sessionEvents: SessionEvents = {
    clientError: (s, sqlstate) => {
      // What the proxy reports ends the unit; any transaction it was in is gone.
      this.txStarted.delete(s);
      bump(
        s.route ? this.metrics.pool(s.route.pool).clientErrors : this.metrics.unroutedErrors,
        sqlstate,
      );
    },
    replay: (s, outcome) => {
      if (s.route) this.metrics.pool(s.route.pool).replays[outcome]++;
    },
    pinned: (s, reason) => {
      if (s.route) bump(this.metrics.pool(s.route.pool).pins, reason);
    },
    statement: (s, result) => {
      if (s.route) this.metrics.pool(s.route.pool).statements[result]++;
    },
    unitDone: (s, seconds, transactionEnded) => {
      if (!s.route) return;
      const stats = this.metrics.pool(s.route.pool);
      stats.queries++;
      stats.querySeconds.observe(seconds);
      if (transactionEnded) {
        stats.transactions++;
        const began = this.txStarted.get(s);
        if (began === undefined) stats.transactionSeconds.observe(seconds);
        else {
          this.txStarted.delete(s);
          stats.transactionSeconds.observe((performance.now() - began) / 1000);
        }
      } else if (!this.txStarted.has(s)) this.txStarted.set(s, performance.now() - seconds * 1000);
    },
    bytes: (direction, n) => this.metrics.countBytes(direction, n),
    notificationsDropped: (n: number) => this.metrics.notificationsDropped.inc(n),
    internalError: () => {
      this.metrics.internalErrors.client++;
    },
  };

  /** A bug caught in a server connection's socket handler (the connection was destroyed). */
  private serverInternalError(pool: string, server: number, err: Error): void {
    this.metrics.internalErrors.server++;
    this.log.error(
      { pool, server, err: err.message, stack: err.stack },
      "internal error, server connection closed",
    );
  }

  private readonly sessionContext: SessionContext = (() => {
    const proxy = this;
    return {
      get log() {
        return proxy.log;
      },
      cancels: proxy.cancels,
      get authType() {
        return proxy.config.auth_type;
      },
      get loginTimeoutMs() {
        return proxy.config.client_login_timeout;
      },
      get maxMessageBytes() {
        return proxy.config.max_message_bytes;
      },
      get maxPreparedStatements() {
        return proxy.config.max_prepared_statements;
      },
      get trackExtraParameters() {
        return proxy.trackExtra;
      },
      get tls() {
        return proxy.tlsContext;
      },
      get tlsRequired() {
        return proxy.config.client_tls === "require";
      },
      // Logins are refused once the listener has closed; during min_sigterm_delay they are not.
      get draining() {
        return proxy.draining && !proxy.listening;
      },
      findUser: (name: string) => proxy.users.get(name),
      route: (database: string, user: string) => proxy.route(database, user),
      openAdmin: (session: ClientSession) => proxy.users.get(session.user)?.admin === true,
      adminQuery: (session: ClientSession, sql: string) => proxy.console.query(session, sql),
      sessionClosed: (session: ClientSession, reason: ClientCloseReason) => {
        if (proxy.sessions.delete(session)) proxy.metrics.clientsClosed.inc({ reason });
      },
      events: proxy.sessionEvents,
    };
  })();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
