// LISTEN/NOTIFY in transaction mode without pins (issue 13 item 1): one LISTEN server per pool
// fans notifications out to the clients subscribed to each channel.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { python3Psycopg } from "../helpers/processes.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { startRelay } from "../helpers/relay.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { until } from "../helpers/until.js";

describe("LISTEN/NOTIFY in transaction mode", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  beforeAll(async () => {
    cluster = await sharedCluster();
    proxy = await startProxy(cluster, { pool_size: 2 });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  const connect = async () => {
    const c = new pg.Client(proxy.pgConfig());
    await c.connect();
    return c;
  };
  const backends = async () =>
    (
      await cluster.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
      )
    )[0].n as number;

  it("20 listeners over pool_size 2 get every NOTIFY in order while running queries; no pins", async () => {
    const listeners = await Promise.all(Array.from({ length: 20 }, () => connect()));
    const got: string[][] = listeners.map(() => []);
    listeners.forEach((c, i) => {
      c.on("notification", (n) => got[i].push(n.payload ?? ""));
    });
    await Promise.all(listeners.map((c) => c.query("LISTEN jobs")));
    const notifier = await connect();
    const busy = Promise.all(
      listeners.map(async (c) => {
        for (let k = 0; k < 20; k++) await c.query("SELECT pg_sleep(0.001)");
      }),
    );
    for (let k = 0; k < 50; k++) await notifier.query(`NOTIFY jobs, '${k}'`);
    await busy;
    const want = Array.from({ length: 50 }, (_, k) => String(k));
    await until("every notification", () => got.every((g) => g.length >= 50));
    for (const g of got) expect(g).toEqual(want);
    expect(await backends()).toBeLessThanOrEqual(3); // the pool's 2 and the LISTEN server
    const pins = proxy.proxy.console.clientRows().filter((r) => r.pins);
    expect(pins).toEqual([]);
    await Promise.all([...listeners, notifier].map((c) => c.end()));
  });

  it("a notification waits until the listener's transaction ends; UNLISTEN stops them", async () => {
    const listener = await connect();
    const got: string[] = [];
    listener.on("notification", (n) => got.push(n.payload ?? ""));
    await listener.query("LISTEN later");
    const notifier = await connect();
    await listener.query("BEGIN");
    await notifier.query("NOTIFY later, 'one'");
    await new Promise((r) => setTimeout(r, 200));
    await listener.query("SELECT 1");
    expect(got).toEqual([]); // Postgres delivers between transactions, never inside one
    await listener.query("COMMIT");
    await until("the notification after COMMIT", () => got.length === 1);
    await listener.query("UNLISTEN later");
    await notifier.query("NOTIFY later, 'two'");
    await new Promise((r) => setTimeout(r, 200));
    await listener.query("SELECT 1");
    expect(got).toEqual(["one"]);
    await Promise.all([listener, notifier].map((c) => c.end()));
  });

  it("the LISTEN server killed mid-run is replaced: clients are told, later notifications arrive", async () => {
    const listener = await connect();
    const got: string[] = [];
    const notices: string[] = [];
    listener.on("notification", (n) => got.push(n.payload ?? ""));
    listener.on("notice", (n) => notices.push(n.message ?? ""));
    await listener.query("LISTEN survive");
    const notifier = await connect();
    await notifier.query("NOTIFY survive, 'before'");
    await until("the first notification", () => got.length === 1);
    const hubPids = await cluster.query(
      "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%'",
    );
    expect(hubPids.length).toBe(1);
    await cluster.query("SELECT pg_terminate_backend($1)", [hubPids[0].pid]);
    await until("the notice", () => notices.length > 0);
    expect(notices[0]).toMatch(/notifications may have been missed/);
    await until("a new LISTEN server", async () => {
      const rows = await cluster.query(
        "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> $1",
        [hubPids[0].pid],
      );
      return rows.length === 1;
    });
    await notifier.query("NOTIFY survive, 'after'");
    await until("the notification after the replacement", () => got.length === 2);
    expect(got).toEqual(["before", "after"]);
    expect(await listener.query("SELECT 1 AS n")).toBeTruthy();
    await Promise.all([listener, notifier].map((c) => c.end()));
  });

  it("a LISTEN while no server can be reached gets 08006 after query_wait_timeout; the connection lives on", async () => {
    const relay = await startRelay({ host: "127.0.0.1", port: cluster.port });
    const p = await startProxy(
      cluster,
      { pool_size: 1, query_wait_timeout: "1s", server_login_retry: "50ms" },
      cluster.url({ database: "postgres" }).replace(`:${cluster.port}/`, `:${relay.port}/`),
    );
    try {
      const c = new pg.Client(p.pgConfig());
      await c.connect();
      relay.refuse(true);
      const started = Date.now();
      await expect(c.query("LISTEN nowhere")).rejects.toMatchObject({ code: "08006" });
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      relay.restore();
      const got: string[] = [];
      c.on("notification", (n) => got.push(n.payload ?? ""));
      await c.query("LISTEN nowhere");
      await cluster.query("NOTIFY nowhere, 'back'");
      await until("the notification", () => got.length === 1);
      await c.end();
    } finally {
      await p.stop();
      await relay.close();
    }
  });

  it("psycopg conn.notifies() receives NOTIFYs sent by another client", async () => {
    const script = `
import json, os, threading, time, psycopg
dsn = os.environ["DSN"]
got = []
with psycopg.connect(dsn, autocommit=True) as listener:
    listener.execute("LISTEN py")
    def send():
        with psycopg.connect(dsn, autocommit=True) as n:
            for k in range(10):
                n.execute("SELECT pg_notify('py', %s)", (str(k),))
    t = threading.Thread(target=send)
    t.start()
    gen = listener.notifies()  # psycopg 3.1: no timeout (the test's process timeout bounds it)
    for note in gen:
        got.append(note.payload)
        if len(got) == 10:
            gen.close()
            break
    t.join()
print(json.dumps(got))
`;
    const r = await python3Psycopg(script, { DSN: proxy.url() }, { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split("\n").pop() as string)).toEqual(
      Array.from({ length: 10 }, (_, k) => String(k)),
    );
  });
});
