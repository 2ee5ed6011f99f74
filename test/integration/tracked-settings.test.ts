// Session SET / RESET travel with the client in transaction mode instead of pinning it (issue 13
// item 2): a pool of 5 serves 50 clients that each set their own search_path and
// statement_timeout, and every query sees its own client's values.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

describe("session SET without pins (transaction mode)", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  const CLIENTS = 50;

  beforeAll(async () => {
    cluster = await sharedCluster();
    const ddl: string[] = [];
    for (let i = 0; i < CLIENTS; i++) {
      ddl.push(
        `CREATE SCHEMA tracked_s${i}; CREATE TABLE tracked_s${i}.who (n int); INSERT INTO tracked_s${i}.who VALUES (${i});`,
      );
    }
    await cluster.query(ddl.join("\n"));
    proxy = await startProxy(cluster, { pool_size: 5 });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  const connect = async (opts: Partial<pg.ClientConfig> = {}) => {
    const c = new pg.Client({ ...proxy.pgConfig(), ...opts });
    await c.connect();
    return c;
  };

  it("50 clients with their own search_path and statement_timeout over pool_size 5: own values, at most 5 servers", async () => {
    const clients = await Promise.all(Array.from({ length: CLIENTS }, () => connect()));
    await Promise.all(
      clients.map(async (c, i) => {
        await c.query(`SET search_path = tracked_s${i}, public`);
        await c.query(`SET statement_timeout = '${1001 + i}ms'`);
      }),
    );
    let wrong = 0;
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        clients.map(async (c, i) => {
          const who = await c.query("SELECT n FROM who");
          const timeout = await c.query("SHOW statement_timeout");
          const path = await c.query("SHOW search_path");
          if (who.rows[0].n !== i) wrong++;
          if (timeout.rows[0].statement_timeout !== `${1001 + i}ms`) wrong++;
          if (path.rows[0].search_path !== `tracked_s${i}, public`) wrong++;
        }),
      );
    }
    expect(wrong).toBe(0);
    const servers = await cluster.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname = 'postgres'",
    );
    expect(servers[0].n).toBeLessThanOrEqual(5);
    // None of them holds a server between statements.
    const idleServers = await cluster.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'idle in transaction'",
    );
    expect(idleServers[0].n).toBe(0);
    await Promise.all(clients.map((c) => c.end()));
  });

  it("RESET, RESET ALL, DISCARD ALL and set_config(..., false) as on a direct connection", async () => {
    const c = await connect({ statement_timeout: 7000 } as Partial<pg.ClientConfig>);
    const show = async (name: string) => (await c.query(`SHOW ${name}`)).rows[0][name];
    expect(await show("statement_timeout")).toBe("7s");
    await c.query("SET statement_timeout = '3s'");
    expect(await show("statement_timeout")).toBe("3s");
    await c.query("RESET statement_timeout");
    expect(await show("statement_timeout")).toBe("7s"); // the startup value, as Postgres does
    await c.query("SELECT set_config('search_path', 'tracked_s3', false)");
    expect((await c.query("SELECT n FROM who")).rows[0].n).toBe(3);
    await c.query("RESET ALL");
    expect(await show("search_path")).toBe('"$user", public');
    await c.query("SET search_path = tracked_s4");
    await c.query("DISCARD ALL");
    expect(await show("search_path")).toBe('"$user", public');
    expect(await show("statement_timeout")).toBe("7s");
    await c.end();
  });

  it("a SET whose unit failed, or inside a transaction rolled back, is not carried: the server's own state is kept", async () => {
    const c = await connect();
    await c.query("SET search_path = tracked_s1");
    await expect(c.query("SET search_path = tracked_s2; SELECT 1/0")).rejects.toThrow(/division/);
    expect((await c.query("SELECT n FROM who")).rows[0].n).toBe(1);
    await c.query("BEGIN");
    await c.query("SET search_path = tracked_s5");
    expect((await c.query("SELECT n FROM who")).rows[0].n).toBe(5);
    await c.query("ROLLBACK");
    expect((await c.query("SELECT n FROM who")).rows[0].n).toBe(1);
    // Other clients never see this client's settings.
    const other = await connect();
    for (let i = 0; i < 10; i++) {
      expect((await other.query("SHOW search_path")).rows[0].search_path).toBe('"$user", public');
    }
    await other.end();
    await c.end();
  });
});

describe("a server reset by the pool forgets what was set on it", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.query(
      "CREATE SCHEMA tracked_reset; CREATE TABLE tracked_reset.who (n int); INSERT INTO tracked_reset.who VALUES (7)",
    );
    proxy = await startProxy(cluster, { pool_size: 1 });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it("after a pinned client leaves (DISCARD ALL), the next client's startup search_path is applied again", async () => {
    const options = {
      ...proxy.pgConfig(),
      options: "-c search_path=tracked_reset",
    } as pg.ClientConfig;
    const a = new pg.Client(options);
    await a.connect();
    expect((await a.query("SELECT n FROM who")).rows[0].n).toBe(7);
    await a.query("CREATE TEMP TABLE pinned (v int)"); // pins: the pool resets the server with DISCARD ALL
    await a.end();
    await new Promise((r) => setTimeout(r, 200));
    const b = new pg.Client(options); // the same server (pool_size 1), the same startup setting
    await b.connect();
    expect((await b.query("SHOW search_path")).rows[0].search_path).toBe("tracked_reset");
    expect((await b.query("SELECT n FROM who")).rows[0].n).toBe(7);
    await b.end();
  });

  it("clients that never SET get their login values back on the one server after each other client's SET", async () => {
    const plain = new pg.Client(proxy.pgConfig()); // shares the pool's frozen login settings
    const setter = new pg.Client(proxy.pgConfig());
    await plain.connect();
    await setter.connect();
    const show = async (c: pg.Client) =>
      (
        await c.query(
          "SELECT current_setting('TimeZone') AS tz, current_setting('statement_timeout') AS st",
        )
      ).rows[0];
    const login = await show(plain);
    for (let i = 0; i < 5; i++) {
      // A reported parameter alone (the server's ParameterStatus), then an unreported one.
      await setter.query("SET TimeZone = 'Asia/Tokyo'");
      expect(await show(plain)).toEqual(login); // the same server (pool_size 1), put back
      await setter.query(`SET statement_timeout = '${1001 + i}ms'`);
      expect(await show(plain)).toEqual(login);
      expect(await show(setter)).toEqual({ tz: "Asia/Tokyo", st: `${1001 + i}ms` });
      await setter.query("RESET ALL");
      expect(await show(plain)).toEqual(login);
    }
    await plain.end();
    await setter.end();
  });
});
