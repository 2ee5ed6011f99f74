// Each client keeps its own startup parameters on whichever server serves it.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

describe("ParameterStatus consistency in transaction mode", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  beforeAll(async () => {
    cluster = await sharedCluster();
    proxy = await startProxy(cluster, { pool_size: 2 });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it("two clients with different TimeZone and application_name always see their own values", async () => {
    const mk = (tz: string, app: string) =>
      new pg.Client({
        ...proxy.pgConfig(),
        application_name: app,
        options: `-c TimeZone=${tz} -c statement_timeout=7s`,
      });
    const a = mk("America/New_York", "app-a");
    const b = mk("Asia/Tokyo", "app-b");
    await a.connect();
    await b.connect();
    const serverTz = (await cluster.query("SHOW timezone"))[0].TimeZone;
    const plain = new pg.Client(proxy.pgConfig());
    await plain.connect();
    const check = async (c: pg.Client, tz: string, app: string, timeout: string) => {
      const r = await c.query(
        "SELECT current_setting('TimeZone') AS tz, current_setting('application_name') AS app, current_setting('statement_timeout') AS st",
      );
      expect(r.rows[0]).toEqual({ tz, app, st: timeout });
    };
    for (let i = 0; i < 40; i++) {
      await Promise.all([
        check(a, "America/New_York", "app-a", "7s"),
        check(b, "Asia/Tokyo", "app-b", "7s"),
        check(plain, serverTz, "", "0"),
      ]);
    }
    // The servers really were shared: 3 clients over 2 servers.
    const rows = await cluster.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    );
    expect(rows[0].n).toBeLessThanOrEqual(2);
    await Promise.all([a.end(), b.end(), plain.end()]);
  });

  it("a client's own SET TimeZone is kept across servers, and SHOW reports it", async () => {
    const serverTz = (await cluster.query("SHOW timezone"))[0].TimeZone;
    const c = new pg.Client(proxy.pgConfig());
    await c.connect();
    await c.query("SET TimeZone = 'Europe/Paris'");
    const others = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const o = new pg.Client(proxy.pgConfig());
        await o.connect();
        const r = await o.query("SHOW timezone");
        await o.end();
        return r.rows[0].TimeZone;
      }),
    );
    expect(others).toEqual([serverTz, serverTz, serverTz, serverTz]);
    for (let i = 0; i < 10; i++) {
      expect((await c.query("SHOW timezone")).rows[0].TimeZone).toBe("Europe/Paris");
    }
    await c.end();
  });
});
