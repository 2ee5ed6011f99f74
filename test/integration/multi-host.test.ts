// Several hosts and the role we want (issue 12 items 1-2): libpq's multi-host upstream with
// target_session_attrs, and a writer that turns read-only at run time (as after a failover) is
// retired while its clients' work goes to the new writer, without a 25006 reaching them.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findFreePort, type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { until } from "../helpers/until.js";

const APP = { user: "app", password: "app-pw" };

describe("multi-host upstream", () => {
  let a: PgCluster; // starts as the writer
  let b: PgCluster; // starts read-only (default_transaction_read_only = on)
  const proxies: TestProxy[] = [];

  beforeAll(async () => {
    a = await startCluster();
    b = await startCluster();
    for (const c of [a, b]) {
      await c.createUser(APP.user, APP.password, { superuser: true });
      await c.query("CREATE TABLE IF NOT EXISTS t (v int)");
    }
    await b.query("ALTER SYSTEM SET default_transaction_read_only = on");
    await b.query("SELECT pg_reload_conf()");
  });
  afterAll(async () => {
    for (const p of proxies) await p.stop();
    await a?.destroy();
    await b?.destroy();
  });

  const upstream = (hosts: string, attrs: string) =>
    `postgres://${APP.user}:${APP.password}@${hosts}/postgres?target_session_attrs=${attrs}`;
  const start = async (url: string, settings: Record<string, unknown> = {}) => {
    const p = await startProxy(a, { pool_size: 3, ...settings }, url);
    proxies.push(p);
    return p;
  };
  const client = async (p: TestProxy) => {
    const c = new pg.Client(p.pgConfig(APP));
    await c.connect();
    return c;
  };
  const port = async (c: pg.Client) => (await c.query("SELECT inet_server_port() AS p")).rows[0].p;

  it("read-write skips a read-only first host; read-only and prefer-standby pick it; a dead host is skipped", async () => {
    const dead = await findFreePort();
    const hosts = `127.0.0.1:${dead},127.0.0.1:${b.port},127.0.0.1:${a.port}`;
    const rw = await client(await start(upstream(hosts, "read-write")));
    for (let i = 0; i < 5; i++) expect(await port(rw)).toBe(a.port);
    await rw.query("INSERT INTO t VALUES (1)");
    const ro = await client(await start(upstream(hosts, "read-only")));
    expect(await port(ro)).toBe(b.port);
    const any = await client(await start(upstream(hosts, "any")));
    expect(await port(any)).toBe(b.port); // the first host that answers
    await Promise.all([rw, ro, any].map((c) => c.end()));
  });

  it("a writer that turns read-only is retired: writes move to the new writer, no client sees 25006", async () => {
    const p = await start(upstream(`127.0.0.1:${a.port},127.0.0.1:${b.port}`, "read-write"));
    const clients = await Promise.all(Array.from({ length: 4 }, () => client(p)));
    for (const c of clients) expect(await port(c)).toBe(a.port);
    const errors: string[] = [];
    const landed = new Set<number>();
    let stop = false;
    const load = Promise.all(
      clients.map(async (c) => {
        for (let i = 0; i < 2000 && !stop; i++) {
          try {
            const r = await c.query("INSERT INTO t VALUES (2) RETURNING inet_server_port() AS p");
            landed.add(r.rows[0].p);
          } catch (e) {
            errors.push(`${(e as { code?: string }).code}: ${(e as Error).message}`);
          }
        }
      }),
    );
    await new Promise((r) => setTimeout(r, 300));
    // The switchover: the writer becomes read-only, the reader becomes the writer.
    await b.query("ALTER SYSTEM SET default_transaction_read_only = off");
    await b.query("SELECT pg_reload_conf()");
    await a.query("ALTER SYSTEM SET default_transaction_read_only = on");
    await a.query("SELECT pg_reload_conf()");
    await until("writes on the new writer", () => landed.has(b.port), 15_000);
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await load;
    expect(errors).toEqual([]);
    expect(landed.has(b.port)).toBe(true);
    const closed = p.proxy.metrics.pool({ database: "postgres", user: APP.user }).serversClosed;
    expect(closed.get("role_changed") ?? 0).toBeGreaterThan(0);
    await Promise.all(clients.map((c) => c.end()));
  });
});
