// Metrics: pgsidecar's own prom-client Registry. What the relay path counts lives in a PoolStats of
// plain numbers per (database, user), bumped inline with no label hashing and no allocation; the
// registry turns those, and gauges read from live pool state, into series at scrape time.

import { readFileSync } from "node:fs";
import client from "prom-client";
import {
  ClientCloseReason,
  type ConnectFailureReason,
  DisconnectReason,
  PinReason,
  ReplayOutcome,
} from "./reasons.js";

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

/** Seconds; fine at the bottom for loopback round trips, up to query_wait_timeout-sized waits. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

export const StatementResult = ["hit", "miss", "reprepare"] as const;
export type StatementResult = (typeof StatementResult)[number];

/** A fixed-bucket histogram as plain numbers: observe() is a short scan and three additions. */
export class Buckets {
  /** Per bucket (not cumulative); the last one is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[] = LATENCY_BUCKETS) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }
}

/** The key of PoolStats.connectFailures: a ConnectFailureReason and a SQLSTATE (no spaces in either). */
export function connectFailureKey(reason: ConnectFailureReason, sqlstate: string): string {
  return `${reason} ${sqlstate}`;
}

/** Bumps `key` in a map of counts. For label values that come from a closed set. */
export function bump(map: Map<string, number>, key: string, n = 1): void {
  map.set(key, (map.get(key) ?? 0) + n);
}

/**
 * What one pool (database, user) counts. Created once per pool (Metrics.pool()); the hot path bumps
 * its fields directly. Every label value a counter can take from a closed set starts at 0, so that
 * PromQL's increase() sees the first event (a series born at 1 shows no increase).
 */
export class PoolStats {
  queries = 0;
  transactions = 0;
  serversOpened = 0;
  readonly serversClosed = new Map<string, number>(
    Object.values(DisconnectReason).map((r) => [r, 0]),
  );
  /** By connectFailureKey(reason, SQLSTATE): "network" for the SQLSTATE below the protocol. */
  readonly connectFailures = new Map<string, number>();
  readonly replays: Record<ReplayOutcome, number> = {
    succeeded: 0,
    gave_up: 0,
    not_retryable: 0,
  };
  readonly statements: Record<StatementResult, number> = { hit: 0, miss: 0, reprepare: 0 };
  readonly pins = new Map<string, number>(Object.values(PinReason).map((r) => [r, 0]));
  readonly clientErrors = new Map<string, number>();
  readonly checkoutWait = new Buckets();
  readonly querySeconds = new Buckets();
  readonly transactionSeconds = new Buckets();
  /** Checkouts that found the pool at zero: until a server was handed out (a cold start). */
  readonly wakeSeconds = new Buckets();

  constructor(
    readonly database: string,
    readonly user: string,
  ) {}
}

type PoolLabels = { database: string; user: string };

/**
 * A histogram whose buckets live in PoolStats (Buckets), exported at scrape time. prom-client's own
 * Histogram hashes its label set on every observe(); this one never sees the hot path.
 */
class PoolHistogram extends client.Histogram<"database" | "user"> {
  constructor(
    private readonly metricName: string,
    private readonly helpText: string,
    registry: client.Registry,
    private readonly pools: () => Iterable<PoolStats>,
    private readonly pick: (s: PoolStats) => Buckets,
  ) {
    super({
      name: metricName,
      help: helpText,
      labelNames: ["database", "user"],
      buckets: [...LATENCY_BUCKETS],
      // Not prom-client's global registry: every Sidecar in a process has its own.
      registers: [],
    });
    registry.registerMetric(this);
  }

  private values() {
    const out: Array<{
      labels: Record<string, string | number>;
      value: number;
      metricName: string;
    }> = [];
    for (const s of this.pools()) {
      const b = this.pick(s);
      const labels: PoolLabels = { database: s.database, user: s.user };
      let acc = 0;
      for (let i = 0; i < b.bounds.length; i++) {
        acc += b.counts[i];
        out.push({
          labels: { ...labels, le: b.bounds[i] },
          value: acc,
          metricName: `${this.metricName}_bucket`,
        });
      }
      out.push({
        labels: { ...labels, le: "+Inf" },
        value: b.count,
        metricName: `${this.metricName}_bucket`,
      });
      out.push({ labels: { ...labels }, value: b.sum, metricName: `${this.metricName}_sum` });
      out.push({ labels: { ...labels }, value: b.count, metricName: `${this.metricName}_count` });
    }
    return out;
  }

  /** What the registry renders as text (prom-client calls this in preference to get()). */
  async getForPromString() {
    return this.get();
  }

  override async get() {
    return {
      name: this.metricName,
      help: this.helpText,
      type: "histogram",
      aggregator: "sum",
      values: this.values(),
    } as unknown as client.MetricObjectWithValues<client.MetricValueWithName<string>>;
  }
}

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
    const pools = () => this.pools.values();

    // --- counters kept in PoolStats -----------------------------------------------------------
    const poolCounter = (
      name: string,
      help: string,
      extra: string[],
      rows: (s: PoolStats) => Iterable<[Record<string, string>, number]>,
    ) =>
      new client.Counter({
        name,
        help,
        labelNames: ["database", "user", ...extra],
        registers: [reg],
        collect() {
          this.reset();
          for (const s of pools())
            for (const [l, v] of rows(s)) this.inc({ database: s.database, user: s.user, ...l }, v);
        },
      });
    poolCounter(
      "pgsidecar_server_connections_opened_total",
      "Server connections opened (logged in and ready).",
      [],
      (s) => [[{}, s.serversOpened]],
    );
    poolCounter(
      "pgsidecar_server_connections_closed_total",
      "Server connections closed, by reason (idle_timeout, lifetime, terminated, crashed, network, check_failed, ...).",
      ["reason"],
      (s) => mapRows(s.serversClosed, "reason"),
    );
    poolCounter(
      "pgsidecar_upstream_connect_failures_total",
      "Failed attempts to open a server connection, by reason (dns, refused, timeout, tls, auth, server_error) and SQLSTATE (or 'network' below the protocol).",
      ["reason", "sqlstate"],
      (s) =>
        [...s.connectFailures].map(([key, n]) => {
          const [reason, sqlstate] = key.split(" ", 2);
          return [{ reason, sqlstate }, n];
        }),
    );
    poolCounter(
      "pgsidecar_queries_total",
      "Units of work completed: a simple Query, or an extended-protocol batch up to Sync.",
      [],
      (s) => [[{}, s.queries]],
    );
    poolCounter(
      "pgsidecar_transactions_total",
      "Transactions completed: units of work that ended outside a transaction block (ReadyForQuery 'I').",
      [],
      (s) => [[{}, s.transactions]],
    );
    poolCounter(
      "pgsidecar_replays_total",
      "Units whose server was lost before any reply reached the client, by outcome: succeeded (replayed and completed), gave_up (retry_max reached or replay failed), not_retryable (retry policy).",
      ["outcome"],
      (s) => Object.values(ReplayOutcome).map((o) => [{ outcome: o }, s.replays[o]]),
    );
    poolCounter(
      "pgsidecar_prepared_statement_lookups_total",
      "Named prepared statements used in transaction mode, by result: hit (the server or pool already had it), miss (prepared by the client's Parse), reprepare (Parse injected on a server that lacked it).",
      ["result"],
      (s) => StatementResult.map((r) => [{ result: r }, s.statements[r]]),
    );
    poolCounter(
      "pgsidecar_client_pins_total",
      "Times a client was pinned to its server by session state, by reason.",
      ["reason"],
      (s) => mapRows(s.pins, "reason"),
    );
    const unrouted = this.unroutedErrors;
    new client.Counter({
      name: "pgsidecar_client_errors_total",
      help: "Errors the proxy itself sent to clients, by SQLSTATE (database and user are empty before a client is routed to a pool).",
      labelNames: ["database", "user", "sqlstate"],
      registers: [reg],
      collect() {
        this.reset();
        for (const [sqlstate, v] of unrouted) this.inc({ database: "", user: "", sqlstate }, v);
        for (const s of pools())
          for (const [sqlstate, v] of s.clientErrors)
            this.inc({ database: s.database, user: s.user, sqlstate }, v);
      },
    });
    const self = this;
    new client.Counter({
      name: "pgsidecar_internal_errors_total",
      help: "Bugs caught in a socket handler, by side (client, server): the one connection was closed, the process lived on.",
      labelNames: ["side"],
      registers: [reg],
      collect() {
        this.reset();
        this.inc({ side: "client" }, self.internalErrors.client);
        this.inc({ side: "server" }, self.internalErrors.server);
      },
    });
    new client.Counter({
      name: "pgsidecar_client_bytes_total",
      help: "Bytes received from (in) and sent to (out) clients.",
      labelNames: ["direction"],
      registers: [reg],
      collect() {
        this.reset();
        this.inc({ direction: "in" }, self.bytesIn);
        this.inc({ direction: "out" }, self.bytesOut);
      },
    });

    // --- histograms kept in PoolStats ---------------------------------------------------------
    new PoolHistogram(
      "pgsidecar_checkout_wait_seconds",
      "Time a unit of work waited for a server connection (0 when one was idle).",
      reg,
      pools,
      (s) => s.checkoutWait,
    );
    new PoolHistogram(
      "pgsidecar_query_duration_seconds",
      "Duration of units of work, from the first frame to the last ReadyForQuery.",
      reg,
      pools,
      (s) => s.querySeconds,
    );
    new PoolHistogram(
      "pgsidecar_transaction_duration_seconds",
      "Duration of transactions, from the first frame of their first unit to the ReadyForQuery 'I' that ended them.",
      reg,
      pools,
      (s) => s.transactionSeconds,
    );
    new PoolHistogram(
      "pgsidecar_pool_wake_seconds",
      "Wakes of a pool that had gone to zero (pool_idle_timeout, server_idle_timeout, or its servers closed while unused): from the checkout that found no server open or opening to the server handed out, the upstream's cold start as the client saw it.",
      reg,
      pools,
      (s) => s.wakeSeconds,
    );

    // --- gauges read from live pool state -----------------------------------------------------
    // One snapshot per scrape, shared by every gauge (each collect() would otherwise walk all pools).
    let cached: { at: number; pools: PoolSnapshot[] } | null = null;
    const current = () => {
      const now = Date.now();
      if (cached === null || now - cached.at > 50) cached = { at: now, pools: snapshot() };
      return cached.pools;
    };
    const perPool = (
      name: string,
      help: string,
      extra: string[],
      pick: (p: PoolSnapshot) => Array<[Record<string, string>, number]>,
    ) =>
      new client.Gauge({
        name,
        help,
        labelNames: ["database", "user", ...extra],
        registers: [reg],
        collect() {
          this.reset();
          for (const p of current())
            for (const [l, v] of pick(p)) this.set({ database: p.database, user: p.user, ...l }, v);
        },
      });
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
    new client.Gauge({
      name: "pgsidecar_build_info",
      help: "Always 1; the version label says which pgsidecar is running.",
      labelNames: ["version"],
      registers: [reg],
    }).set({ version: packageVersion }, 1);
    // Node's process metrics keep their standard names (process_*, nodejs_*), as every exporter
    // does, so generic dashboards and alerts apply; the scrape's job/pod labels tell them apart.
    client.collectDefaultMetrics({ register: reg });
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

function mapRows(map: Map<string, number>, label: string): Array<[Record<string, string>, number]> {
  return [...map].map(([k, v]) => [{ [label]: k }, v]);
}

/** pgsidecar's version from package.json (src/ and dist/ both sit one level below it). */
export const packageVersion: string = (() => {
  try {
    return JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version;
  } catch {
    return "unknown";
  }
})();
