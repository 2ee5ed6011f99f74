// Databases (issue 13 item 5): the fallback "*" entry (PgBouncer's convention) serves any database
// name a client asks for from the upstream's server, each (database, user) with its own pool; a
// name the server does not have gets the server's own FATAL 3D000, and its pool is forgotten.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../helpers/processes.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { until } from "../helpers/until.js";

async function currentDatabase(config: pg.ClientConfig): Promise<string> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: 5000 });
  c.on("error", () => {});
  await c.connect();
  try {
    return (await c.query("SELECT current_database() AS db")).rows[0].db;
  } finally {
    await c.end();
  }
}

async function loginError(config: pg.ClientConfig): Promise<{ code?: string; message: string }> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: 5000 });
  c.on("error", () => {});
  try {
    await c.connect();
  } catch (err) {
    const e = err as { code?: string; message: string; severity?: string };
    return { code: e.code, message: e.message };
  }
  await c.end();
  throw new Error("logged in, expected an error");
}

describe("any database of the upstream's server (default config)", () => {
  let cluster: SharedCluster;
  let transaction: TestProxy;
  let session: TestProxy;

  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.createDatabase("second_app_databases");
    // The default config: only `upstream` (database postgres) is set.
    transaction = await startProxy(cluster, { pool_size: 2, pool_mode: "transaction" });
    session = await startProxy(cluster, { pool_size: 2, pool_mode: "session" });
  });
  afterAll(async () => {
    await transaction?.stop();
    await session?.stop();
  });

  for (const mode of ["transaction", "session"] as const) {
    it(`node-postgres clients of template1, postgres and a second database work (${mode} mode)`, async () => {
      const proxy = mode === "transaction" ? transaction : session;
      for (const database of ["template1", "postgres", "second_app_databases"]) {
        // The same against Postgres directly, so the test shows the two agree.
        expect(await currentDatabase({ ...proxyless(cluster), database })).toBe(database);
        expect(await currentDatabase(proxy.pgConfig({ database }))).toBe(database);
      }
      // One pool per (database, user), each with the default pool_mode and pool_size.
      const pools = [...proxy.proxy.pools.keys()].sort();
      expect(pools).toEqual([
        "postgres/postgres",
        "second_app_databases/postgres",
        "template1/postgres",
      ]);
      for (const pool of proxy.proxy.pools.values()) expect(pool.settings.poolSize).toBe(2);
      expect(proxy.proxy.databaseConfig("template1")?.pool_mode).toBe(mode);
    });
  }

  it("psql connects to template1 through the sidecar", async () => {
    const r = await run(
      "psql",
      [
        `postgres://${cluster.superuser}@127.0.0.1:${transaction.port}/template1`,
        "-XAtc",
        "SELECT current_database()",
      ],
      { env: { ...process.env, PGPASSWORD: cluster.password, PGCONNECT_TIMEOUT: "5" } },
    );
    expect({ code: r.code, out: r.stdout.trim(), err: r.stderr }).toEqual({
      code: 0,
      out: "template1",
      err: "",
    });
  });

  it("forwards the server's FATAL 3D000 for a database that does not exist, and forgets its pool", async () => {
    const direct = await loginError({ ...proxyless(cluster), database: "no_such_db" });
    const via = await loginError(transaction.pgConfig({ database: "no_such_db" }));
    expect(direct).toEqual({ code: "3D000", message: 'database "no_such_db" does not exist' });
    expect(via).toEqual(direct);
    // Again at once (the refused pool may still exist, with its upstream in backoff).
    expect(await loginError(transaction.pgConfig({ database: "no_such_db" }))).toEqual(direct);
    // Names clients make up leave no pool, upstream state or metric series behind.
    await until(
      "the refused pool to go",
      () => !transaction.proxy.pools.has("no_such_db/postgres"),
      5000,
      50,
    );
    const metrics = await transaction.proxy.metrics.registry.metrics();
    expect(metrics).not.toContain('database="no_such_db"');
    // The pools of databases that exist stay.
    expect(transaction.proxy.pools.has("template1/postgres")).toBe(true);
  });

  it("keeps the admin console database pgsidecar out of the fallback", async () => {
    // No admin users here: the console refuses, and nothing is asked of the server.
    const err = await loginError(transaction.pgConfig({ database: "pgsidecar" }));
    expect(err.code).toBe("28000");
    expect(transaction.proxy.pools.has("pgsidecar/postgres")).toBe(false);
  });
});

describe("databases: explicit * entry and any_database: false", () => {
  let cluster: SharedCluster;

  beforeAll(async () => {
    cluster = await sharedCluster();
  });

  it("any_database: false answers other names with 3D000 from the sidecar", async () => {
    const proxy = await startProxy(cluster, { any_database: false });
    try {
      expect(await currentDatabase(proxy.pgConfig({ database: "postgres" }))).toBe("postgres");
      const err = await loginError(proxy.pgConfig({ database: "template1" }));
      expect(err).toEqual({ code: "3D000", message: 'database "template1" does not exist' });
      expect(proxy.proxy.pools.has("template1/postgres")).toBe(false);
    } finally {
      await proxy.stop();
    }
  });

  it('a "*" entry gives the fallback its own server and pool settings', async () => {
    const proxy = await startProxy(cluster, {
      databases: JSON.stringify({
        // The URL's database (/ignored) is replaced by the name each client asks for.
        "*": { upstream: `postgres://127.0.0.1:${cluster.port}/ignored`, pool_size: 1 },
      }),
    });
    try {
      expect(await currentDatabase(proxy.pgConfig({ database: "template1" }))).toBe("template1");
      expect(proxy.proxy.pools.get("template1/postgres")?.settings.poolSize).toBe(1);
      // The upstream's own database keeps the top-level settings.
      expect(await currentDatabase(proxy.pgConfig({ database: "postgres" }))).toBe("postgres");
      expect(proxy.proxy.pools.get("postgres/postgres")?.settings.poolSize).toBe(20);
    } finally {
      await proxy.stop();
    }
  });
});

/** Connection options for the cluster itself. */
function proxyless(cluster: SharedCluster): pg.ClientConfig {
  return {
    host: cluster.host,
    port: cluster.port,
    user: cluster.superuser,
    password: cluster.password,
  };
}
