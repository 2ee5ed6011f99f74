// The gauges read from live pool state at scrape time: one PoolSnapshot per pool (servers by
// state, clients by state, pins, waits), taken once per scrape and shared by every gauge.

import client from "prom-client";
import { perPoolMetric, type Row } from "./per-pool.js";

export interface PoolSnapshot {
  database: string;
  user: string;
  active: number;
  idle: number;
  connecting: number;
  checking: number;
  clientsActive: number;
  clientsWaiting: number;
  clientsIdle: number;
  paused: boolean;
  /** Servers pinned to a client by session state, by reason (a server may count under several). */
  pinned: Record<string, number>;
  preparedStatements: number;
  /** pool_size: the most servers this pool may open. */
  poolSize: number;
  /** The oldest waiting client's wait so far, in seconds (PgBouncer's maxwait). */
  maxWaitSeconds: number;
  /** The upstream accepts new connections now (not backing off after failures). */
  upstreamUp: boolean;
}

/** A scrape reads every gauge within this many ms: they share one snapshot. */
const SNAPSHOT_REUSE_MS = 50;

export function registerLiveGauges(
  reg: client.Registry,
  snapshot: () => PoolSnapshot[],
  clientsTotal: () => number,
): void {
  // Each collect() would otherwise walk all pools and sessions again.
  let cached: { at: number; pools: PoolSnapshot[] } | null = null;
  const current = () => {
    const now = Date.now();
    if (cached === null || now - cached.at > SNAPSHOT_REUSE_MS)
      cached = { at: now, pools: snapshot() };
    return cached.pools;
  };
  const perPool = (
    name: string,
    help: string,
    extra: string[],
    rows: (p: PoolSnapshot) => Iterable<Row>,
  ) => perPoolMetric("gauge", reg, current, name, help, extra, rows);
  perPool(
    "pgsidecar_client_connections",
    "Client connections by state: active (holding a server), waiting (for a server), idle.",
    ["state"],
    (p) => [
      [{ state: "active" }, p.clientsActive],
      [{ state: "waiting" }, p.clientsWaiting],
      [{ state: "idle" }, p.clientsIdle],
    ],
  );
  perPool(
    "pgsidecar_server_connections",
    "Server connections by state: active (leased), idle, connecting, checking (pre-use check or reset).",
    ["state"],
    (p) => [
      [{ state: "active" }, p.active],
      [{ state: "idle" }, p.idle],
      [{ state: "connecting" }, p.connecting],
      [{ state: "checking" }, p.checking],
    ],
  );
  perPool(
    "pgsidecar_pool_size",
    "The most server connections the pool may open (pool_size).",
    [],
    (p) => [[{}, p.poolSize]],
  );
  perPool(
    "pgsidecar_pool_paused",
    "1 while the pool is paused (admin PAUSE): new units wait.",
    [],
    (p) => [[{}, p.paused ? 1 : 0]],
  );
  perPool(
    "pgsidecar_pool_max_wait_seconds",
    "How long the oldest waiting client has waited for a server so far (0 when none waits).",
    [],
    (p) => [[{}, p.maxWaitSeconds]],
  );
  perPool(
    "pgsidecar_upstream_up",
    "1 while the pool's upstream takes new connections, 0 while it backs off after failures.",
    [],
    (p) => [[{}, p.upstreamUp ? 1 : 0]],
  );
  perPool(
    "pgsidecar_pinned_clients",
    "Clients pinned to their server by session state now, by reason (SET, LISTEN, temp table, advisory lock, ...).",
    ["reason"],
    (p) => Object.entries(p.pinned).map(([reason, n]) => [{ reason }, n]),
  );
  perPool(
    "pgsidecar_server_prepared_statements",
    "Prepared statements held on the pool's servers.",
    [],
    (p) => [[{}, p.preparedStatements]],
  );
  new client.Gauge({
    name: "pgsidecar_clients",
    help: "All client connections, including those still logging in and admin console sessions.",
    registers: [reg],
    collect() {
      this.set(clientsTotal());
    },
  });
}
