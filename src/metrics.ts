// Metrics: pgsidecar's own prom-client Registry and every metric handle. Counters are bumped
// inline on the paths that count them; gauges are read from live state at scrape time.

import client from "prom-client";

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
  pinned: Record<string, number>;
  preparedStatements: number;
}

const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

export class Metrics {
  readonly registry = new client.Registry();

  readonly clientsAccepted = new client.Counter({
    name: "pgsidecar_client_connections_accepted_total",
    help: "Client connections accepted by the listener.",
    registers: [this.registry],
  });
  readonly clientsRejected = new client.Counter({
    name: "pgsidecar_client_connections_rejected_total",
    help: "Client connections refused, by reason (max_client_conn, auth_failed, no_database, protocol_error, login_timeout, shutdown).",
    labelNames: ["reason"],
    registers: [this.registry],
  });
  readonly serversOpened = new client.Counter({
    name: "pgsidecar_server_connections_opened_total",
    help: "Server connections opened (logged in).",
    labelNames: ["database", "user"],
    registers: [this.registry],
  });
  readonly serversClosed = new client.Counter({
    name: "pgsidecar_server_connections_closed_total",
    help: "Server connections closed, by reason.",
    labelNames: ["database", "user", "reason"],
    registers: [this.registry],
  });
  readonly connectFailures = new client.Counter({
    name: "pgsidecar_upstream_connect_failures_total",
    help: "Failed attempts to open a server connection, by SQLSTATE (or 'network').",
    labelNames: ["database", "user", "sqlstate"],
    registers: [this.registry],
  });
  readonly checkoutWait = new client.Histogram({
    name: "pgsidecar_checkout_wait_seconds",
    help: "Time a unit of work waited for a server connection.",
    labelNames: ["database", "user"],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly unitSeconds = new client.Histogram({
    name: "pgsidecar_query_duration_seconds",
    help: "Duration of units of work (a query or a Sync-terminated batch), from first frame to ReadyForQuery.",
    labelNames: ["database", "user"],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly queries = new client.Counter({
    name: "pgsidecar_queries_total",
    help: "Units of work completed (a query or a Sync-terminated batch).",
    labelNames: ["database", "user"],
    registers: [this.registry],
  });
  readonly transactions = new client.Counter({
    name: "pgsidecar_transactions_total",
    help: "Units of work that ended outside a transaction block (ReadyForQuery 'I').",
    labelNames: ["database", "user"],
    registers: [this.registry],
  });
  readonly clientErrors = new client.Counter({
    name: "pgsidecar_client_errors_total",
    help: "Errors the proxy itself sent to clients, by SQLSTATE.",
    labelNames: ["sqlstate"],
    registers: [this.registry],
  });
  readonly replays = new client.Counter({
    name: "pgsidecar_replays_total",
    help: "Units whose server was lost, by outcome: succeeded (replayed), gave_up (retry_max reached), not_retryable.",
    labelNames: ["database", "user", "outcome"],
    registers: [this.registry],
  });
  readonly pins = new client.Counter({
    name: "pgsidecar_client_pins_total",
    help: "Times a client was pinned to its server by session state, by reason.",
    labelNames: ["reason"],
    registers: [this.registry],
  });
  readonly preparedStatements = new client.Counter({
    name: "pgsidecar_prepared_statements_total",
    help: "Named prepared statement uses in transaction mode: hit (already on the server), miss (prepared), reprepare (injected Parse).",
    labelNames: ["result"],
    registers: [this.registry],
  });
  readonly bytes = new client.Counter({
    name: "pgsidecar_client_bytes_total",
    help: "Bytes received from (in) and sent to (out) clients.",
    labelNames: ["direction"],
    registers: [this.registry],
  });

  private readonly bytesIn = this.bytes.labels("in");
  private readonly bytesOut = this.bytes.labels("out");

  constructor(snapshot: () => PoolSnapshot[], clientsTotal: () => number) {
    const reg = [this.registry];
    const perPool = (
      name: string,
      help: string,
      pick: (p: PoolSnapshot) => Array<[Record<string, string>, number]>,
      labels: string[],
    ) =>
      new client.Gauge({
        name,
        help,
        labelNames: labels,
        registers: reg,
        collect() {
          this.reset();
          for (const p of snapshot())
            for (const [l, v] of pick(p)) this.set({ database: p.database, user: p.user, ...l }, v);
        },
      });
    perPool(
      "pgsidecar_client_connections",
      "Client connections by state: active (holding a server), waiting (for a server), idle.",
      (p) => [
        [{ state: "active" }, p.clientsActive],
        [{ state: "waiting" }, p.clientsWaiting],
        [{ state: "idle" }, p.clientsIdle],
      ],
      ["database", "user", "state"],
    );
    perPool(
      "pgsidecar_server_connections",
      "Server connections by state: active, idle, connecting, checking (pre-use check or reset).",
      (p) => [
        [{ state: "active" }, p.active],
        [{ state: "idle" }, p.idle],
        [{ state: "connecting" }, p.connecting],
        [{ state: "checking" }, p.checking],
      ],
      ["database", "user", "state"],
    );
    perPool(
      "pgsidecar_pool_paused",
      "1 while the pool is paused (admin PAUSE).",
      (p) => [[{}, p.paused ? 1 : 0]],
      ["database", "user"],
    );
    perPool(
      "pgsidecar_pinned_servers",
      "Servers currently pinned to a client by session state, by reason.",
      (p) => Object.entries(p.pinned).map(([reason, n]) => [{ reason }, n]),
      ["database", "user", "reason"],
    );
    perPool(
      "pgsidecar_server_prepared_statements",
      "Prepared statements held on this pool's servers.",
      (p) => [[{}, p.preparedStatements]],
      ["database", "user"],
    );
    new client.Gauge({
      name: "pgsidecar_clients",
      help: "All client connections, including those still logging in and admin sessions.",
      registers: reg,
      collect() {
        this.set(clientsTotal());
      },
    });
    client.collectDefaultMetrics({ register: this.registry, prefix: "pgsidecar_" });
  }

  countBytes(direction: "in" | "out", n: number): void {
    (direction === "in" ? this.bytesIn : this.bytesOut).inc(n);
  }
}
