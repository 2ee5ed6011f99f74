// client_idle_timeout closes clients idle outside a transaction, and only those.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

describe("client_idle_timeout", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  beforeAll(async () => {
    cluster = await sharedCluster();
    proxy = await startProxy(cluster, { client_idle_timeout: "1s" });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it("closes an idle client with 57P05 but not one inside a transaction or one that keeps working", async () => {
    const idle = new pg.Client(proxy.pgConfig());
    const inTx = new pg.Client(proxy.pgConfig());
    const busy = new pg.Client(proxy.pgConfig());
    const idleError = new Promise<Error & { code?: string }>((resolve) =>
      idle.on("error", resolve),
    );
    for (const c of [idle, inTx, busy]) await c.connect();
    await inTx.query("BEGIN");
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      await busy.query("SELECT 1");
      await new Promise((r) => setTimeout(r, 200));
    }
    expect((await idleError).code).toBe("57P05");
    expect((await inTx.query("SELECT 1 AS v")).rows[0].v).toBe(1);
    await inTx.query("COMMIT");
    await Promise.all([inTx.end(), busy.end()]);
  });
});
