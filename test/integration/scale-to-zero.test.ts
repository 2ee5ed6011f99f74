// Scale-to-zero: a pool no client used for pool_idle_timeout closes its servers, min_pool_size
// included, and then sends nothing upstream (counted in pg_stat_activity and in the server log
// with log_statement = all); the next query wakes it, and a wake that meets refused connections
// or 57P03 waits instead of failing. The issue asks for a
// 60 s quiet window; 10 s here, with checks every 200 ms and keepalives every second configured,
// so that anything periodic would show many times over.

import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sidecar } from "../../src/proxy.js";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { startProxy } from "../helpers/proxy.js";
import { startRelay } from "../helpers/relay.js";
import { until } from "../helpers/until.js";

const PASSWORD = "sleepy-secret";
const QUIET_WINDOW_MS = 10_000;
/** Would send a check query every 200 ms and probe every second, were the pool not asleep. */
const BUSY_BACKGROUND = {
  server_check_delay: "200ms",
  server_check_query: "SELECT 'pgsidecar check'",
  server_keepalive_idle: "1s",
  server_keepalive_interval: "1s",
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One series of the sidecar's /metrics, by name and exact labels (0 when absent). */
async function metric(proxy: Sidecar, series: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${proxy.httpPort}/metrics`)).text();
  for (const line of text.split("\n")) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return 0;
}

/** The sum of a family's series for `user`'s pool, whatever their other labels (SQLSTATE...). */
async function total(proxy: Sidecar, family: string, user: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${proxy.httpPort}/metrics`)).text();
  let n = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${family}{`) && line.includes(`user="${user}"`))
      n += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return n;
}

/** Server log lines of `user`'s sessions: connections authorized and statements run. */
function activity(log: string, user: string): { connections: string[]; statements: string[] } {
  const lines = log.split("\n");
  return {
    connections: lines.filter((l) => l.includes(`connection authorized: user=${user} `)),
    statements: lines.filter((l) => l.includes(`user=${user} `) && l.includes("LOG:  statement:")),
  };
}

describe("scale to zero", () => {
  let cluster: PgCluster;

  beforeAll(async () => {
    cluster = await startCluster({
      conf: { log_statement: "all", log_line_prefix: "%m [%p] user=%u db=%d " },
    });
    for (const user of ["sleepy", "waker", "restarter"]) await cluster.createUser(user, PASSWORD);
  });
  afterAll(async () => {
    await cluster?.destroy();
  });

  const upstreamAs = (user: string, port = cluster.port) =>
    `postgres://${user}:${PASSWORD}@127.0.0.1:${port}/postgres`;

  it("closes min_pool_size servers after pool_idle_timeout, then sends nothing upstream for 10 s; the next query wakes it", async () => {
    const proxy = await startProxy(
      cluster,
      { min_pool_size: 2, pool_idle_timeout: "1s", ...BUSY_BACKGROUND },
      upstreamAs("sleepy"),
    );
    // The app's own pool keeps its connection open all along (unlike PgBouncer, whose
    // min_pool_size waits only for connected clients, this counts use, not presence).
    const client = new pg.Client(proxy.pgConfig({ user: "sleepy", password: PASSWORD }));
    try {
      await client.connect();
      await client.query("SELECT 1");
      await until("min_pool_size servers while in use", async () => {
        return (await cluster.backendPids("sleepy")).length === 2;
      });

      await until("the pool to close its servers", async () => {
        return (await cluster.backendPids("sleepy")).length === 0;
      });
      const pool = proxy.proxy.pools.get("postgres/sleepy");
      expect(pool?.asleep).toBe(true);
      expect(pool?.size).toBe(0);
      const before = activity(cluster.log(), "sleepy");
      // The counting sees the sidecar's sessions: its logins, the client's query and the checks.
      expect(before.connections.length).toBeGreaterThanOrEqual(2);
      expect(before.statements.some((l) => l.includes("SELECT 1"))).toBe(true);
      expect(before.statements.some((l) => l.includes("pgsidecar check"))).toBe(true);
      const logMark = cluster.log().length;
      const opened = await metric(
        proxy.proxy,
        'pgsidecar_server_connections_opened_total{database="postgres",user="sleepy"}',
      );

      const started = Date.now();
      let samples = 0;
      let mostBackends = 0;
      while (Date.now() - started < QUIET_WINDOW_MS) {
        mostBackends = Math.max(mostBackends, (await cluster.backendPids("sleepy")).length);
        samples++;
        await sleep(250);
      }
      const during = activity(cluster.log().slice(logMark), "sleepy");
      console.log(
        `quiet window ${Date.now() - started} ms: ${samples} pg_stat_activity samples, most sleepy backends ${mostBackends}; log: ${during.connections.length} connections, ${during.statements.length} statements (before it: ${before.connections.length} connections, ${before.statements.length} statements)`,
      );
      expect(mostBackends).toBe(0);
      expect(during.connections).toEqual([]);
      expect(during.statements).toEqual([]);
      expect(
        await metric(
          proxy.proxy,
          'pgsidecar_server_connections_opened_total{database="postgres",user="sleepy"}',
        ),
      ).toBe(opened);

      const t0 = Date.now();
      const r = await client.query("SELECT 42 AS v");
      console.log(`first query after the quiet window: ${Date.now() - t0} ms`);
      expect(r.rows).toEqual([{ v: 42 }]);
      expect(pool?.asleep).toBe(false);
      const labels = '{database="postgres",user="sleepy"}';
      expect(await metric(proxy.proxy, `pgsidecar_pool_wake_seconds_count${labels}`)).toBe(1);
      expect(
        await metric(
          proxy.proxy,
          'pgsidecar_server_connections_closed_total{database="postgres",user="sleepy",reason="idle_timeout"}',
        ),
      ).toBeGreaterThanOrEqual(2);
      expect(await total(proxy.proxy, "pgsidecar_client_errors_total", "sleepy")).toBe(0);
      // Awake again, min_pool_size applies again.
      await until("min_pool_size servers again", async () => {
        return (await cluster.backendPids("sleepy")).length === 2;
      });
    } finally {
      await client.end().catch(() => {});
      await proxy.stop();
    }
  });

  it("absorbs a wake whose connections are refused for 2 s: the query waits and succeeds, and the wake is timed", async () => {
    const relay = await startRelay({ host: cluster.host, port: cluster.port });
    const proxy = await startProxy(
      cluster,
      { min_pool_size: 1, pool_idle_timeout: "1s", query_wait_timeout: "20s" },
      upstreamAs("waker", relay.port),
    );
    const client = new pg.Client(proxy.pgConfig({ user: "waker", password: PASSWORD }));
    try {
      await client.connect();
      await client.query("SELECT 1");
      const pool = proxy.proxy.pools.get("postgres/waker");
      await until("the pool at zero", () => pool?.asleep === true && relay.connections() === 0);

      relay.refuse(true);
      const t0 = Date.now();
      const restored = sleep(2000).then(() => relay.restore());
      const r = await client.query("SELECT 'awake' AS v");
      const tookMs = Date.now() - t0;
      await restored;
      expect(r.rows).toEqual([{ v: "awake" }]);

      const labels = '{database="postgres",user="waker"}';
      const count = await metric(proxy.proxy, `pgsidecar_pool_wake_seconds_count${labels}`);
      const sum = await metric(proxy.proxy, `pgsidecar_pool_wake_seconds_sum${labels}`);
      const refused = await total(
        proxy.proxy,
        "pgsidecar_upstream_connect_failures_total",
        "waker",
      );
      console.log(
        `wake through 2 s of refused connections: query ${tookMs} ms, wake histogram count ${count} sum ${sum.toFixed(3)} s, refused attempts ${refused}`,
      );
      expect(tookMs).toBeGreaterThanOrEqual(2000);
      expect(count).toBe(1);
      expect(sum).toBeGreaterThanOrEqual(2);
      expect(
        await metric(
          proxy.proxy,
          `pgsidecar_pool_wake_seconds_bucket{database="postgres",user="waker",le="1"}`,
        ),
      ).toBe(0);
      expect(refused).toBeGreaterThanOrEqual(1);
      expect(await total(proxy.proxy, "pgsidecar_client_errors_total", "waker")).toBe(0);
    } finally {
      await client.end().catch(() => {});
      await proxy.stop();
      await relay.close();
    }
  });

  it("absorbs a wake that meets 57P03 for 2 s (a smart shutdown waiting for a session), then a restart", async () => {
    const proxy = await startProxy(
      cluster,
      { min_pool_size: 1, pool_idle_timeout: "1s", query_wait_timeout: "30s" },
      upstreamAs("restarter"),
    );
    const client = new pg.Client(proxy.pgConfig({ user: "restarter", password: PASSWORD }));
    const held = new pg.Client(cluster.url());
    held.on("error", () => {});
    try {
      await client.connect();
      await client.query("SELECT 1");
      const pool = proxy.proxy.pools.get("postgres/restarter");
      await until("the pool at zero", () => pool?.asleep === true);

      // A smart shutdown waits for `held` to leave; until then every new login gets 57P03
      // ("the database system is shutting down").
      await held.connect();
      const stopped = cluster.stop("smart");
      await until("logins refused with 57P03", async () => {
        const probe = new pg.Client(cluster.url());
        probe.on("error", () => {});
        try {
          await probe.connect();
          await probe.end();
          return false;
        } catch (err) {
          return (err as { code?: string }).code === "57P03";
        }
      });
      const t0 = Date.now();
      const restarted = sleep(2000).then(async () => {
        await held.end();
        await stopped;
        await cluster.start();
      });
      const r = await client.query("SELECT 'restarted' AS v");
      const tookMs = Date.now() - t0;
      await restarted;
      expect(r.rows).toEqual([{ v: "restarted" }]);

      const labels = '{database="postgres",user="restarter"}';
      const count = await metric(proxy.proxy, `pgsidecar_pool_wake_seconds_count${labels}`);
      const sum = await metric(proxy.proxy, `pgsidecar_pool_wake_seconds_sum${labels}`);
      const failures = await total(
        proxy.proxy,
        "pgsidecar_upstream_connect_failures_total",
        "restarter",
      );
      const cannotConnectNow = await metric(
        proxy.proxy,
        'pgsidecar_upstream_connect_failures_total{database="postgres",user="restarter",reason="server_error",sqlstate="57P03"}',
      );
      console.log(
        `wake through 57P03 then a restart: query ${tookMs} ms, wake histogram count ${count} sum ${sum.toFixed(3)} s, failed logins ${failures} (57P03: ${cannotConnectNow})`,
      );
      expect(tookMs).toBeGreaterThanOrEqual(2000);
      expect(count).toBe(1);
      expect(sum).toBeGreaterThanOrEqual(2);
      expect(cannotConnectNow).toBeGreaterThanOrEqual(1);
      expect(await total(proxy.proxy, "pgsidecar_client_errors_total", "restarter")).toBe(0);
    } finally {
      await client.end().catch(() => {});
      await proxy.stop();
    }
  });
});
