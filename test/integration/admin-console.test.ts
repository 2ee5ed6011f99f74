// The admin console (database "pgsidecar"): psql answers every SHOW with live numbers that match
// Postgres' own view; only admin users get in; PAUSE/RESUME hold and release units; RECONNECT
// replaces idle servers; RELOAD applies a new configuration.
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { pgBinDir } from "../helpers/pg-cluster.js";
import { run } from "../helpers/processes.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { until } from "../helpers/until.js";

const ADMIN = { user: "admin", password: "admin-pw-4c1f" };
const APP = { user: "console_app", password: "app-pw-9e2d" };

type Row = Record<string, string | null>;

describe("admin console", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  let admin: pg.Client;
  const apps: pg.Client[] = [];

  const settings = (poolSize: number) => ({
    pool_size: poolSize,
    users: [
      { name: ADMIN.user, password: ADMIN.password, admin: true },
      { name: APP.user, password: APP.password },
    ],
  });
  const connectApp = async () => {
    const c = new pg.Client(proxy.pgConfig(APP));
    await c.connect();
    apps.push(c);
    return c;
  };
  const show = async (what: string): Promise<Row[]> => (await admin.query(`SHOW ${what}`)).rows;
  const appPool = async () => (await show("POOLS")).find((r) => r.user === APP.user) as Row;
  const appServers = async () => (await show("SERVERS")).filter((r) => r.user === APP.user);
  const pidsOf = (rows: Row[]) => rows.map((r) => Number(r.pid)).sort((a, b) => a - b);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** Opens `n` servers at once: n clients each hold a transaction until all have one. */
  const openServers = async (clients: pg.Client[]) => {
    await Promise.all(clients.map((c) => c.query("BEGIN")));
    await Promise.all(clients.map((c) => c.query("SELECT pg_backend_pid()")));
    await Promise.all(clients.map((c) => c.query("COMMIT")));
  };
  const psql = (sql: string, who = ADMIN) =>
    run(
      join(pgBinDir(), "psql"),
      [
        "-X",
        "--csv",
        "-h",
        "127.0.0.1",
        "-p",
        String(proxy.port),
        "-U",
        who.user,
        "-c",
        sql,
        "pgsidecar",
      ],
      {
        env: { ...process.env, PGPASSWORD: who.password, PGCONNECT_TIMEOUT: "10" },
        timeoutMs: 20_000,
      },
    );

  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.createUser(APP.user, APP.password);
    proxy = await startProxy(cluster, settings(3));
    admin = new pg.Client(proxy.pgConfig({ ...ADMIN, database: "pgsidecar" }));
    await admin.connect();
  });
  afterAll(async () => {
    for (const c of apps) await c.end().catch(() => {});
    await admin?.end().catch(() => {});
    await proxy?.stop();
  });

  it("psql as an admin user gets every SHOW command answered", async () => {
    const expected: Record<string, string[]> = {
      POOLS: ["database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle", "paused"],
      CLIENTS: ["id", "user", "database", "state", "server_id", "pins"],
      SERVERS: ["id", "database", "user", "state", "pid", "idle_seconds"],
      STATS: ["database", "user", "total_xact_count", "total_query_count", "avg_wait_time"],
      CONFIG: ["key", "value", "default", "source"],
      VERSION: ["version"],
    };
    // Something in every table: a pool with a server, and a client of it.
    const c = await connectApp();
    await c.query("SELECT 1");
    for (const [what, columns] of Object.entries(expected)) {
      const r = await psql(`SHOW ${what}`);
      expect(r.code, `${what}: ${r.stderr}`).toBe(0);
      const [header, ...lines] = r.stdout.trim().split("\n");
      expect(header.split(","), what).toEqual(expect.arrayContaining(columns));
      expect(lines.length, what).toBeGreaterThan(0);
    }
    expect((await psql("SHOW VERSION")).stdout).toMatch(/pgsidecar \d+\.\d+\.\d+/);
    const bad = await psql("SHOW NOTHING");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/unknown SHOW target/);
  });

  it("refuses a user who is not an admin with 28000, and a wrong admin password with 28P01", async () => {
    const c = new pg.Client(proxy.pgConfig({ ...APP, database: "pgsidecar" }));
    const err = (await c.connect().then(
      () => null,
      (e: unknown) => e,
    )) as { code?: string } | null;
    expect(err?.code).toBe("28000");
    const r = await psql("SHOW POOLS", APP);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/admin|not allowed|permission/i);

    const wrong = new pg.Client(
      proxy.pgConfig({ ...ADMIN, password: "nope", database: "pgsidecar" }),
    );
    const err2 = (await wrong.connect().then(
      () => null,
      (e: unknown) => e,
    )) as { code?: string } | null;
    expect(err2?.code).toBe("28P01");
  });

  it("SHOW SERVERS lists exactly the backends pg_stat_activity has, and SHOW POOLS/CLIENTS count them", async () => {
    const clients = [await connectApp(), await connectApp(), await connectApp()];
    await openServers(clients);
    const servers = await appServers();
    expect(servers).toHaveLength(3);
    expect(pidsOf(servers)).toEqual((await cluster.backendPids(APP.user)).sort((a, b) => a - b));
    expect(servers.every((s) => s.state === "idle")).toBe(true);

    // One client holds a transaction: its server is active, and it is that client's backend.
    const holder = clients[0];
    await holder.query("BEGIN");
    const pid = (await holder.query("SELECT pg_backend_pid() AS p")).rows[0].p as number;
    const active = (await appServers()).filter((s) => s.state === "active");
    expect(pidsOf(active)).toEqual([pid]);
    const pool = await appPool();
    expect(Number(pool.cl_active)).toBe(1);
    expect(Number(pool.sv_active)).toBe(1);
    expect(Number(pool.sv_idle)).toBe(2);
    expect(Number(pool.cl_idle)).toBe(apps.length - 1);
    const mine = (await show("CLIENTS")).filter((r) => r.user === APP.user);
    expect(mine).toHaveLength(apps.length);
    const holding = mine.filter((r) => r.server_id !== null);
    expect(holding).toHaveLength(1);
    expect(holding[0].tx_status).toBe("T");
    expect(holding[0].server_id).toBe(active[0].id);
    await holder.query("COMMIT");
    expect(Number((await appPool()).sv_active)).toBe(0);
  });

  it("SHOW STATS counts the queries and transactions, the same numbers /metrics exports", async () => {
    const before = (await show("STATS")).find((r) => r.user === APP.user) as Row;
    const c = await connectApp();
    for (let i = 0; i < 10; i++) await c.query("SELECT $1::int", [i]);
    await c.query("BEGIN");
    await c.query("SELECT 1");
    await c.query("COMMIT");
    const after = (await show("STATS")).find((r) => r.user === APP.user) as Row;
    expect(Number(after.total_query_count) - Number(before.total_query_count)).toBe(13);
    expect(Number(after.total_xact_count) - Number(before.total_xact_count)).toBe(11);
    expect(Number(after.total_query_time)).toBeGreaterThan(Number(before.total_query_time));

    const text = await (await fetch(`http://127.0.0.1:${proxy.proxy.httpPort}/metrics`)).text();
    const metric = (name: string) =>
      Number(
        new RegExp(`^${name}\\{database="postgres",user="${APP.user}"\\} (\\S+)$`, "m").exec(
          text,
        )?.[1],
      );
    expect(metric("pgsidecar_queries_total")).toBe(Number(after.total_query_count));
    expect(metric("pgsidecar_transactions_total")).toBe(Number(after.total_xact_count));
    expect(metric("pgsidecar_server_connections_opened_total")).toBe(Number(after.sv_opened));
  });

  it("SHOW CONFIG shows the live settings and no password", async () => {
    const rows = await show("CONFIG");
    expect(rows.find((r) => r.key === "pool_size")?.value).toBe("3");
    const all = JSON.stringify(rows);
    for (const secret of [ADMIN.password, APP.password, cluster.password])
      expect(all).not.toContain(secret);
  });

  it("PAUSE makes new units wait, RESUME releases them", async () => {
    const c = await connectApp();
    await c.query("SELECT 1");
    await admin.query("PAUSE");
    expect((await appPool()).paused).toBe("true");
    let done = false;
    const pending = c.query("SELECT 42 AS v").then((r) => {
      done = true;
      return r.rows[0].v as number;
    });
    await sleep(500);
    expect(done).toBe(false);
    expect(Number((await appPool()).cl_waiting)).toBe(1);
    const text = await (await fetch(`http://127.0.0.1:${proxy.proxy.httpPort}/metrics`)).text();
    expect(text).toMatch(
      new RegExp(`^pgsidecar_pool_paused\\{database="postgres",user="${APP.user}"\\} 1$`, "m"),
    );

    await admin.query("RESUME");
    expect(await pending).toBe(42);
    expect((await appPool()).paused).toBe("false");
    expect(Number((await appPool()).cl_waiting)).toBe(0);
  });

  it("RECONNECT replaces idle servers with new ones (new pids)", async () => {
    const clients = apps.slice(0, 3);
    await openServers(clients);
    const old = pidsOf(await appServers());
    expect(old.length).toBeGreaterThan(0);
    await admin.query("RECONNECT");
    // The old backends go away...
    const oldGone = async () => !(await cluster.backendPids(APP.user)).some((p) => old.includes(p));
    await until("the old backends to exit", oldGone, 5000, 100);
    expect((await cluster.backendPids(APP.user)).filter((p) => old.includes(p))).toEqual([]);
    // ...and the next units run on new ones, which SHOW SERVERS and Postgres agree on.
    await openServers(clients);
    const fresh = pidsOf(await appServers());
    expect(fresh.length).toBeGreaterThan(0);
    expect(fresh.filter((p) => old.includes(p))).toEqual([]);
    expect(fresh).toEqual((await cluster.backendPids(APP.user)).sort((a, b) => a - b));
    const closed = proxy.proxy.metrics.pool({ database: "postgres", user: APP.user }).serversClosed;
    expect(closed.get("reconnect")).toBe(old.length);
  });

  it("RELOAD applies the configuration again (pool_size here)", async () => {
    const console_ = proxy.proxy.console;
    const previous = console_.reloader;
    console_.reloader = () =>
      proxy.proxy.reload(
        loadConfig({
          argv: {
            listen: "127.0.0.1:0",
            http_listen: "127.0.0.1:0",
            upstream: cluster.url({ database: "postgres" }),
            ...settings(5),
          },
          env: {},
        }),
      );
    try {
      await admin.query("RELOAD");
      expect((await appPool()).pool_size).toBe("5");
      expect((await show("CONFIG")).find((r) => r.key === "pool_size")?.value).toBe("5");
    } finally {
      console_.reloader = previous;
    }
  });
});
