import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

describe("smoke", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  beforeAll(async () => {
    cluster = await sharedCluster();
    proxy = await startProxy(cluster, { pool_size: 3 });
  });
  afterAll(async () => {
    await proxy?.stop();
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
