// Metrics: pgsidecar's own prom-client Registry. What the relay path counts lives in a PoolStats of
// plain numbers per (database, user) (metrics/pool-stats.ts); the registry turns those
// (metrics/stats-collectors.ts) and gauges read from live pool state (metrics/live-gauges.ts) into
// series at scrape time. The rare events below are plain prom-client counters.

import client from "prom-client";
import type { PoolSnapshot } from "./metrics/live-gauges.js";
import { registerLiveGauges } from "./metrics/live-gauges.js";
import { PoolStats } from "./metrics/pool-stats.js";
import { registerStatsCollectors } from "./metrics/stats-collectors.js";
import { ClientCloseReason } from "./reasons.js";
import { packageVersion } from "./version.js";

export type { PoolSnapshot } from "./metrics/live-gauges.js";
export { bump, connectFailureKey, PoolStats } from "./metrics/pool-stats.js";

export class Metrics {
  readonly registry = new client.Registry();
  /** One PoolStats per (database, user), in creation order. */
  readonly pools = new Map<string, PoolStats>();
  /** The same PoolStats keyed by the Pool object, so the hot path pays one WeakMap lookup. */
  private readonly byOwner = new WeakMap<object, PoolStats>();
  /** Client errors of sessions that have no pool (bad startup, failed login, unknown database). */
  readonly unroutedErrors = new Map<string, number>();
  bytesIn = 0;
  bytesOut = 0;
  /** Bugs caught in a socket handler; the session or server connection was closed for each. */
  readonly internalErrors = { client: 0, server: 0 };

  readonly notificationsDelivered = new client.Counter({
    name: "pgsidecar_notifications_delivered_total",
    help: "NotificationResponses fanned out to LISTENing clients in transaction mode (one per client).",
    registers: [this.registry],
  });
  readonly listenerReconnects = new client.Counter({
    name: "pgsidecar_listener_reconnects_total",
    help: "Times a pool's LISTEN server died and was replaced (its clients were told notifications may have been missed).",
    registers: [this.registry],
  });
  readonly notificationsDropped = new client.Counter({
    name: "pgsidecar_notifications_dropped_total",
    help: "Notifications not delivered because a client's queue (1,000 while it was busy) was full.",
    registers: [this.registry],
  });
  readonly clientsAccepted = new client.Counter({
    name: "pgsidecar_client_connections_accepted_total",
    help: "Client connections accepted by the listener.",
    registers: [this.registry],
  });
  readonly clientsRejected = new client.Counter({
    name: "pgsidecar_client_connections_rejected_total",
    help: "Client connections refused by the listener, by reason (max_client_conn, shutdown, ...).",
    labelNames: ["reason"],
    registers: [this.registry],
  });

  readonly clientsClosed = new client.Counter({
    name: "pgsidecar_client_connections_closed_total",
    help: "Client connections closed, by reason (client_exit, client_gone, login_failed, idle_timeout, protocol_error, shutdown, ...).",
    labelNames: ["reason"],
    registers: [this.registry],
  });

  constructor(snapshot: () => PoolSnapshot[], clientsTotal: () => number) {
    const reg = this.registry;
    // Every reason starts at 0, so that increase() sees the first close of each.
    for (const reason of Object.values(ClientCloseReason)) this.clientsClosed.inc({ reason }, 0);
    registerStatsCollectors(reg, () => this.pools.values(), this);
    registerLiveGauges(reg, snapshot, clientsTotal);
    new client.Gauge({
      name: "pgsidecar_build_info",
      help: "Always 1; the version label says which pgsidecar is running.",
      labelNames: ["version"],
      registers: [reg],
    }).set({ version: packageVersion }, 1);
    // Node's process metrics keep their standard names (process_*, nodejs_*), as every exporter
    // does, so generic dashboards and alerts apply; the scrape's job/pod labels tell them apart.
    // The event-loop delay monitor samples every 100 ms, not prom-client's 10 ms: a timer every
    // 10 ms wakes an idle sidecar 100 times a second (strace: ~190 epoll_pwait/s with no client),
    // and 10 samples a second still give each scrape's lag percentiles.
    client.collectDefaultMetrics({ register: reg, eventLoopMonitoringPrecision: 100 });
    // These three are gauges named like counters (promtool rejects them); nodejs_active_handles,
    // _requests and _resources carry the same numbers by type.
    for (const name of [
      "nodejs_active_handles_total",
      "nodejs_active_requests_total",
      "nodejs_active_resources_total",
    ])
      reg.removeSingleMetric(name);
  }

  /** The stats of a pool, created on first use; `owner` (the Pool) makes later lookups cheap. */
  pool(owner: { database: string; user: string }): PoolStats {
    let s = this.byOwner.get(owner);
    if (s !== undefined) return s;
    const key = `${owner.database}\u0000${owner.user}`;
    s = this.pools.get(key);
    if (s === undefined) {
      s = new PoolStats(owner.database, owner.user);
      this.pools.set(key, s);
    }
    this.byOwner.set(owner, s);
    return s;
  }

  /** Drops the stats of a pool the proxy removed: its series leave /metrics. */
  forgetPool(owner: { database: string; user: string }): void {
    this.byOwner.delete(owner);
    this.pools.delete(`${owner.database}\u0000${owner.user}`);
  }

  countBytes(direction: "in" | "out", n: number): void {
    if (direction === "in") this.bytesIn += n;
    else this.bytesOut += n;
  }
}
