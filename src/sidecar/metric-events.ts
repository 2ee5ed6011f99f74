// What the pools, the sessions and the LISTEN hubs report, counted into Metrics. Each event bumps
// plain numbers in its pool's PoolStats (one WeakMap lookup, no label hashing).

import type { PoolEvents } from "../backend/pool.js";
import type { ProxyError, ServerError } from "../errors.js";
import type { ClientSession, SessionEvents } from "../frontend/client-session.js";
import type { HubEvents } from "../frontend/notification-hub.js";
import type { Logger } from "../log.js";
import { bump, connectFailureKey } from "../metrics/pool-stats.js";
import type { Metrics } from "../metrics.js";

export function poolEvents(metrics: Metrics, log: Logger): PoolEvents {
  return {
    serverOpened: (pool, conn) => {
      metrics.pool(pool).serversOpened++;
      log.info(
        { pool: pool.key, server: conn.id, pid: conn.pid, address: conn.address },
        "server connection opened",
      );
    },
    serverClosed: (pool, conn, reason) => {
      bump(metrics.pool(pool).serversClosed, reason);
      if (conn.internalError)
        serverInternalError(metrics, log, pool.key, conn.id, conn.internalError);
    },
    connectFailed: (pool, err, reason) => {
      const sqlstate = (err as ServerError).sqlstate ?? "network";
      bump(metrics.pool(pool).connectFailures, connectFailureKey(reason, sqlstate));
      if ((err as ProxyError).code === "internal_error")
        serverInternalError(metrics, log, pool.key, 0, err);
    },
    checkoutWaited: (pool, seconds) => metrics.pool(pool).checkoutWait.observe(seconds),
    woke: (pool, seconds) => metrics.pool(pool).wakeSeconds.observe(seconds),
  };
}

/** A bug caught in a server connection's socket handler (the connection was destroyed). */
function serverInternalError(
  metrics: Metrics,
  log: Logger,
  pool: string,
  server: number,
  err: Error,
): void {
  metrics.internalErrors.server++;
  log.error(
    { pool, server, err: err.message, stack: err.stack },
    "internal error, server connection closed",
  );
}

export function sessionEvents(metrics: Metrics): SessionEvents {
  /**
   * When the open transaction of a session began (performance.now()): a transaction of several
   * units is timed from its first unit's start.
   */
  const txStarted = new WeakMap<ClientSession, number>();
  return {
    clientError: (s, sqlstate) => {
      // What the proxy reports ends the unit; any transaction it was in is gone.
      txStarted.delete(s);
      bump(s.route ? metrics.pool(s.route.pool).clientErrors : metrics.unroutedErrors, sqlstate);
    },
    replay: (s, outcome) => {
      if (s.route) metrics.pool(s.route.pool).replays[outcome]++;
    },
    pinned: (s, reason) => {
      if (s.route) bump(metrics.pool(s.route.pool).pins, reason);
    },
    statement: (s, result) => {
      if (s.route) metrics.pool(s.route.pool).statements[result]++;
    },
    unitDone: (s, seconds, transactionEnded) => {
      if (!s.route) return;
      const stats = metrics.pool(s.route.pool);
      stats.queries++;
      stats.querySeconds.observe(seconds);
      if (transactionEnded) {
        stats.transactions++;
        const began = txStarted.get(s);
        if (began === undefined) stats.transactionSeconds.observe(seconds);
        else {
          txStarted.delete(s);
          stats.transactionSeconds.observe((performance.now() - began) / 1000);
        }
      } else if (!txStarted.has(s)) txStarted.set(s, performance.now() - seconds * 1000);
    },
    bytes: (direction, n) => metrics.countBytes(direction, n),
    notificationsDropped: (n: number) => metrics.notificationsDropped.inc(n),
    internalError: () => {
      metrics.internalErrors.client++;
    },
  };
}

export function hubEvents(metrics: Metrics): HubEvents {
  return {
    listenerLost: () => metrics.listenerReconnects.inc(),
    delivered: (n) => metrics.notificationsDelivered.inc(n),
  };
}
