// A real Prometheus (Debian package, loopback, temp dir) scrapes the sidecar: a backend killed with
// pg_terminate_backend shows up in PromQL as a closed server with reason "terminated", and every
// expression of the Grafana dashboard evaluates against the live series.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findFreePort } from "../helpers/pg-cluster.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { until } from "../helpers/until.js";

const DASHBOARD = new URL("../../config/grafana/pgsidecar-dashboard.json", import.meta.url);

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

describe("Prometheus scraping the sidecar", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  let dir: string;
  let prometheus: ChildProcess | null = null;
  let promUrl = "";

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const promLog = () => {
    try {
      return readFileSync(join(dir, "prometheus.log"), "utf8").slice(-4000);
    } catch {
      return "";
    }
  };
  async function query(expr: string): Promise<Sample[]> {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await res.json()) as {
      status: string;
      error?: string;
      data: { resultType: string; result: Sample[] };
    };
    if (body.status !== "success") throw new Error(`${expr}: ${body.error}`);
    return body.data.result;
  }
  /** until() for Prometheus: an error (not up yet, no series yet) is "not yet"; its log on failure. */
  const promUntil = (what: string, fn: () => Promise<boolean>) =>
    until(
      () => `${what}\n${promLog()}`,
      () => fn().catch(() => false),
      30_000,
      250,
    );

  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.createUser("prom_app", "app-secret");
    proxy = await startProxy(cluster, {
      pool_size: 2,
      users: [{ name: "prom_app", password: "app-secret" }],
    });
    dir = mkdtempSync(join(tmpdir(), "pgsidecar-prom-"));
    const port = await findFreePort();
    promUrl = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, "prometheus.yml"),
      [
        "global:",
        "  scrape_interval: 1s",
        "  evaluation_interval: 1s",
        "scrape_configs:",
        "  - job_name: pgsidecar",
        "    static_configs:",
        `      - targets: ["127.0.0.1:${proxy.proxy.httpPort}"]`,
        "        labels: { pod: test-pod }",
        "",
      ].join("\n"),
    );
    const log = openSync(join(dir, "prometheus.log"), "w");
    prometheus = spawn(
      "prometheus",
      [
        `--config.file=${join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--storage.tsdb.retention.time=1h",
        "--log.level=warn",
      ],
      { stdio: ["ignore", log, log] },
    );
    await promUntil("Prometheus to be ready", async () => (await fetch(`${promUrl}/-/ready`)).ok);
  });

  afterAll(async () => {
    const p = prometheus;
    if (p?.pid !== undefined && p.exitCode === null) {
      const exited = new Promise((r) => p.once("exit", r));
      process.kill(p.pid, "SIGTERM");
      await Promise.race([exited, sleep(5000)]);
      if (p.exitCode === null && p.signalCode === null) process.kill(p.pid, "SIGKILL");
    }
    await proxy?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("shows a backend killed by pg_terminate_backend as a server closed with reason terminated", async () => {
    const c = new pg.Client(proxy.pgConfig({ user: "prom_app", password: "app-secret" }));
    await c.connect();
    for (let i = 0; i < 20; i++) await c.query("SELECT 1");
    await c.query("BEGIN");
    await c.query("SELECT 2");
    await c.query("COMMIT");

    // Wait until Prometheus holds a few samples of the idle server and of the reason at 0.
    await promUntil("a scrape with the terminated reason at 0", async () => {
      const r = await query(
        'count_over_time(pgsidecar_server_connections_closed_total{job="pgsidecar",reason="terminated",user="prom_app"}[1m])',
      );
      return r.length === 1 && Number(r[0].value[1]) >= 2;
    });
    const pids = await cluster.backendPids("prom_app");
    expect(pids.length).toBeGreaterThan(0);
    await cluster.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'prom_app' AND backend_type = 'client backend'",
    );

    let rows: Sample[] = [];
    await promUntil("the terminated reason to increase", async () => {
      rows = await query(
        'sum by (reason) (increase(pgsidecar_server_connections_closed_total{job="pgsidecar",database="postgres",user="prom_app"}[1m])) > 0',
      );
      return rows.length > 0;
    });
    expect(rows.map((r) => r.metric.reason)).toEqual(["terminated"]);
    // The client never noticed: the next query is served by a new server.
    expect((await c.query("SELECT 3 AS v")).rows[0].v).toBe(3);
    await c.end();
    expect(
      Number(
        (
          await query(
            'pgsidecar_server_connections_closed_total{job="pgsidecar",user="prom_app",reason="terminated"}',
          )
        )[0].value[1],
      ),
    ).toBe(pids.length);
  });

  it("evaluates every expression of the Grafana dashboard without an error, most with data", async () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as {
      panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
    };
    // Let the traffic of the previous test reach a scrape and two rate() windows.
    await sleep(2500);
    let empty = 0;
    let total = 0;
    for (const panel of dashboard.panels) {
      for (const t of panel.targets ?? []) {
        total++;
        const expr = t.expr
          .replaceAll("$__rate_interval", "1m")
          .replaceAll("$__interval", "1m")
          .replaceAll("$__range", "5m")
          .replaceAll(/\$\{?(pod|database|user)\}?/g, ".*");
        const result = await query(expr).catch((err: Error) => {
          throw new Error(`panel "${panel.title}": ${err.message}`);
        });
        if (result.length === 0) empty++;
      }
    }
    expect(total).toBeGreaterThan(15);
    // Some panels are empty on a healthy proxy (errors, replays, pins, waits above 0), not most.
    expect(empty).toBeLessThan(total / 2);
  });
});
