// The Grafana dashboard: its JSON is the builder's output, and every PromQL expression in it parses
// and names only metrics (and labels) that the sidecar's live registry exports.
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parser } from "@prometheus-io/lezer-promql";
import { describe, expect, it } from "vitest";
import { dashboardJson } from "../../config/grafana/dashboard.js";
import { connectFailureKey, Metrics, type PoolSnapshot } from "../../src/metrics.js";

const FILE = new URL("../../config/grafana/pgsidecar-dashboard.json", import.meta.url);

interface Target {
  expr: string;
  datasource?: { type: string; uid: string };
}
interface PanelJson {
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  panels?: PanelJson[];
}
interface DashboardJson {
  panels: PanelJson[];
  templating: {
    list: Array<{ name: string; type: string; query: unknown; datasource?: { uid: string } }>;
  };
}

// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a JS template
const DATASOURCE_UID = "${datasource}";
/** Read when a test runs, after the first test may have regenerated the file. */
function load() {
  const dashboard = JSON.parse(readFileSync(FILE, "utf8")) as DashboardJson;
  const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
  const targets = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, ...t })));
  return { dashboard, panels, targets };
}

/** Series names the registry exports, each with the label names it may carry. */
async function exportedSeries(): Promise<Map<string, Set<string>>> {
  const pool: PoolSnapshot = {
    database: "db",
    user: "u",
    active: 1,
    idle: 1,
    connecting: 0,
    checking: 0,
    clientsActive: 1,
    clientsWaiting: 0,
    clientsIdle: 0,
    paused: false,
    pinned: { set: 1 },
    preparedStatements: 0,
    poolSize: 2,
    maxWaitSeconds: 0,
    upstreamUp: true,
  };
  const metrics = new Metrics(
    () => [pool],
    () => 1,
  );
  const stats = metrics.pool({ database: "db", user: "u" });
  stats.clientErrors.set("08006", 1);
  stats.connectFailures.set(connectFailureKey("refused", "network"), 1);
  metrics.clientsRejected.inc({ reason: "max_client_conn" });
  // Scrape-time targets labels: added by Prometheus (static config or Kubernetes discovery).
  const scrape = ["job", "instance", "pod"];
  const out = new Map<string, Set<string>>();
  const add = (name: string, labels: Iterable<string>) => {
    const set = out.get(name) ?? new Set(scrape);
    for (const l of labels) set.add(l);
    out.set(name, set);
  };
  for (const family of await metrics.registry.getMetricsAsJSON()) {
    const f = family as unknown as {
      name: string;
      type: string;
      values: Array<{ labels: Record<string, unknown>; metricName?: string }>;
    };
    add(f.name, []);
    for (const v of f.values) add(v.metricName ?? f.name, Object.keys(v.labels));
    if (f.type === "histogram")
      for (const suffix of ["_bucket", "_sum", "_count"]) add(`${f.name}${suffix}`, []);
  }
  return out;
}

/** Grafana's template variables, replaced by what they expand to at query time. */
function substitute(expr: string): string {
  return expr
    .replaceAll("$__rate_interval", "5m")
    .replaceAll("$__interval", "1m")
    .replaceAll("$__range", "1h")
    .replaceAll(/\$\{?(pod|database|user)\}?/g, ".*");
}

interface Selector {
  metric: string;
  labels: string[];
}

/** Parses with Prometheus' own PromQL grammar; returns the vector selectors, throws on a syntax error. */
function selectors(expr: string): Selector[] {
  const tree = parser.parse(expr);
  const out: Selector[] = [];
  const c = tree.cursor();
  do {
    if (c.type.isError) throw new Error(`PromQL syntax error at ${c.from} in: ${expr}`);
    if (c.type.name === "VectorSelector") {
      const node = c.node;
      const id = node.getChild("Identifier");
      const labels: string[] = [];
      let metric = id ? expr.slice(id.from, id.to) : "";
      const matchers = node.getChild("LabelMatchers");
      for (let m = matchers?.firstChild ?? null; m; m = m.nextSibling) {
        const name = m.getChild("LabelName") ?? m.getChild("QuotedLabelName");
        if (!name) continue;
        const label = expr.slice(name.from, name.to).replaceAll('"', "");
        const value = m.getChild("StringLiteral");
        if (label === "__name__" && value) metric = expr.slice(value.from + 1, value.to - 1);
        else labels.push(label);
      }
      out.push({ metric, labels });
    }
  } while (c.next());
  return out;
}

describe("Grafana dashboard", () => {
  it("is the builder's output (regenerate: UPDATE_DASHBOARD=1 on this test)", () => {
    if (process.env.UPDATE_DASHBOARD === "1") {
      writeFileSync(FILE, dashboardJson());
      // Formatted as the repository formats JSON, so `biome check` stays clean.
      const biome = spawnSync("npx", ["biome", "format", "--write", fileURLToPath(FILE)]);
      expect(biome.status, String(biome.stderr)).toBe(0);
    }
    expect(JSON.parse(readFileSync(FILE, "utf8"))).toEqual(JSON.parse(dashboardJson()));
  });

  it("refers only to metrics and labels the sidecar exports", async () => {
    const { dashboard, targets } = load();
    const series = await exportedSeries();
    expect(targets.length).toBeGreaterThan(15);
    const used = new Set<string>();
    for (const t of targets) {
      const found = selectors(substitute(t.expr));
      expect(found.length, `${t.panel}: ${t.expr}`).toBeGreaterThan(0);
      for (const s of found) {
        used.add(s.metric);
        const labels = series.get(s.metric);
        expect(labels, `${t.panel}: unknown metric ${s.metric}`).toBeDefined();
        for (const l of s.labels)
          expect([...(labels ?? [])], `${t.panel}: ${s.metric} has no label ${l}`).toContain(l);
      }
    }
    // label_values(metric{...}, label) in the variables.
    for (const v of dashboard.templating.list.filter((x) => x.type === "query")) {
      const m = /^label_values\((.*),\s*(\w+)\)$/.exec(String(v.query));
      expect(m, `variable ${v.name}`).not.toBeNull();
      const [, selector, label] = m as RegExpExecArray;
      for (const s of selectors(substitute(selector))) {
        expect(series.get(s.metric), `variable ${v.name}: ${s.metric}`).toBeDefined();
        expect([...(series.get(s.metric) ?? [])]).toContain(label);
      }
    }
    // The families the issue asks a panel for.
    for (const name of [
      "pgsidecar_client_connections",
      "pgsidecar_server_connections",
      "pgsidecar_queries_total",
      "pgsidecar_transactions_total",
      "pgsidecar_query_duration_seconds_bucket",
      "pgsidecar_transaction_duration_seconds_bucket",
      "pgsidecar_checkout_wait_seconds_bucket",
      "pgsidecar_server_connections_closed_total",
      "pgsidecar_server_connections_opened_total",
      "pgsidecar_upstream_connect_failures_total",
      "pgsidecar_replays_total",
      "pgsidecar_client_errors_total",
      "pgsidecar_pinned_clients",
      "pgsidecar_client_pins_total",
      "pgsidecar_prepared_statement_lookups_total",
    ])
      expect(used, name).toContain(name);
  });

  it("takes its data source from a variable and filters by pod, database and user", () => {
    const { dashboard, panels } = load();
    const vars = dashboard.templating.list;
    expect(vars.find((v) => v.name === "datasource")).toMatchObject({
      type: "datasource",
      query: "prometheus",
    });
    for (const name of ["pod", "database", "user"])
      expect(vars.find((v) => v.name === name)?.datasource?.uid).toBe(DATASOURCE_UID);
    for (const p of panels.filter((p) => p.type !== "row")) {
      expect(p.datasource?.uid, p.title).toBe(DATASOURCE_UID);
      for (const t of p.targets ?? []) {
        expect(t.datasource?.uid, p.title).toBe(DATASOURCE_UID);
        expect(t.expr, p.title).toMatch(/pod=~"\$pod"/);
        if (
          /pgsidecar_(client_connections|server_connections|queries_total|transactions_total)\{/.test(
            t.expr,
          )
        )
          expect(t.expr, p.title).toMatch(/database=~"\$database", user=~"\$user"/);
      }
    }
  });
});
