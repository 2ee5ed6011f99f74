// response_timeout closes a backend that owes replies and stays silent. The statement must not
// keep running on the server after that (Postgres notices a closed client only when it writes):
// the backend's statement is cancelled first, also on each replay.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { until } from "../helpers/until.js";

/** Statements running pg_sleep on the cluster, seen directly (not through the proxy). */
async function sleepers(cluster: PgCluster): Promise<number> {
  const rows = await cluster.query(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%' AND state = 'active' AND pid <> pg_backend_pid()",
  );
  return rows[0].n as number;
}

describe("response_timeout", () => {
  let cluster: PgCluster;
  let proxy: TestProxy;

  beforeAll(async () => {
    cluster = await startCluster();
    proxy = await startProxy(cluster, {
      pool_size: 4,
      response_timeout: "1s",
      retry: "safe",
      retry_max: 2,
    });
  });
  afterAll(async () => {
    await proxy?.stop();
    await cluster?.destroy();
  });

  it("cancels the statement on the server before closing the backend, on every replay", async () => {
    const c = new pg.Client(proxy.pgConfig());
    c.on("error", () => {});
    await c.connect();
    try {
      // Read-only, so `safe` replays it: three attempts, each closed by response_timeout.
      const err = await c.query("SELECT pg_sleep(60)").then(
        () => null,
        (e: pg.DatabaseError) => e,
      );
      expect(err?.code).toBe("08006");
      // Each closed backend's statement was cancelled: nothing is left sleeping on the server.
      // Without the cancel, three pg_sleep(60) would run on for a minute.
      let left = -1;
      const noneLeft = async () => {
        left = await sleepers(cluster);
        return left === 0;
      };
      await until("the cancelled statements to end", noneLeft, 2000, 100);
      expect(left).toBe(0);
      expect((await c.query("SELECT 1 AS v")).rows[0].v).toBe(1);
    } finally {
      await c.end().catch(() => {});
    }
  });
});
