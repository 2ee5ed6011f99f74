// SQL-level statement management in transaction mode: PREPARE/EXECUTE pins the client (the
// statement lives in that server's session), DEALLOCATE of a protocol-level name and DISCARD ALL
// are answered for the client's own names, on whichever server serves it, or none.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

describe("SQL PREPARE / EXECUTE / DEALLOCATE in transaction mode", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  beforeAll(async () => {
    cluster = await sharedCluster();
    proxy = await startProxy(cluster, { pool_size: 2 });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it("PREPARE then EXECUTE works across many statements: the client is pinned while it has one", async () => {
    const c = new pg.Client(proxy.pgConfig());
    await c.connect();
    const others = await Promise.all(
      [0, 1, 2].map(async () => {
        const o = new pg.Client(proxy.pgConfig());
        await o.connect();
        return o;
      }),
    );
    await c.query("PREPARE plus(int) AS SELECT $1 + 1 AS v");
    for (let i = 0; i < 10; i++) {
      await Promise.all(others.map((o) => o.query("SELECT 1")));
      expect((await c.query(`EXECUTE plus(${i})`)).rows[0].v).toBe(i + 1);
    }
    expect(proxy.proxy.console.clientRows().find((r) => r.pins === "sql_prepare")).toBeDefined();
    await c.query("DEALLOCATE plus");
    await Promise.all([c, ...others].map((x) => x.end()));
  });

  it("DEALLOCATE of a protocol-level name, DEALLOCATE ALL and DISCARD ALL are answered for the client", async () => {
    const c = new pg.Client(proxy.pgConfig());
    await c.connect();
    await c.query({ name: "s1", text: "SELECT $1::int AS v", values: [1] });
    // Answered without a server: the name is the client's, not any server's.
    const r1 = await c.query("DEALLOCATE s1");
    expect(r1.command).toBe("DEALLOCATE");
    const r2 = await c.query("DEALLOCATE ALL");
    expect(r2.command).toBe("DEALLOCATE");
    const r3 = await c.query("DISCARD ALL");
    expect(r3.command).toBe("DISCARD");
    // An unknown name reaches the server and fails as Postgres would.
    await expect(c.query("DEALLOCATE nope")).rejects.toMatchObject({ code: "26000" });
    expect((await c.query("SELECT 2 AS v")).rows[0].v).toBe(2);
    await c.end();
  });
});
