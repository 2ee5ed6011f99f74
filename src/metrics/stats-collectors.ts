// The counters and histograms read from PoolStats (and the process-wide totals on Metrics) at
// scrape time: each collect() resets its series and fills them from the plain numbers.

import client from "prom-client";
import { ReplayOutcome } from "../reasons.js";
import { perPoolMetric, type Row } from "./per-pool.js";
import { PoolHistogram } from "./pool-histogram.js";
import { type PoolStats, StatementResult, splitConnectFailureKey } from "./pool-stats.js";

/** The totals a scrape reads besides PoolStats; read live (Metrics itself). */
export interface ProcessTotals {
  /** Client errors of sessions that have no pool, by SQLSTATE. */
  readonly unroutedErrors: ReadonlyMap<string, number>;
  readonly internalErrors: { readonly client: number; readonly server: number };
  readonly bytesIn: number;
  readonly bytesOut: number;
}

export function registerStatsCollectors(
  reg: client.Registry,
  pools: () => Iterable<PoolStats>,
  totals: ProcessTotals,
): void {
  const poolCounter = (
    name: string,
    help: string,
    extra: string[],
    rows: (s: PoolStats) => Iterable<Row>,
  ) => perPoolMetric("counter", reg, pools, name, help, extra, rows);
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
    (s) => [...s.connectFailures].map(([key, n]) => [splitConnectFailureKey(key), n]),
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
  new client.Counter({
    name: "pgsidecar_client_errors_total",
    help: "Errors the proxy itself sent to clients, by SQLSTATE (database and user are empty before a client is routed to a pool).",
    labelNames: ["database", "user", "sqlstate"],
    registers: [reg],
    collect() {
      this.reset();
      for (const [sqlstate, v] of totals.unroutedErrors)
        this.inc({ database: "", user: "", sqlstate }, v);
      for (const s of pools())
        for (const [sqlstate, v] of s.clientErrors)
          this.inc({ database: s.database, user: s.user, sqlstate }, v);
    },
  });
  new client.Counter({
    name: "pgsidecar_internal_errors_total",
    help: "Bugs caught in a socket handler, by side (client, server): the one connection was closed, the process lived on.",
    labelNames: ["side"],
    registers: [reg],
    collect() {
      this.reset();
      this.inc({ side: "client" }, totals.internalErrors.client);
      this.inc({ side: "server" }, totals.internalErrors.server);
    },
  });
  new client.Counter({
    name: "pgsidecar_client_bytes_total",
    help: "Bytes received from (in) and sent to (out) clients.",
    labelNames: ["direction"],
    registers: [reg],
    collect() {
      this.reset();
      this.inc({ direction: "in" }, totals.bytesIn);
      this.inc({ direction: "out" }, totals.bytesOut);
    },
  });

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
}

function mapRows(map: Map<string, number>, label: string): Row[] {
  return [...map].map(([k, v]) => [{ [label]: k }, v]);
}
