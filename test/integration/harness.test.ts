// Proves the test harness itself: throwaway clusters (SCRAM, md5, restart, TLS) and the fault relay.
import { readFileSync } from "node:fs";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { python3Psycopg } from "../helpers/processes.js";
import { type Relay, startRelay } from "../helpers/relay.js";

/** A connected client whose connection-level errors are recorded instead of thrown. */
async function connectClient(config: pg.ClientConfig): Promise<pg.Client & { errors: Error[] }> {
  const client = Object.assign(new pg.Client(config), { errors: [] as Error[] });
  client.on("error", (e) => client.errors.push(e));
  await client.connect();
  return client;
}

async function scalar<T>(client: pg.Client, sql: string): Promise<T> {
  const r = await client.query(sql);
  return Object.values(r.rows[0] as Record<string, T>)[0];
}

describe("throwaway cluster", () => {
  let cluster: PgCluster;
  const open: pg.Client[] = [];
  const connect = async (config: pg.ClientConfig) => {
    const c = await connectClient(config);
    open.push(c);
    return c;
  };

  beforeAll(async () => {
    const t0 = Date.now();
    cluster = await startCluster();
    console.log(`cluster started in ${Date.now() - t0} ms on port ${cluster.port}`);
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.end().catch(() => {})));
  });
  afterAll(async () => {
    await cluster?.destroy();
  });

  it("accepts the superuser over TCP with SCRAM", async () => {
    const c = await connect({ connectionString: cluster.url() });
    expect(await scalar(c, "SELECT current_user")).toBe("postgres");
    const rows = await cluster.query(
      "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' AS scram FROM pg_authid WHERE rolname = $1",
      [cluster.superuser],
    );
    expect(rows).toEqual([{ scram: true }]);
    await expect(
      connectClient({ connectionString: cluster.url({ password: "wrong" }) }),
    ).rejects.toThrow(/password authentication failed/);
  });

  it("stores an md5 password for an md5 user, who can still log in", async () => {
    await cluster.createUser("md5_alice", "alice pw", { md5: true });
    const rows = await cluster.query(
      "SELECT rolpassword LIKE 'md5%' AS md5 FROM pg_authid WHERE rolname = 'md5_alice'",
    );
    expect(rows).toEqual([{ md5: true }]);
    const c = await connect({
      connectionString: cluster.url({ user: "md5_alice", password: "alice pw" }),
    });
    expect(await scalar(c, "SELECT current_user")).toBe("md5_alice");
  });

  it("creates SCRAM users and databases they own", async () => {
    await cluster.createUser("bob", "bob's pw");
    await cluster.createDatabase("bobdb", "bob");
    const c = await connect({
      connectionString: cluster.url({ user: "bob", password: "bob's pw", database: "bobdb" }),
    });
    expect(await scalar(c, "SELECT current_database()")).toBe("bobdb");
    const rows = await cluster.query(
      "SELECT rolpassword LIKE 'SCRAM%' AS scram FROM pg_authid WHERE rolname = 'bob'",
    );
    expect(rows).toEqual([{ scram: true }]);
  });

  it("lists client backends by user, without the asking connection", async () => {
    const a = await connect({
      connectionString: cluster.url({ user: "bob", password: "bob's pw" }),
    });
    const b = await connect({
      connectionString: cluster.url({ user: "bob", password: "bob's pw" }),
    });
    const pids = [
      await scalar<number>(a, "SELECT pg_backend_pid()"),
      await scalar<number>(b, "SELECT pg_backend_pid()"),
    ];
    expect(await cluster.backendPids("bob")).toEqual(pids.sort((x, y) => x - y));
    const all = await cluster.backendPids();
    expect(all).toEqual(expect.arrayContaining(pids));
  });

  it("restarts (fast) on the same port; old connections fail, new ones work", async () => {
    const before = await connect({ connectionString: cluster.url() });
    const port = cluster.port;
    await cluster.restart("fast");
    expect(cluster.port).toBe(port);
    await expect(before.query("SELECT 1")).rejects.toThrow();
    const after = await connect({ connectionString: cluster.url() });
    expect(await scalar(after, "SELECT 1")).toBe(1);
  });

  it("stops and starts again with its data", async () => {
    await cluster.stop("immediate");
    await expect(
      connectClient({ connectionString: cluster.url(), connectionTimeoutMillis: 2000 }),
    ).rejects.toThrow();
    await cluster.start();
    expect(
      await cluster.query("SELECT count(*)::int AS n FROM pg_roles WHERE rolname = 'bob'"),
    ).toEqual([{ n: 1 }]);
    expect(cluster.log()).toMatch(/database system is ready to accept connections/);
  });

  it("is reachable from Debian's psycopg", async () => {
    const r = await python3Psycopg(
      "import os, psycopg\nwith psycopg.connect(os.environ['DSN']) as c:\n  print(c.execute('select 40 + 2').fetchone()[0])",
      { DSN: cluster.url() },
      { timeoutMs: 30_000 },
    );
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("42");
    expect(r.code).toBe(0);
  });
});

describe("fault relay", () => {
  let cluster: PgCluster;
  let relay: Relay;
  const open: pg.Client[] = [];
  const viaRelay = async (extra: Partial<pg.ClientConfig> = {}) => {
    const c = await connectClient({
      host: relay.host,
      port: relay.port,
      user: cluster.superuser,
      password: cluster.password,
      database: "postgres",
      ...extra,
    });
    open.push(c);
    return c;
  };

  beforeAll(async () => {
    cluster = await startCluster();
    relay = await startRelay({ host: cluster.host, port: cluster.port });
  });
  afterEach(async () => {
    relay.restore();
    relay.sever();
    await Promise.all(open.splice(0).map((c) => c.end().catch(() => {})));
  });
  afterAll(async () => {
    await relay?.close();
    await cluster?.destroy();
  });

  it("forwards a connection to the server", async () => {
    const c = await viaRelay();
    expect(await scalar(c, "SELECT 1")).toBe(1);
    expect(relay.connections()).toBe(1);
  });

  it("sever() resets current connections and the client sees an error", async () => {
    const c = await viaRelay();
    const pid = await scalar<number>(c, "SELECT pg_backend_pid()");
    relay.sever();
    await expect(c.query("SELECT 1")).rejects.toThrow();
    expect(relay.connections()).toBe(0);
    // The server side was reset too: its backend goes away.
    await expect.poll(() => cluster.backendPids(), { timeout: 5000 }).not.toContain(pid);
    const fresh = await viaRelay();
    expect(await scalar(fresh, "SELECT 2")).toBe(2);
  });

  it("blackhole() stalls current and new connections without closing them; restore() heals new ones", async () => {
    const c = await viaRelay({ query_timeout: 500 });
    expect(await scalar(c, "SELECT 1")).toBe(1);
    relay.blackhole();
    const t0 = Date.now();
    await expect(c.query("SELECT 1")).rejects.toThrow(/timeout/i);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    expect(c.errors).toEqual([]);
    await expect(viaRelay({ connectionTimeoutMillis: 500 })).rejects.toThrow(/timeout/i);
    expect(relay.connections()).toBeGreaterThanOrEqual(1);
    relay.restore();
    const fresh = await viaRelay();
    expect(await scalar(fresh, "SELECT 3")).toBe(3);
  });

  it("refuse(true) resets new connections until refuse(false)", async () => {
    relay.refuse(true);
    await expect(viaRelay({ connectionTimeoutMillis: 2000 })).rejects.toThrow();
    relay.refuse(false);
    const c = await viaRelay();
    expect(await scalar(c, "SELECT 4")).toBe(4);
  });
});

describe("cluster with ssl", () => {
  let cluster: PgCluster;

  beforeAll(async () => {
    cluster = await startCluster({ ssl: true, conf: { idle_session_timeout: "30s" } });
  });
  afterAll(async () => {
    await cluster?.destroy();
  });

  it("serves TLS with a certificate for localhost signed by its CA", async () => {
    expect(cluster.caFile).toBeTruthy();
    const ca = readFileSync(cluster.caFile as string, "utf8");
    const c = await connectClient({
      host: cluster.host,
      port: cluster.port,
      user: cluster.superuser,
      password: cluster.password,
      database: "postgres",
      ssl: { ca, rejectUnauthorized: true, servername: "localhost" },
    });
    try {
      expect(await scalar(c, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).toBe(
        true,
      );
      expect(await scalar(c, "SHOW idle_session_timeout")).toBe("30s");
    } finally {
      await c.end();
    }
    await expect(
      connectClient({
        host: cluster.host,
        port: cluster.port,
        user: cluster.superuser,
        password: cluster.password,
        ssl: { rejectUnauthorized: true, servername: "localhost" },
      }),
    ).rejects.toThrow(/certificate/i);
  });
});
