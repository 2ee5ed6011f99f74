// A black-holed server (no bytes, no FIN, no RST): idle ones are found by the check query within
// server_check_timeout and replaced; clients never see an error.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APP_DB, APP_PASSWORD, APP_USER, prepareCluster } from "../helpers/chaos.js";
import type { PgCluster } from "../helpers/pg-cluster.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type Relay, startRelay } from "../helpers/relay.js";
import { until } from "../helpers/until.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("black-holed upstream", () => {
  let cluster: PgCluster;
  let relay: Relay;
  let proxy: TestProxy;
  beforeAll(async () => {
    cluster = await prepareCluster();
    relay = await startRelay({ host: cluster.host, port: cluster.port });
    proxy = await startProxy(
      cluster,
      {
        pool_size: 4,
        min_pool_size: 2,
        server_check_delay: "1s",
        server_check_timeout: "1s",
        server_connect_timeout: "1s",
        server_login_retry: "100ms",
        server_login_retry_max: "500ms",
        query_wait_timeout: "20s",
      },
      `postgres://${APP_USER}:${APP_PASSWORD}@127.0.0.1:${relay.port}/${APP_DB}`,
    );
  });
  afterAll(async () => {
    await proxy?.stop();
    await relay?.close();
    await cluster?.destroy();
  });

  const checkFailed = async () => {
    const metric = proxy.proxy.metrics.registry.getSingleMetric(
      "pgsidecar_server_connections_closed_total",
    );
    const values = metric ? (await metric.get()).values : [];
    return values
      .filter((v) => v.labels.reason === "check_failed")
      .reduce((n, v) => n + v.value, 0);
  };

  it("detects idle black-holed servers within server_check_timeout + 1 s of the check, and clients see no error", async () => {
    const pool = new pg.Pool({
      ...proxy.pgConfig({ user: APP_USER, password: APP_PASSWORD, database: APP_DB }),
      max: 4,
    });
    pool.on("error", () => {
      throw new Error("an idle client got an error event");
    });
    await pool.query("SELECT 1");
    // Let the servers sit idle, then cut them off without closing them.
    await sleep(300);
    const before = await checkFailed();
    const cutAt = Date.now();
    relay.blackhole();
    await until("a failed server check", async () => (await checkFailed()) > before, 8000, 50);
    const detectedAt = Date.now();
    // Checks start once a server has been silent for server_check_delay (1 s, swept every 1 s);
    // each gives up after server_check_timeout (1 s); +1 s of slack.
    expect(detectedAt - cutAt).toBeLessThanOrEqual(1000 + 1000 + 1000 + 1000);

    // A client arriving while the upstream is still black-holed waits, and succeeds once it heals.
    const pending = pool.query("SELECT 42 AS v");
    await sleep(1500);
    relay.restore();
    expect((await pending).rows[0].v).toBe(42);
    for (let i = 0; i < 20; i++)
      expect((await pool.query("SELECT $1::int AS v", [i])).rows[0].v).toBe(i);
    await pool.end();
  });
});
