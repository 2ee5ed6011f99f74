// SIGHUP reloads the config file under load (pool size, users, log level) without dropping a client;
// an invalid file is rejected, logged, and the running configuration stays.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SidecarProcess, spawnSidecar } from "../helpers/lifecycle-process.js";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { until } from "../helpers/until.js";

const CLIENTS = 50;

describe("SIGHUP reload (CLI child process)", () => {
  let cluster: PgCluster;
  let dir: string;
  let file: string;
  let p: SidecarProcess;
  // 50 clients run queries (half in BEGIN..COMMIT, half single statements) across every reload.
  let stop = false;
  let queries = 0;
  const errors: Error[] = [];
  const busy: pg.Client[] = [];
  let work: Promise<void>[] = [];

  const config = (lines: string[]) => {
    writeFileSync(
      file,
      [
        `upstream: "${cluster.url({ database: "postgres" })}"`,
        `admin_users: [${cluster.superuser}]`,
        ...lines,
        "",
      ].join("\n"),
    );
  };

  beforeAll(async () => {
    cluster = await startCluster();
    await cluster.createUser("late_user", "late-pw");
    dir = mkdtempSync(join(tmpdir(), "pgsidecar-reload-"));
    file = join(dir, "pgsidecar.yaml");
    config(["pool_size: 2", "log_level: info"]);
    p = await spawnSidecar([
      "--config",
      file,
      "--listen",
      "127.0.0.1:0",
      "--http-listen",
      "127.0.0.1:0",
    ]);
    await startWork();
  });
  afterAll(async () => {
    stop = true;
    await Promise.all(work);
    await Promise.all(busy.map((c) => c.end().catch(() => {})));
    p?.kill();
    await cluster?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function client(user = cluster.superuser, password = cluster.password, database = "postgres") {
    const c = new pg.Client({ host: "127.0.0.1", port: p.port, user, password, database });
    c.on("error", () => {});
    return c;
  }

  async function poolSize(): Promise<number> {
    const admin = client(cluster.superuser, cluster.password, "pgsidecar");
    await admin.connect();
    try {
      const { rows } = await admin.query("SHOW POOLS");
      const row = rows.find((r) => r.database === "postgres" && r.user === cluster.superuser);
      return Number(row?.pool_size ?? 0);
    } finally {
      await admin.end();
    }
  }

  /** Server connections the sidecar holds to the cluster right now. */
  async function servers(): Promise<number> {
    return (await cluster.backendPids(cluster.superuser)).length;
  }

  /** Signals HUP and waits for the reload's outcome line after the ones already logged. */
  async function hup(): Promise<{ ok: boolean; line: Record<string, unknown> }> {
    const seen = p.lines().length;
    p.signal("SIGHUP");
    let found: Record<string, unknown> | undefined;
    await until("the reload to be logged", () => {
      found = p
        .lines()
        .slice(seen)
        .find((l) => l.msg === "configuration reloaded" || /^reload failed/.test(l.msg));
      return found !== undefined;
    });
    const line = found as Record<string, unknown>;
    return { ok: line.msg === "configuration reloaded", line };
  }

  async function startWork(): Promise<void> {
    for (let i = 0; i < CLIENTS; i++) busy.push(client());
    await Promise.all(busy.map((c) => c.connect()));
    work = busy.map(async (c, i) => {
      while (!stop) {
        try {
          if (i % 2 === 0) {
            await c.query("BEGIN");
            await c.query("SELECT pg_sleep(0.002)");
            const r = await c.query("SELECT $1::int AS n", [i]);
            if (r.rows[0].n !== i) throw new Error(`client ${i} got ${r.rows[0].n}`);
            await c.query("COMMIT");
          } else {
            const r = await c.query("SELECT $1::int AS n, pg_sleep(0.002)", [i]);
            if (r.rows[0].n !== i) throw new Error(`client ${i} got ${r.rows[0].n}`);
          }
          queries++;
        } catch (err) {
          errors.push(err as Error);
          return;
        }
      }
    });
  }

  /** The most servers seen over `ms`. */
  async function peakServers(ms: number): Promise<number> {
    const end = Date.now() + ms;
    let peak = 0;
    while (Date.now() < end) {
      peak = Math.max(peak, await servers());
      await new Promise((r) => setTimeout(r, 50));
    }
    return peak;
  }

  it("grows the pool on SIGHUP (SHOW POOLS pool_size, servers opened) while 50 clients run", async () => {
    expect(await poolSize()).toBe(2);
    expect(await peakServers(1000)).toBeLessThanOrEqual(2);
    const before = queries;
    config(["pool_size: 6", "log_level: info"]);
    expect((await hup()).ok).toBe(true);
    expect(await poolSize()).toBe(6);
    await until("the pool to grow past 2 servers", async () => (await servers()) > 2, 10_000);
    expect(await peakServers(1000)).toBeLessThanOrEqual(6);
    expect(queries).toBeGreaterThan(before);
    expect(errors).toEqual([]);
  });

  it("rejects an invalid file on SIGHUP, logs why, and keeps the running configuration", async () => {
    config(["pool_size: lots", "log_level: info"]);
    const bad = await hup();
    expect(bad.ok).toBe(false);
    expect(String(bad.line.err)).toMatch(/pool_size = "lots"/);
    config(["pool_size: [6", "log_level: info"]);
    const broken = await hup();
    expect(broken.ok).toBe(false);
    expect(String(broken.line.err)).toMatch(/pgsidecar\.yaml/);
    config(["pool_size: 6", "min_pool_size: 7"]);
    expect((await hup()).ok).toBe(false);
    expect(await poolSize()).toBe(6);
    const before = queries;
    await until("more queries", () => queries > before + CLIENTS);
    expect(errors).toEqual([]);
  });

  it("applies users and log level on SIGHUP: a new user logs in, debug lines appear", async () => {
    const late = client("late_user", "late-pw");
    await expect(late.connect()).rejects.toThrow();
    config([
      "pool_size: 3",
      "log_level: debug",
      "users:",
      "  - name: late_user",
      '    password: "late-pw"',
    ]);
    const linesBefore = p.lines().length;
    expect((await hup()).ok).toBe(true);
    expect(await poolSize()).toBe(3);
    const late2 = client("late_user", "late-pw");
    await late2.connect();
    expect((await late2.query("SELECT current_user AS u")).rows).toEqual([{ u: "late_user" }]);
    await late2.end();
    await until("a debug line", () =>
      p
        .lines()
        .slice(linesBefore)
        .some((l) => l.level === 20),
    );
    expect(errors).toEqual([]);
  });

  it("closes servers above a lowered pool_size as they come back", async () => {
    await until("the pool to shrink to 3 servers", async () => (await servers()) <= 3, 10_000);
  });

  it("the 50 clients saw no error across the reloads, and SIGTERM still exits 0", async () => {
    stop = true;
    await Promise.all(work);
    expect(errors).toEqual([]);
    expect(queries).toBeGreaterThan(CLIENTS * 5);
    await Promise.all(busy.splice(0).map((c) => c.end().catch(() => {})));
    p.signal("SIGTERM");
    const exit = await p.exited;
    expect(exit, p.output()).toMatchObject({ code: 0, signal: null });
  });
});
