// The pgsidecar Grafana dashboard as code (@grafana/grafana-foundation-sdk, Grafana's own builder
// library). pgsidecar-dashboard.json beside this file is its output, kept identical by
// test/unit/dashboard.test.ts; regenerate it with
//   UPDATE_DASHBOARD=1 npx vitest run --project unit test/unit/dashboard.test.ts

import * as common from "@grafana/grafana-foundation-sdk/common";
import {
  DashboardBuilder,
  DatasourceVariableBuilder,
  QueryVariableBuilder,
  RowBuilder,
  ThresholdsConfigBuilder,
  ThresholdsMode,
  VariableRefresh,
  VariableSort,
} from "@grafana/grafana-foundation-sdk/dashboard";
import { DataqueryBuilder } from "@grafana/grafana-foundation-sdk/prometheus";
import * as stat from "@grafana/grafana-foundation-sdk/stat";
import * as timeseries from "@grafana/grafana-foundation-sdk/timeseries";

/** Every panel and query uses the data source the viewer picks. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a JS template
const DATASOURCE = { type: "prometheus", uid: "${datasource}" };

/** Label filters: the pool-level series carry database and user; all carry the scrape's pod. */
const POOL = 'pod=~"$pod", database=~"$database", user=~"$user"';
const POD = 'pod=~"$pod"';
/** Process metrics have standard names (process_*, nodejs_*): keep only pgsidecar's targets. */
const SIDECAR = `and on (job, instance) pgsidecar_build_info{${POD}}`;
const RATE = "[$__rate_interval]";

interface Query {
  expr: string;
  legend: string;
}

function q(expr: string, legend: string): Query {
  return { expr, legend };
}

function target(query: Query, refId: string) {
  return new DataqueryBuilder()
    .datasource(DATASOURCE)
    .expr(query.expr)
    .legendFormat(query.legend)
    .range()
    .refId(refId);
}

const REF_IDS = "ABCDEFGHIJ";

function graph(
  title: string,
  description: string,
  unit: string,
  queries: Query[],
  opts: { stacked?: boolean; bars?: boolean; width?: number } = {},
) {
  const p = new timeseries.PanelBuilder()
    .title(title)
    .description(description)
    .datasource(DATASOURCE)
    .unit(unit)
    .min(0)
    .height(8)
    .span(opts.width ?? 12)
    .fillOpacity(opts.stacked || opts.bars ? 60 : 10)
    .legend(
      new common.VizLegendOptionsBuilder()
        .showLegend(true)
        .displayMode(common.LegendDisplayMode.Table)
        .placement(common.LegendPlacement.Right)
        .calcs(["mean", "max", "lastNotNull"]),
    );
  if (opts.stacked || opts.bars)
    p.stacking(new common.StackingConfigBuilder().mode(common.StackingMode.Normal));
  if (opts.bars) p.drawStyle(common.GraphDrawStyle.Bars);
  queries.forEach((query, i) => {
    p.withTarget(target(query, REF_IDS[i]));
  });
  return p;
}

function single(title: string, description: string, unit: string, query: Query, red?: number) {
  const thresholds = new ThresholdsConfigBuilder()
    .mode(ThresholdsMode.Absolute)
    .steps([
      { value: null, color: "green" },
      ...(red !== undefined ? [{ value: red, color: "red" }] : []),
    ]);
  return new stat.PanelBuilder()
    .title(title)
    .description(description)
    .datasource(DATASOURCE)
    .unit(unit)
    .height(4)
    .span(4)
    .thresholds(thresholds)
    .graphMode(common.BigValueGraphMode.Area)
    .colorMode(common.BigValueColorMode.Value)
    .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(["lastNotNull"]))
    .withTarget(target(query, "A"));
}

function percentiles(metric: string, filter: string): Query[] {
  return [0.5, 0.95, 0.99].map((p) =>
    q(
      `histogram_quantile(${p}, sum by (le) (rate(${metric}_bucket{${filter}}${RATE})))`,
      `p${p * 100}`,
    ),
  );
}

function variable(name: string, label: string, query: string) {
  return new QueryVariableBuilder(name)
    .label(label)
    .datasource(DATASOURCE)
    .query(query)
    .definition(query)
    .refresh(VariableRefresh.OnTimeRangeChanged)
    .sort(VariableSort.AlphabeticalAsc)
    .multi(true)
    .includeAll(true)
    .allValue(".*")
    .current({ selected: true, text: "All", value: "$__all" });
}

export function buildDashboard() {
  const d = new DashboardBuilder("pgsidecar")
    .uid("pgsidecar")
    .description(
      "pgsidecar, the Postgres pooling sidecar: clients, servers, throughput, latency, disconnects, replays, errors, pins and the prepared statement cache.",
    )
    .tags(["pgsidecar", "postgres", "pooler"])
    .editable()
    .refresh("30s")
    .time({ from: "now-1h", to: "now" })
    .timezone("browser")
    .tooltip(1) // shared crosshair
    .withVariable(
      new DatasourceVariableBuilder("datasource").label("Data source").type("prometheus"),
    )
    .withVariable(variable("pod", "Pod", "label_values(pgsidecar_build_info, pod)"))
    .withVariable(
      variable("database", "Database", `label_values(pgsidecar_pool_size{${POD}}, database)`),
    )
    .withVariable(
      variable(
        "user",
        "User",
        `label_values(pgsidecar_pool_size{${POD}, database=~"$database"}, user)`,
      ),
    );

  d.withRow(new RowBuilder("Overview"))
    .withPanel(
      single(
        "Clients",
        "Client connections to the sidecar's pools (active, waiting, idle).",
        "short",
        q(`sum(pgsidecar_client_connections{${POOL}})`, "clients"),
      ),
    )
    .withPanel(
      single(
        "Server connections",
        "Connections to Postgres in every state.",
        "short",
        q(`sum(pgsidecar_server_connections{${POOL}})`, "servers"),
      ),
    )
    .withPanel(
      single(
        "QPS",
        "Units of work per second (a query, or an extended-protocol batch up to Sync).",
        "reqps",
        q(`sum(rate(pgsidecar_queries_total{${POOL}}${RATE}))`, "QPS"),
      ),
    )
    .withPanel(
      single(
        "TPS",
        "Transactions per second (units that ended outside a transaction block).",
        "reqps",
        q(`sum(rate(pgsidecar_transactions_total{${POOL}}${RATE}))`, "TPS"),
      ),
    )
    .withPanel(
      single(
        "Query p99",
        "99th percentile of unit-of-work duration.",
        "s",
        percentiles("pgsidecar_query_duration_seconds", POOL)[2],
      ),
    )
    .withPanel(
      single(
        "Paused or unreachable pools",
        "Pools paused by the admin console, plus pools whose upstream is backing off after failed connects.",
        "short",
        q(`sum(pgsidecar_pool_paused{${POOL}}) + sum(1 - pgsidecar_upstream_up{${POOL}})`, "pools"),
        1,
      ),
    );

  d.withRow(new RowBuilder("Clients and servers"))
    .withPanel(
      graph(
        "Client connections by state",
        "active: holding a server; waiting: for a server (pool exhausted or paused); idle: between units.",
        "short",
        [q(`sum by (state) (pgsidecar_client_connections{${POOL}})`, "{{state}}")],
        { stacked: true },
      ),
    )
    .withPanel(
      graph(
        "Server connections by state",
        "Connections to Postgres by state, against the pools' pool_size.",
        "short",
        [
          q(`sum by (state) (pgsidecar_server_connections{${POOL}})`, "{{state}}"),
          q(`sum(pgsidecar_pool_size{${POOL}})`, "pool_size"),
        ],
      ),
    )
    .withPanel(
      graph(
        "Client connections accepted and rejected",
        "New client connections per second; rejections by reason (max_client_conn, shutdown, ...).",
        "cps",
        [
          q(`sum(rate(pgsidecar_client_connections_accepted_total{${POD}}${RATE}))`, "accepted"),
          q(
            `sum by (reason) (rate(pgsidecar_client_connections_rejected_total{${POD}}${RATE}))`,
            "rejected: {{reason}}",
          ),
        ],
      ),
    )
    .withPanel(
      graph("Client traffic", "Bytes received from and sent to clients.", "Bps", [
        q(
          `sum by (direction) (rate(pgsidecar_client_bytes_total{${POD}}${RATE}))`,
          "{{direction}}",
        ),
      ]),
    );

  d.withRow(new RowBuilder("Throughput and latency"))
    .withPanel(
      graph("QPS and TPS", "Units of work and transactions per second, per pool.", "reqps", [
        q(
          `sum by (database, user) (rate(pgsidecar_queries_total{${POOL}}${RATE}))`,
          "queries {{database}}/{{user}}",
        ),
        q(
          `sum by (database, user) (rate(pgsidecar_transactions_total{${POOL}}${RATE}))`,
          "transactions {{database}}/{{user}}",
        ),
      ]),
    )
    .withPanel(
      graph(
        "Query duration",
        "Unit-of-work duration percentiles, from the first frame to ReadyForQuery (includes checkout wait).",
        "s",
        percentiles("pgsidecar_query_duration_seconds", POOL),
      ),
    )
    .withPanel(
      graph(
        "Transaction duration",
        "Transaction duration percentiles, from the first frame of BEGIN (or of the single statement) to ReadyForQuery 'I'.",
        "s",
        percentiles("pgsidecar_transaction_duration_seconds", POOL),
      ),
    )
    .withPanel(
      graph(
        "Checkout wait",
        "How long units waited for a server: percentiles, and the oldest client waiting now.",
        "s",
        [
          ...percentiles("pgsidecar_checkout_wait_seconds", POOL),
          q(`max(pgsidecar_pool_max_wait_seconds{${POOL}})`, "oldest waiting now"),
        ],
      ),
    );

  d.withRow(new RowBuilder("Disconnects, reconnects, replays and errors"))
    .withPanel(
      graph(
        "Server disconnects by reason",
        "Server connections closed: idle_timeout and lifetime are routine; terminated, crashed, network, check_failed, server_timeout mean Postgres or the network dropped them.",
        "short",
        [
          q(
            `sum by (reason) (increase(pgsidecar_server_connections_closed_total{${POOL}}${RATE})) > 0`,
            "{{reason}}",
          ),
        ],
        { bars: true },
      ),
    )
    .withPanel(
      graph(
        "Client disconnects by reason",
        "Client connections closed: client_exit (Terminate) and cancel_request are routine; client_gone (no Terminate), login_failed, login_timeout, idle_timeout, write_timeout, protocol_error, server_lost (a pinned server died), shutdown, internal_error.",
        "short",
        [
          q(
            `sum by (reason) (increase(pgsidecar_client_connections_closed_total{${POD}}${RATE})) > 0`,
            "{{reason}}",
          ),
        ],
        { bars: true },
      ),
    )
    .withPanel(
      graph(
        "Reconnects and connect failures",
        "Server connections opened (replacements included), failed connect attempts by reason (dns, refused, timeout, tls, auth, server_error), and upstreams backing off.",
        "short",
        [
          q(`sum(increase(pgsidecar_server_connections_opened_total{${POOL}}${RATE}))`, "opened"),
          q(
            `sum by (reason) (increase(pgsidecar_upstream_connect_failures_total{${POOL}}${RATE})) > 0`,
            "failed: {{reason}}",
          ),
          q(`sum(1 - pgsidecar_upstream_up{${POOL}})`, "upstreams backing off"),
        ],
        { width: 8 },
      ),
    )
    .withPanel(
      graph(
        "Replays by outcome",
        "Units whose server was lost before any reply reached the client: replayed (succeeded), gave_up (retry_max), not_retryable (retry policy).",
        "short",
        [
          q(
            `sum by (outcome) (increase(pgsidecar_replays_total{${POOL}}${RATE})) > 0`,
            "{{outcome}}",
          ),
        ],
        { bars: true, width: 8 },
      ),
    )
    .withPanel(
      graph(
        "Client errors by SQLSTATE",
        "Errors the sidecar itself sent to clients: 08006 server lost, 57P03 no server within query_wait_timeout, 25P02 aborted transaction, 28P01 bad password, ...",
        "short",
        [
          q(
            `sum by (sqlstate) (increase(pgsidecar_client_errors_total{${POOL}}${RATE})) > 0`,
            "{{sqlstate}}",
          ),
        ],
        { bars: true, width: 8 },
      ),
    );

  d.withRow(new RowBuilder("Pins and prepared statements"))
    .withPanel(
      graph(
        "Pinned clients by reason",
        "Clients tied to one server by session state (SET, LISTEN, temp table, advisory lock, WITH HOLD cursor, SQL PREPARE): each holds a server until it undoes it or leaves.",
        "short",
        [
          q(`sum by (reason) (pgsidecar_pinned_clients{${POOL}})`, "{{reason}}"),
          q(
            `sum by (reason) (rate(pgsidecar_client_pins_total{${POOL}}${RATE})) * 60`,
            "new pins/min: {{reason}}",
          ),
        ],
        { width: 8 },
      ),
    )
    .withPanel(
      graph(
        "Prepared statement cache",
        "Named statements in transaction mode: hit (already prepared), miss (prepared by the client's Parse), reprepare (Parse injected on a server that lacked it).",
        "ops",
        [
          q(
            `sum by (result) (rate(pgsidecar_prepared_statement_lookups_total{${POOL}}${RATE}))`,
            "{{result}}",
          ),
        ],
        { stacked: true, width: 8 },
      ),
    )
    .withPanel(
      graph(
        "Prepared statement hit ratio",
        "Share of named statement uses that needed no Parse on the server; and statements held on servers.",
        "percentunit",
        [
          q(
            `sum(rate(pgsidecar_prepared_statement_lookups_total{${POOL}, result="hit"}${RATE})) / sum(rate(pgsidecar_prepared_statement_lookups_total{${POOL}}${RATE}))`,
            "hit ratio",
          ),
        ],
        { width: 8 },
      ),
    );

  d.withRow(new RowBuilder("Process"))
    .withPanel(
      graph(
        "CPU",
        "CPU seconds per second used by the sidecar process.",
        "percentunit",
        [q(`rate(process_cpu_seconds_total${RATE}) ${SIDECAR}`, "{{pod}} {{instance}}")],
        { width: 8 },
      ),
    )
    .withPanel(
      graph(
        "Memory",
        "Resident memory and V8 heap in use.",
        "bytes",
        [
          q(`process_resident_memory_bytes ${SIDECAR}`, "rss {{pod}} {{instance}}"),
          q(`nodejs_heap_size_used_bytes ${SIDECAR}`, "heap {{pod}} {{instance}}"),
        ],
        { width: 8 },
      ),
    )
    .withPanel(
      graph(
        "Event loop lag",
        "p99 event loop delay: time the relay could not react to a socket.",
        "s",
        [q(`nodejs_eventloop_lag_p99_seconds ${SIDECAR}`, "{{pod}} {{instance}}")],
        { width: 8 },
      ),
    );

  return d.build();
}

/** The dashboard as written to pgsidecar-dashboard.json. */
export function dashboardJson(): string {
  return `${JSON.stringify(buildDashboard(), null, 2)}\n`;
}
