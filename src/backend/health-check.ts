// Health checks: what the pool's upkeep decides about one server (retire it, check it, leave it),
// and the pool-owned query (check or reset) run on a server under a deadline.

import * as clock from "../clock.js";
import { DisconnectReason } from "../errors.js";
import type { Logger } from "../log.js";
import { FrontendCode, TxStatus } from "../protocol/codes.js";
import * as msg from "../protocol/messages.js";
import type { BackendConnection, BackendListener } from "./backend-connection.js";
import { Action } from "./expected-responses.js";

/** The settings the checks read (a slice of PoolSettings). */
export interface CheckSettings {
  checkDelayMs: number;
  checkQuery: string;
  lifetimeMs: number;
  idleTimeoutMs: number;
  minPoolSize: number;
  responseTimeoutMs: number;
}

/** What to do with an idle server at upkeep: close it (with the reason), check it, or leave it. */
export type IdleVerdict = DisconnectReason | "check" | null;

/**
 * An idle server past server_lifetime, opened before a RECONNECT (`retireBefore`), or idle past
 * server_idle_timeout while the pool has more than min_pool_size, is closed; one silent past
 * server_check_delay is checked, so a dead or black-holed server is replaced before a client
 * needs it.
 */
export function idleVerdict(
  conn: BackendConnection,
  s: CheckSettings,
  now: number,
  retireBefore: number,
  poolSize: number,
): IdleVerdict {
  const retire = retireReason(conn, s, now, retireBefore);
  if (retire !== null) return retire;
  if (s.idleTimeoutMs > 0 && now - conn.idleSince > s.idleTimeoutMs && poolSize > s.minPoolSize)
    return DisconnectReason.IdleTimeout;
  return needsCheck(conn, s, now) ? "check" : null;
}

/** A server past server_lifetime, or opened before a RECONNECT, is retired (idle or given back). */
export function retireReason(
  conn: BackendConnection,
  s: CheckSettings,
  now: number,
  retireBefore: number,
): DisconnectReason | null {
  if (s.lifetimeMs > 0 && now - conn.createdAt > s.lifetimeMs) return DisconnectReason.Lifetime;
  return conn.createdAt < retireBefore ? DisconnectReason.Reconnect : null;
}

/** Whether the server has been silent past server_check_delay (checked before use). */
export function needsCheck(conn: BackendConnection, s: CheckSettings, now: number): boolean {
  return now - conn.lastReceivedAt > s.checkDelayMs;
}

/**
 * How long a leased server that owes replies has been silent, when that is past
 * response_timeout (0: it is not overdue, or the timeout is off).
 */
export function overdueMs(conn: BackendConnection, s: CheckSettings, now: number): number {
  if (s.responseTimeoutMs <= 0 || conn.expected.empty) return 0;
  const quiet = now - Math.max(conn.lastReceivedAt, conn.lastSentAt);
  return quiet > s.responseTimeoutMs ? quiet : 0;
}

/**
 * Closes each leased server overdue past response_timeout. Closing alone would leave the
 * statement running on the server (it notices a gone client only when it writes), and each
 * replay would add a copy: it is cancelled first.
 */
export function closeUnresponsive(
  leased: Iterable<BackendConnection>,
  s: CheckSettings,
  now: number,
  log: Logger,
  pool: string,
): void {
  for (const conn of leased) {
    const quiet = overdueMs(conn, s, now);
    if (quiet === 0) continue;
    log.warn({ pool, server: conn.id, quiet_ms: quiet }, "server stopped answering");
    conn.cancel();
    conn.destroy(DisconnectReason.ResponseTimeout);
  }
}

/** server_check_query as a Query message (an empty query when it is not set). */
export function checkQuery(s: CheckSettings): Buffer {
  return s.checkQuery ? msg.query(s.checkQuery) : msg.emptyQuery;
}

/**
 * Sends one pool-owned query (check or reset) and waits for its ReadyForQuery within
 * `timeoutMs`. `done(true)`: the server answered and is outside a transaction; `done(false)`: it
 * failed, was lost or stayed silent (black-holed). Runs `done` once; the caller decides the rest.
 */
export function runPoolQuery(
  conn: BackendConnection,
  query: Buffer,
  timeoutMs: number,
  done: (ok: boolean) => void,
): void {
  let finished = false;
  const finish = (ok: boolean) => {
    if (finished) return;
    finished = true;
    clock.cancel(timer);
    conn.listener = null;
    done(ok);
  };
  const timer = clock.after(timeoutMs, () => finish(false));
  const listener: BackendListener = {
    forward() {},
    forwardAsync() {},
    insert() {},
    chunkEnd() {},
    ready: (status) => finish(status === TxStatus.Idle),
    lost: () => finish(false),
  };
  conn.listener = listener;
  conn.expect(FrontendCode.Query, Action.Ignore);
  conn.write(query);
}

/**
 * The query that cleans a server a client gave back, or null when it is clean already.
 * After a unit (`clean`): server_reset_query (or DISCARD ALL) when session state is left (pins,
 * a reset owed), ROLLBACK when a transaction or replies are still open. After a session
 * (`reset`): server_reset_query, after a ROLLBACK inside a transaction.
 */
export function cleanupSql(
  conn: BackendConnection,
  after: "clean" | "reset",
  resetQuery: string,
): string | null {
  const inTransaction = conn.txStatus !== TxStatus.Idle;
  if (after === "clean") {
    if (conn.pins.size > 0 || conn.needsReset) return resetQuery || "DISCARD ALL";
    return !conn.expected.empty || inTransaction ? "ROLLBACK" : null;
  }
  const sql = inTransaction ? `ROLLBACK; ${resetQuery}` : resetQuery;
  if (sql.trim()) return sql;
  return conn.expected.empty && !inTransaction ? null : "ROLLBACK";
}
