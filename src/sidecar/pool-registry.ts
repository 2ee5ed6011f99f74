// The pools by (database, user) and what each needs beside it: the database's upstream (hosts,
// role, backoff; shared by its users' pools), its retry policy and its LISTEN hub. Routing a
// client's (database, user) makes them on first use.

import { Pool, type PoolEvents } from "../backend/pool.js";
import type { PoolSettings } from "../backend/pool-options.js";
import { Upstream } from "../backend/upstream.js";
import type { Config, DatabaseConfig } from "../config/schema.js";
import type { Route } from "../frontend/client-session.js";
import { type HubEvents, NotificationHub } from "../frontend/notification-hub.js";
import { RetryPolicy } from "../frontend/retry-policy.js";
import type { Logger } from "../log.js";
import type { UpstreamCredentials } from "./upstream-credentials.js";

export interface PoolRegistryNeeds {
  readonly log: Logger;
  /** The live configuration (after a reload, the new one). */
  config(): Config;
  readonly credentials: UpstreamCredentials;
  readonly poolEvents: PoolEvents;
  readonly hubEvents: HubEvents;
  /** A pool was dropped for good (forgetIfRefused): its metrics go too. */
  forgotten(pool: Pool): void;
}

export class PoolRegistry {
  /** By pool.key, `database/user`. */
  readonly pools = new Map<string, Pool>();
  /** By database name. */
  private readonly upstreams = new Map<string, Upstream>();
  /** By pool.key; made again from the settings after a reload. */
  private readonly retryPolicies = new Map<string, RetryPolicy>();
  private readonly hubs = new Map<string, NotificationHub>();

  constructor(private readonly needs: PoolRegistryNeeds) {}

  /**
   * A database clients may name: a configured one, else the fallback ("*") entry serving that
   * name from its server (PgBouncer's fallback database); null: none (3D000).
   */
  databaseConfig(name: string, c: Config = this.needs.config()): DatabaseConfig | null {
    const db = c.databases[name];
    if (db) return db;
    const any = c.fallback_database;
    if (any === null) return null;
    return { ...any, name, target: { ...any.target, database: name } };
  }

  /** Where a client's (database, user) goes; null: no such database. */
  route(database: string, user: string): Route | null {
    const db = this.databaseConfig(database);
    if (!db) return null;
    const pool = this.poolFor(db, user);
    let retry = this.retryPolicies.get(pool.key);
    if (!retry) {
      const c = this.needs.config();
      retry = new RetryPolicy(db.retry, c.retry_max, c.retry_buffer_bytes);
      this.retryPolicies.set(pool.key, retry);
    }
    return { pool, mode: db.pool_mode, retry, notifications: this.hubFor(pool, db.pool_mode) };
  }

  poolFor(db: DatabaseConfig, user: string): Pool {
    const key = `${db.name}/${user}`;
    let pool = this.pools.get(key);
    if (pool) return pool;
    const c = this.needs.config();
    let upstream = this.upstreams.get(db.name);
    if (!upstream) {
      upstream = new Upstream(db.target, c.server_login_retry, c.server_login_retry_max);
      this.upstreams.set(db.name, upstream);
    }
    pool = new Pool(
      db.name,
      user,
      this.needs.credentials.passwordFor(db, user, c),
      upstream,
      poolSettings(db, c),
      this.needs.log,
      this.needs.poolEvents,
    );
    this.pools.set(key, pool);
    pool.sweep();
    return pool;
  }

  /** Transaction mode: one LISTEN server per pool, opened when a client first listens. */
  private hubFor(pool: Pool, mode: "session" | "transaction"): NotificationHub | null {
    if (mode !== "transaction") return null;
    let hub = this.hubs.get(pool.key);
    if (!hub) {
      hub = new NotificationHub(
        () => pool.openDedicated(),
        this.needs.log.child({ pool: pool.key, role: "listen" }),
        this.needs.hubEvents,
        () => this.needs.config().query_wait_timeout,
      );
      this.hubs.set(pool.key, hub);
    }
    return hub;
  }

  /**
   * A reload: each live pool of a database still configured takes the new pool settings and
   * password source, and its retry policy is made again on next use. A database no longer
   * configured keeps its pool as it is, serving the clients it has.
   */
  reconfigure(next: Config): void {
    for (const [key, pool] of this.pools) {
      const db = this.databaseConfig(pool.database, next);
      if (!db) continue;
      pool.settings = poolSettings(db, next);
      pool.credential = this.needs.credentials.passwordFor(db, pool.user, next);
      this.retryPolicies.delete(key);
      pool.sweep();
    }
  }

  /** Databases whose upstream host or port `next` changes: the pools keep the old until a restart. */
  movedUpstreams(next: Config): string[] {
    const moved: string[] = [];
    for (const [name, upstream] of this.upstreams) {
      const t = this.databaseConfig(name, next)?.target;
      if (t && (t.host !== upstream.target.host || t.port !== upstream.target.port))
        moved.push(name);
    }
    return moved;
  }

  /** readyz_checks_upstream: every upstream takes new connections (none is backing off). */
  allUpstreamsUp(): boolean {
    for (const u of this.upstreams.values()) if (u.state !== "up") return false;
    return true;
  }

  /** The janitor's round: each pool closes what is due and opens what is missing. */
  sweep(): void {
    for (const pool of [...this.pools.values()]) {
      pool.sweep();
      this.forgetIfRefused(pool);
    }
  }

  /**
   * A pool of a database served by the fallback entry whose server never let it in (no such
   * database, no CONNECT right) and that holds nothing: forgotten with its upstream state and
   * stats, so that names clients make up leave nothing behind. It is made again on next use.
   */
  private forgetIfRefused(pool: Pool): void {
    if (pool.serverParams !== null || pool.size > 0 || pool.waiting > 0) return;
    if (this.needs.config().databases[pool.database] !== undefined) return;
    pool.close();
    this.pools.delete(pool.key);
    this.retryPolicies.delete(pool.key);
    const shared = [...this.pools.values()].some((p) => p.database === pool.database);
    if (!shared) this.upstreams.delete(pool.database);
    this.needs.forgotten(pool);
  }

  /** Shutdown: the LISTEN hubs, then every pool's servers. */
  close(): void {
    for (const hub of this.hubs.values()) hub.close();
    for (const pool of this.pools.values()) pool.close();
  }
}

/** A database's pool settings under `c`. */
function poolSettings(db: DatabaseConfig, c: Config): PoolSettings {
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
