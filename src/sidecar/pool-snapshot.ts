// The live state of each pool, read from its servers and the sessions routed to it: for the
// gauges of /metrics, /status and SHOW POOLS. One pass over sessions and servers.

import type { Pool } from "../backend/pool.js";
import { type ClientSession, SessionState } from "../frontend/client-session.js";
import type { PoolSnapshot } from "../metrics/live-gauges.js";

export function snapshotPools(
  pools: Iterable<Pool>,
  sessions: Iterable<ClientSession>,
): PoolSnapshot[] {
  const byPool = new Map<Pool, PoolSnapshot>();
  for (const pool of pools) {
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
  for (const s of sessions) {
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
