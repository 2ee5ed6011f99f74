// Sidecar: the composition root. Builds every part from one Config, starts them in order and stops
// them in reverse (start, stop, drain, reload); the parts live under sidecar/. It owns the live
// sessions; the pools live in the PoolRegistry.

import type net from "node:net";
import { AdminConsole } from "./admin/console.js";
import { AdminHttpServer } from "./admin/http.js";
import { credentialMetrics } from "./auth/credential-metrics.js";
import type { Pool } from "./backend/pool.js";
import type { Config, DatabaseConfig } from "./config/schema.js";
import { CancelRegistry } from "./frontend/cancel.js";
import type { KnownUser } from "./frontend/client-auth.js";
import { ClientSession, type SessionContext } from "./frontend/client-session.js";
import { Listener } from "./frontend/listener.js";
import type { Logger } from "./log.js";
import { Metrics, type PoolSnapshot } from "./metrics.js";
import { ClientCloseReason } from "./reasons.js";
import { ClientTls } from "./sidecar/client-tls.js";
import { closeAtBoundaries, sleep } from "./sidecar/drain.js";
import { startJanitor } from "./sidecar/janitor.js";
import { knownUsers } from "./sidecar/known-users.js";
import { hubEvents, poolEvents, sessionEvents } from "./sidecar/metric-events.js";
import { PoolRegistry } from "./sidecar/pool-registry.js";
import { snapshotPools } from "./sidecar/pool-snapshot.js";
import { settingsNeedingRestart } from "./sidecar/reload.js";
import { reachUpstreams } from "./sidecar/startup-check.js";
import { UpstreamCredentials } from "./sidecar/upstream-credentials.js";
import { loadSqlParser } from "./sql/parser.js";

export class Sidecar {
  config: Config;
  readonly metrics: Metrics;
  readonly cancels = new CancelRegistry();
  readonly sessions = new Set<ClientSession>();
  private readonly registry: PoolRegistry;
  private readonly clientTls: ClientTls;
  private users = new Map<string, KnownUser>();
  /** track_extra_parameters, lower-cased once per (re)load rather than per use. */
  private trackExtra: ReadonlySet<string> = new Set();
  private listener: Listener | null = null;
  private http: AdminHttpServer | null = null;
  private stopJanitor: (() => void) | null = null;
  readonly console: AdminConsole;
  private readonly sessionContext: SessionContext;
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
    this.registry = new PoolRegistry({
      log,
      config: () => this.config,
      credentials: new UpstreamCredentials(credentialMetrics(this.metrics.registry), log),
      poolEvents: poolEvents(this.metrics, log),
      hubEvents: hubEvents(this.metrics),
      forgotten: (pool) => this.metrics.forgetPool(pool),
    });
    this.clientTls = new ClientTls(log);
    this.console = new AdminConsole(this);
    this.sessionContext = this.makeSessionContext();
    this.applyConfig(config);
  }

  /** The pools by `database/user` (SHOW POOLS, SHOW SERVERS, tests). */
  get pools(): ReadonlyMap<string, Pool> {
    return this.registry.pools;
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
    await this.clientTls.ensureEphemeral();
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
    this.stopJanitor = startJanitor(this.registry, this.sessions, () => this.config);
    // Open min_pool_size servers for the configured databases and upstream user up front.
    for (const db of Object.values(c.databases)) {
      if (db.min_pool_size > 0) this.registry.poolFor(db, db.target.user);
    }
    if (c.startup_checks_upstream) {
      reachUpstreams({
        config: () => this.config,
        poolFor: (db, user) => this.registry.poolFor(db, user),
        stopped: () => this.draining,
        reached: () => this.upstreamsReached(),
      });
    } else this.startupDone = true;
    this.log.info(
      {
        listen: `${c.listen.host}:${this.port}`,
        http: c.http_listen ? `${c.http_listen.host}:${this.httpPort}` : null,
      },
      "pgsidecar listening",
    );
  }

  private upstreamsReached(): void {
    if (this.startupDone) return;
    this.startupDone = true;
    this.log.info({ databases: Object.keys(this.config.databases) }, "upstream reached");
  }

  /** Stops at once: closes listeners, clients and servers. */
  async stop(): Promise<void> {
    this.draining = true;
    this.stopJanitor?.();
    await this.listener?.stop();
    for (const s of [...this.sessions]) s.close(ClientCloseReason.Shutdown);
    this.registry.close();
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
    await closeAtBoundaries(this.sessions, deadline);
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
    this.applyConfig(next);
    this.config = next;
    // tls_cert_file was removed: clients are answered N until the certificate is made.
    this.clientTls.ensureEphemeral().catch(() => {});
    this.registry.reconfigure(next);
    const restart = settingsNeedingRestart(prev, next, this.registry);
    if (restart.length > 0)
      this.log.warn({ settings: restart }, "these changes take effect only after a restart");
    this.log.info({ pools: this.pools.size, log_level: next.log_level }, "configuration reloaded");
  }

  /** What sessions read of `c` besides the config itself. The TLS files first: they may throw. */
  private applyConfig(c: Config): void {
    this.clientTls.apply(c);
    this.trackExtra = new Set(c.track_extra_parameters.map((p) => p.toLowerCase()));
    this.users = knownUsers(c, this.users);
  }

  /**
   * A database clients may name: a configured one, else the fallback ("*") entry serving that
   * name from its server; null: none (3D000).
   */
  databaseConfig(name: string, c: Config = this.config): DatabaseConfig | null {
    return this.registry.databaseConfig(name, c);
  }

  private accept(socket: net.Socket): void {
    this.metrics.clientsAccepted.inc();
    const session = new ClientSession(socket, this.sessionContext);
    this.sessions.add(session);
  }

  private ready(): boolean {
    if (this.draining || !this.listening) return false;
    return !this.config.readyz_checks_upstream || this.registry.allUpstreamsUp();
  }

  /** Live state per pool, for metrics, /status and SHOW POOLS. */
  snapshot(): PoolSnapshot[] {
    return snapshotPools(this.registry.pools.values(), this.sessions);
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

  /** What every session reads of the sidecar; getters, so a reload reaches running sessions. */
  private makeSessionContext(): SessionContext {
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
        return proxy.clientTls.context;
      },
      get tlsRequired() {
        return proxy.config.client_tls === "require";
      },
      // Logins are refused once the listener has closed; during min_sigterm_delay they are not.
      get draining() {
        return proxy.draining && !proxy.listening;
      },
      findUser: (name: string) => proxy.users.get(name),
      route: (database: string, user: string) => proxy.registry.route(database, user),
      openAdmin: (session: ClientSession) => proxy.users.get(session.user)?.admin === true,
      adminQuery: (session: ClientSession, sql: string) => proxy.console.query(session, sql),
      sessionClosed: (session: ClientSession, reason: ClientCloseReason) => {
        if (proxy.sessions.delete(session)) proxy.metrics.clientsClosed.inc({ reason });
      },
      events: sessionEvents(proxy.metrics),
    };
  }
}
