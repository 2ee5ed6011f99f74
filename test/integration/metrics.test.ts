// /metrics passes promtool's lint and counts what the proxy did; /healthz, /readyz and /status answer.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findFreePort } from "../helpers/pg-cluster.js";
import { run } from "../helpers/processes.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { until } from "../helpers/until.js";

/** `name{labels} value` lines of a Prometheus text exposition, keyed by name plus sorted labels. */
function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels = (m[3] ?? "")
      .split(/,(?=[a-zA-Z_]+=")/)
      .filter(Boolean)
      .sort()
      .join(",");
    out.set(labels ? `${m[1]}{${labels}}` : m[1], Number(m[4]));
  }
  return out;
}

describe("metrics endpoint", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  const base = () => `http://127.0.0.1:${proxy.proxy.httpPort}`;
  const scrape = async () => {
    const res = await fetch(`${base()}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    return res.text();
  };
  const value = (m: Map<string, number>, name: string, labels: Record<string, string> = {}) => {
    const key = Object.entries(labels)
      .map(([k, v]) => `${k}="${v}"`)
      .sort()
      .join(",");
    return m.get(key ? `${name}{${key}}` : name);
  };

  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.createUser("metrics_app", "app-secret");
    proxy = await startProxy(cluster, {
      pool_size: 3,
      users: [{ name: "metrics_app", password: "app-secret" }],
    });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it("exports every required family with pgsidecar_ names, and promtool check metrics accepts it", async () => {
    const c = new pg.Client(proxy.pgConfig({ user: "metrics_app", password: "app-secret" }));
    await c.connect();
    await c.query("SELECT 1");
    await c.query({ name: "one", text: "SELECT $1::int AS v", values: [1] });
    await c.query({ name: "one", text: "SELECT $1::int AS v", values: [2] });
    await c.query("BEGIN");
    await c.query("SELECT 2");
    await c.query("COMMIT");
    await c.query("CREATE TEMP TABLE pinned_here (v int)"); // pins (a session SET no longer does)
    await expect(c.query("SELEC oops")).rejects.toThrow(/syntax/);
    const text = await scrape();
    await c.end();

    const lint = await run("promtool", ["check", "metrics"], { input: text });
    expect(`${lint.stdout}${lint.stderr}`).toBe("");
    expect(lint.code).toBe(0);

    const families = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]);
    const names = new Map(families.map(([n, t]) => [n, t]));
    for (const [name, type] of [
      ["pgsidecar_client_connections", "gauge"],
      ["pgsidecar_client_connections_accepted_total", "counter"],
      ["pgsidecar_server_connections", "gauge"],
      ["pgsidecar_server_connections_opened_total", "counter"],
      ["pgsidecar_server_connections_closed_total", "counter"],
      ["pgsidecar_checkout_wait_seconds", "histogram"],
      ["pgsidecar_query_duration_seconds", "histogram"],
      ["pgsidecar_transaction_duration_seconds", "histogram"],
      ["pgsidecar_queries_total", "counter"],
      ["pgsidecar_transactions_total", "counter"],
      ["pgsidecar_client_errors_total", "counter"],
      ["pgsidecar_replays_total", "counter"],
      ["pgsidecar_upstream_connect_failures_total", "counter"],
      ["pgsidecar_prepared_statement_lookups_total", "counter"],
      ["pgsidecar_client_pins_total", "counter"],
      ["pgsidecar_pinned_clients", "gauge"],
      ["pgsidecar_client_bytes_total", "counter"],
      ["pgsidecar_pool_paused", "gauge"],
      ["process_cpu_seconds_total", "counter"],
      ["process_resident_memory_bytes", "gauge"],
      ["nodejs_eventloop_lag_seconds", "gauge"],
    ]) {
      expect(names.get(name), name).toBe(type);
    }
    for (const [name] of families) {
      expect(name).toMatch(/^(pgsidecar_|process_|nodejs_)/);
    }

    const m = parseExposition(text);
    const app = { database: "postgres", user: "metrics_app" };
    // SELECT 1, two named runs, BEGIN, SELECT 2, COMMIT, CREATE TEMP TABLE, the failed statement.
    expect(value(m, "pgsidecar_queries_total", app)).toBe(8);
    // Units ending outside a transaction: all but BEGIN and SELECT 2.
    expect(value(m, "pgsidecar_transactions_total", app)).toBe(6);
    expect(value(m, "pgsidecar_query_duration_seconds_count", app)).toBe(8);
    expect(value(m, "pgsidecar_transaction_duration_seconds_count", app)).toBe(6);
    expect(value(m, "pgsidecar_query_duration_seconds_bucket", { ...app, le: "+Inf" })).toBe(8);
    // One checkout per unit, except inside the transaction and once pinned.
    expect(value(m, "pgsidecar_checkout_wait_seconds_count", app)).toBeGreaterThanOrEqual(5);
    expect(value(m, "pgsidecar_server_connections_opened_total", app)).toBeGreaterThanOrEqual(1);
    // Every reason is there from the start, at 0, so increase() sees the first one.
    expect(
      value(m, "pgsidecar_server_connections_closed_total", { ...app, reason: "terminated" }),
    ).toBe(0);
    expect(value(m, "pgsidecar_client_pins_total", { ...app, reason: "temp_table" })).toBe(1);
    expect(value(m, "pgsidecar_pinned_clients", { ...app, reason: "temp_table" })).toBe(1);
    expect(value(m, "pgsidecar_client_connections", { ...app, state: "active" })).toBe(1);
    expect(
      value(m, "pgsidecar_prepared_statement_lookups_total", { ...app, result: "miss" }),
    ).toBeGreaterThanOrEqual(1);
    expect(value(m, "pgsidecar_client_bytes_total", { direction: "in" })).toBeGreaterThan(100);
    expect(value(m, "pgsidecar_client_bytes_total", { direction: "out" })).toBeGreaterThan(100);
    expect(value(m, "pgsidecar_pool_paused", app)).toBe(0);
    expect(value(m, "pgsidecar_pool_size", app)).toBe(3);
    expect(value(m, "pgsidecar_upstream_up", app)).toBe(1);

    // The client left: its server went back idle, no client is counted any more.
    await new Promise((r) => setTimeout(r, 100));
    const after = parseExposition(await scrape());
    expect(value(after, "pgsidecar_client_connections", { ...app, state: "active" })).toBe(0);
    expect(
      value(after, "pgsidecar_pinned_clients", { ...app, reason: "temp_table" }),
    ).toBeUndefined();
  });

  it("never puts SQL text or client addresses in a label value", async () => {
    const c = new pg.Client(proxy.pgConfig({ user: "metrics_app", password: "app-secret" }));
    await c.connect();
    await c.query("SELECT 'distinctive_marker_text' AS v");
    const text = await scrape();
    await c.end();
    expect(text).not.toContain("distinctive_marker_text");
    expect(text).not.toMatch(/127\.0\.0\.1/);
    expect(text).not.toContain("app-secret");
  });

  it("counts errors the proxy sends, by SQLSTATE, with no pool before a client is routed", async () => {
    const bad = new pg.Client(proxy.pgConfig({ user: "metrics_app", password: "wrong" }));
    await expect(bad.connect()).rejects.toThrow(/password/);
    const m = parseExposition(await scrape());
    expect(
      value(m, "pgsidecar_client_errors_total", { database: "", user: "", sqlstate: "28P01" }),
    ).toBeGreaterThanOrEqual(1);
  });

  it("/readyz with readyz_checks_upstream: 503 while the upstream refuses connections, 200 when it is up", async () => {
    const closed = await findFreePort();
    const down = await startProxy(
      cluster,
      { readyz_checks_upstream: true, min_pool_size: 1 },
      `postgres://postgres:x@127.0.0.1:${closed}/postgres`,
    );
    const up = await startProxy(cluster, { readyz_checks_upstream: true, min_pool_size: 1 });
    try {
      const readyz = (p: TestProxy) =>
        fetch(`http://127.0.0.1:${p.proxy.httpPort}/readyz`).then((r) => r.status);
      let status = 0;
      const refusing = async () => {
        status = await readyz(down);
        return status === 503;
      };
      await until("/readyz 503", refusing, 5000, 100);
      expect(status).toBe(503);
      expect(await readyz(up)).toBe(200);
      const m = parseExposition(
        await (await fetch(`http://127.0.0.1:${down.proxy.httpPort}/metrics`)).text(),
      );
      expect(value(m, "pgsidecar_upstream_up", { database: "postgres", user: "postgres" })).toBe(0);
      expect(
        value(m, "pgsidecar_upstream_connect_failures_total", {
          database: "postgres",
          user: "postgres",
          reason: "refused",
          sqlstate: "08006",
        }),
      ).toBeGreaterThanOrEqual(1);
    } finally {
      await down.stop();
      await up.stop();
    }
  });

  it("answers /healthz, /readyz and /status; /readyz turns 503 while draining", async () => {
    expect((await fetch(`${base()}/healthz`)).status).toBe(200);
    expect((await fetch(`${base()}/readyz`)).status).toBe(200);
    const status = (await (await fetch(`${base()}/status`)).json()) as {
      pools: Array<{ database: string; user: string }>;
      clients: unknown[];
      servers: Array<{ pid: number }>;
    };
    expect(status.pools.map((p) => `${p.database}/${p.user}`)).toContain("postgres/metrics_app");
    expect(Array.isArray(status.clients)).toBe(true);
    expect(status.servers.length).toBeGreaterThan(0);
    expect((await fetch(`${base()}/nope`)).status).toBe(404);

    proxy.proxy.draining = true;
    try {
      expect((await fetch(`${base()}/readyz`)).status).toBe(503);
      expect((await fetch(`${base()}/healthz`)).status).toBe(200);
    } finally {
      proxy.proxy.draining = false;
    }
  });
});
