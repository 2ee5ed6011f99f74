// A server that goes silent mid-unit (black hole while busy): response_timeout bounds the wait;
// the unit is replayed when it may be, or fails with a non-fatal 08006, and the client lives on.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APP_DB, APP_PASSWORD, APP_USER, prepareCluster } from "../helpers/chaos.js";
import type { PgCluster } from "../helpers/pg-cluster.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type Relay, startRelay } from "../helpers/relay.js";

describe("busy black hole with response_timeout", () => {
  let cluster: PgCluster;
  let relay: Relay;
  let proxy: TestProxy;
  beforeAll(async () => {
    cluster = await prepareCluster();
    relay = await startRelay({ host: cluster.host, port: cluster.port });
    proxy = await startProxy(
      cluster,
      {
        pool_size: 2,
        response_timeout: "2s",
        server_connect_timeout: "1s",
        query_wait_timeout: "20s",
        server_login_retry: "100ms",
      },
      `postgres://${APP_USER}:${APP_PASSWORD}@127.0.0.1:${relay.port}/${APP_DB}`,
    );
  });
  afterAll(async () => {
    await proxy?.stop();
    await relay?.close();
    await cluster?.destroy();
  });

  it("a read-only unit whose server went silent is replayed once the upstream heals", async () => {
    const c = new pg.Client(
      proxy.pgConfig({ user: APP_USER, password: APP_PASSWORD, database: APP_DB }),
    );
    c.on("error", () => {
      throw new Error("client connection broke");
    });
    await c.connect();
    await c.query("SELECT 1");
    relay.blackhole();
    const started = Date.now();
    const pending = c.query("SELECT 42 AS v");
    setTimeout(() => relay.restore(), 3000);
    expect((await pending).rows[0].v).toBe(42);
    // Detected by response_timeout (2 s, checked every second), then replayed after the heal.
    expect(Date.now() - started).toBeLessThan(10_000);
    const m = proxy.proxy.metrics.registry.getSingleMetric(
      "pgsidecar_server_connections_closed_total",
    );
    const closed = m
      ? (await m.get()).values.filter((v) => v.labels.reason === "response_timeout")
      : [];
    expect(closed.reduce((n, v) => n + v.value, 0)).toBeGreaterThan(0);
    expect((await c.query("SELECT 1 AS v")).rows[0].v).toBe(1);
    await c.end();
  });
});
