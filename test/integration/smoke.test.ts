import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";

describe("smoke", () => {
  let cluster: PgCluster;
  let proxy: TestProxy;
  beforeAll(async () => {
    cluster = await startCluster();
    proxy = await startProxy(cluster, { pool_size: 3 });
  });
  afterAll(async () => {
    await proxy?.stop();
    await cluster?.destroy();
  });

  it("runs simple and extended queries through the proxy", async () => {
    const c = new pg.Client(proxy.pgConfig());
    await c.connect();
    const r1 = await c.query("SELECT 1 AS one");
    expect(r1.rows).toEqual([{ one: 1 }]);
    const r2 = await c.query("SELECT $1::int + 1 AS two", [1]);
    expect(r2.rows).toEqual([{ two: 2 }]);
    await c.end();
  });
});
