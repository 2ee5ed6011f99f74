// What a Pool is configured with (PoolSettings, from the settings table) and what it reports
// (PoolEvents: the metrics and logs of opened, closed and failed servers, waits and wakes).

import type { PasswordWithoutTls } from "../config/schema.js";
import type { DisconnectReason } from "../errors.js";
import type { ConnectFailureReason } from "../reasons.js";
import type { BackendConnection } from "./backend-connection.js";
import type { CheckSettings } from "./health-check.js";
import type { KeepaliveSettings } from "./keepalive.js";
import type { Pool } from "./pool.js";

export interface PoolSettings extends CheckSettings {
  poolSize: number;
  queryWaitTimeoutMs: number;
  connectTimeoutMs: number;
  checkTimeoutMs: number;
  /**
   * pool_idle_timeout: a pool no client used this long closes every server, min_pool_size
   * included, and opens none until the next checkout (0 = off).
   */
  poolIdleTimeoutMs: number;
  resetQuery: string;
  resetTimeoutMs: number;
  keepalive: KeepaliveSettings;
  maxPreparedStatements: number;
  /** server_password_without_tls (default loopback). */
  passwordWithoutTls?: PasswordWithoutTls;
  /** server_scram_max_iterations (default 100,000). */
  maxScramIterations?: number;
}

export interface PoolEvents {
  serverOpened(pool: Pool, conn: BackendConnection): void;
  serverClosed(pool: Pool, conn: BackendConnection, reason: DisconnectReason): void;
  connectFailed(pool: Pool, err: Error, reason: ConnectFailureReason): void;
  checkoutWaited(pool: Pool, seconds: number): void;
  /** A checkout found the pool at zero (no server open or opening): the time until one was handed out. */
  woke(pool: Pool, seconds: number): void;
}

/**
 * How a client gives a server back (see giveBack): `clean` after a unit of work, `reset` after a
 * session, `destroy` when it must not be reused.
 */
export type GiveBack = "clean" | "reset" | "destroy";
