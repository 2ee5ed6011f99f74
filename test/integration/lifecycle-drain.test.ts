// SIGTERM drains and SIGINT stops, on the built CLI as a child process (as Kubernetes signals it).
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { httpStatus, type SidecarProcess, spawnSidecar } from "../helpers/lifecycle-process.js";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { until } from "../helpers/until.js";

interface Watched {
  client: pg.Client;
  /** Set when the sidecar closed the connection (or it failed). */
  ended: () => boolean;
  errors: Error[];
}

describe("SIGTERM drain and SIGINT stop (CLI child process)", () => {
  let cluster: PgCluster;
  const running: SidecarProcess[] = [];
  const clients: pg.Client[] = [];

  beforeAll(async () => {
    cluster = await startCluster();
    await cluster.query("CREATE TABLE drained (id int PRIMARY KEY)");
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.end().catch(() => {});
    for (const p of running.splice(0)) p.kill();
  });
  afterAll(async () => {
    await cluster?.destroy();
  });

  async function sidecar(...flags: string[]): Promise<SidecarProcess> {
    const p = await spawnSidecar([
      "--listen",
      "127.0.0.1:0",
      "--http-listen",
      "127.0.0.1:0",
      "--upstream",
      cluster.url({ database: "postgres" }),
      ...flags,
    ]);
    running.push(p);
    return p;
  }

  async function connect(p: SidecarProcess): Promise<Watched> {
    const client = new pg.Client({
      host: "127.0.0.1",
      port: p.port,
      user: cluster.superuser,
      password: cluster.password,
      database: "postgres",
    });
    clients.push(client);
    const errors: Error[] = [];
    let ended = false;
    client.on("error", (e) => errors.push(e));
    client.on("end", () => {
      ended = true;
    });
    await client.connect();
    return { client, ended: () => ended, errors };
  }

  /** A new login through the sidecar: "ok", or the error code/SQLSTATE it failed with. */
  async function tryLogin(p: SidecarProcess): Promise<string> {
    const c = new pg.Client({
      host: "127.0.0.1",
      port: p.port,
      user: cluster.superuser,
      password: cluster.password,
      database: "postgres",
      connectionTimeoutMillis: 3000,
    });
    c.on("error", () => {});
    try {
      await c.connect();
      await c.query("SELECT 1");
      await c.end();
      return "ok";
    } catch (err) {
      const e = err as { code?: string; message: string };
      return e.code ?? e.message;
    }
  }

  async function ids(): Promise<number[]> {
    const rows = await cluster.query("SELECT id FROM drained ORDER BY id");
    return rows.map((r: { id: number }) => r.id);
  }

  it("lets a transaction in flight commit, refuses new connections, and exits 0 before shutdown_timeout", async () => {
    await cluster.query("TRUNCATE drained");
    const p = await sidecar("--shutdown-timeout", "15s", "--pool-size", "4");
    const a = await connect(p);
    const idle = await connect(p);
    await idle.client.query("SELECT 1");
    await a.client.query("BEGIN");
    await a.client.query("INSERT INTO drained VALUES (1)");
    const sleeping = a.client.query("SELECT pg_sleep(1.5)");
    await until("the long statement to run", async () => {
      const rows = await cluster.query(
        "SELECT 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(1.5)' AND state = 'active'",
      );
      return rows.length === 1;
    });
    expect(await httpStatus(p.httpPort, "/readyz")).toBe(200);

    const t0 = Date.now();
    p.signal("SIGTERM");
    await until("/readyz to fail", async () => (await httpStatus(p.httpPort, "/readyz")) === 503);
    expect(await httpStatus(p.httpPort, "/healthz")).toBe(200);
    // An idle client is at a transaction boundary: closed at once.
    await until("the idle client to be closed", () => idle.ended(), 5000);
    // The listener is closed: a new client cannot connect.
    expect(await tryLogin(p)).toBe("ECONNREFUSED");

    // The transaction in flight is not touched: its statement finishes, more work and COMMIT run.
    await sleeping;
    expect(a.ended()).toBe(false);
    await a.client.query("INSERT INTO drained VALUES (2)");
    await a.client.query("COMMIT");
    // After COMMIT the client is at a boundary: the sidecar closes it, and then exits.
    await until("the committed client to be closed", () => a.ended(), 5000);
    const exit = await p.exited;
    expect(exit, p.output()).toMatchObject({ code: 0, signal: null });
    expect(exit.at - t0).toBeLessThan(15_000);
    expect(await ids()).toEqual([1, 2]);
    expect(p.lines().some((l) => l.msg === "drained; exiting" && l.result === "drained")).toBe(
      true,
    );
  });

  it("cuts a transaction still open at shutdown_timeout, rolls it back, and exits 0", async () => {
    await cluster.query("TRUNCATE drained");
    const p = await sidecar("--shutdown-timeout", "1.5s");
    const a = await connect(p);
    await a.client.query("BEGIN");
    await a.client.query("INSERT INTO drained VALUES (3)");
    const t0 = Date.now();
    p.signal("SIGTERM");
    // Still inside its transaction, the client keeps being served until the timeout.
    await new Promise((r) => setTimeout(r, 300));
    expect((await a.client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    const exit = await p.exited;
    expect(exit, p.output()).toMatchObject({ code: 0, signal: null });
    expect(exit.at - t0).toBeGreaterThanOrEqual(1400);
    expect(exit.at - t0).toBeLessThan(5000);
    await until("the client to see the close", () => a.ended(), 5000);
    expect(p.lines().some((l) => l.msg === "drained; exiting" && l.result === "timeout")).toBe(
      true,
    );
    // The server-side transaction was rolled back (its backend closed), never committed.
    await until("the backend to go", async () => {
      const rows = await cluster.query(
        "SELECT 1 FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'",
      );
      return rows.length === 0;
    });
    expect(await ids()).toEqual([]);
  });

  it("keeps accepting and serving during min_sigterm_delay while /readyz fails, then refuses", async () => {
    await cluster.query("TRUNCATE drained");
    const p = await sidecar("--min-sigterm-delay", "3s", "--shutdown-timeout", "15s");
    const before = await connect(p);
    await before.client.query("SELECT 1");
    const t0 = Date.now();
    p.signal("SIGTERM");
    await until("/readyz to fail", async () => (await httpStatus(p.httpPort, "/readyz")) === 503);
    // The app in a classic sidecar pod got SIGTERM too and may still connect while it shuts down.
    const late = await connect(p);
    await late.client.query("BEGIN");
    await late.client.query("INSERT INTO drained VALUES (4)");
    await late.client.query("COMMIT");
    // A client connected before SIGTERM is not closed during the delay either.
    await before.client.query("INSERT INTO drained VALUES (5)");
    expect(before.ended() || late.ended()).toBe(false);
    // After the delay: the listener closes, idle clients are closed, the process exits.
    const exit = await p.exited;
    expect(exit, p.output()).toMatchObject({ code: 0, signal: null });
    expect(exit.at - t0).toBeGreaterThanOrEqual(2900);
    expect(exit.at - t0).toBeLessThan(8000);
    await until("both clients to be closed", () => before.ended() && late.ended(), 5000);
    expect(await ids()).toEqual([4, 5]);
  });

  it("closes a session-mode client at its next transaction boundary, not at the timeout", async () => {
    await cluster.query("TRUNCATE drained");
    const p = await sidecar("--pool-mode", "session", "--shutdown-timeout", "20s");
    const a = await connect(p);
    await a.client.query("BEGIN");
    await a.client.query("INSERT INTO drained VALUES (6)");
    const t0 = Date.now();
    p.signal("SIGTERM");
    await until("/readyz to fail", async () => (await httpStatus(p.httpPort, "/readyz")) === 503);
    await new Promise((r) => setTimeout(r, 200));
    expect(a.ended()).toBe(false);
    await a.client.query("COMMIT");
    await until("the session client to be closed", () => a.ended(), 5000);
    const exit = await p.exited;
    expect(exit, p.output()).toMatchObject({ code: 0, signal: null });
    expect(exit.at - t0).toBeLessThan(5000);
    expect(await ids()).toEqual([6]);
  });

  it("SIGINT stops at once: an open transaction is cut and the process exits 0", async () => {
    await cluster.query("TRUNCATE drained");
    const p = await sidecar("--shutdown-timeout", "30s");
    const a = await connect(p);
    await a.client.query("BEGIN");
    await a.client.query("INSERT INTO drained VALUES (7)");
    const t0 = Date.now();
    p.signal("SIGINT");
    const exit = await p.exited;
    expect(exit, p.output()).toMatchObject({ code: 0, signal: null });
    expect(exit.at - t0).toBeLessThan(3000);
    await until("the client to see the close", () => a.ended(), 5000);
    await until("the backend to go", async () => {
      const rows = await cluster.query(
        "SELECT 1 FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'",
      );
      return rows.length === 0;
    });
    expect(await ids()).toEqual([]);
  });

  it("a second SIGTERM does not cut the drain short; SIGINT during a drain stops at once", async () => {
    const p = await sidecar("--shutdown-timeout", "30s");
    const a = await connect(p);
    await a.client.query("BEGIN");
    const t0 = Date.now();
    p.signal("SIGTERM");
    await p.waitForLog(/^SIGTERM: draining$/);
    p.signal("SIGTERM");
    await new Promise((r) => setTimeout(r, 300));
    expect((await a.client.query("SELECT 2 AS two")).rows).toEqual([{ two: 2 }]);
    p.signal("SIGINT");
    const exit = await p.exited;
    expect(exit, p.output()).toMatchObject({ code: 0, signal: null });
    expect(exit.at - t0).toBeLessThan(5000);
  });
});
