// Session state that transaction pooling cannot carry pins the client to its server.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

describe("pinning in transaction mode", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.query(
      "CREATE SCHEMA pinning_other; CREATE TABLE pinning_other.t (v text); INSERT INTO pinning_other.t VALUES ('other')",
    );
    proxy = await startProxy(cluster, { pool_size: 6 });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  const connect = async () => {
    const c = new pg.Client(proxy.pgConfig());
    await c.connect();
    return c;
  };
  const pid = async (c: pg.Client) =>
    (await c.query("SELECT pg_backend_pid() AS p")).rows[0].p as number;

  it("SET search_path, LISTEN, a temp table and an advisory lock each behave as on a direct connection", async () => {
    const setter = await connect();
    await setter.query("SET search_path = pinning_other, public");
    const listener = await connect();
    await listener.query("LISTEN jobs");
    const temp = await connect();
    await temp.query("CREATE TEMP TABLE scratch (v int)");
    await temp.query("INSERT INTO scratch VALUES (1), (2)");
    const locker = await connect();
    await locker.query("SELECT pg_advisory_lock(4242)");

    // Unpinned clients keep sharing the remaining servers meanwhile.
    const free = await Promise.all(Array.from({ length: 6 }, () => connect()));
    for (let i = 0; i < 20; i++) await Promise.all(free.map((c) => c.query("SELECT 1")));

    const notified = new Promise<pg.Notification>((resolve) =>
      listener.on("notification", resolve),
    );
    const notifier = free[0];
    await notifier.query("NOTIFY jobs, 'hello'");
    expect((await notified).payload).toBe("hello");

    for (let i = 0; i < 5; i++) {
      expect((await setter.query("SELECT v FROM t")).rows[0].v).toBe("other");
      expect((await temp.query("SELECT count(*)::int AS n FROM scratch")).rows[0].n).toBe(2);
    }
    // Pins are visible per client in the admin view.
    const rows = proxy.proxy.console.clientRows();
    const pins = rows
      .map((r) => r.pins)
      .filter(Boolean)
      .sort();
    // A session SET travels with its client and LISTEN is served by the pool's LISTEN server
    // (issue 13): neither pins a server any more.
    expect(pins, JSON.stringify(rows)).toEqual(["advisory_lock", "temp_table"]);
    // The lock is held by the locker's session: another session cannot take it (pg_try_advisory_lock
    // is session-level too, so that client is pinned as well: conservative, never wrong).
    expect((await notifier.query("SELECT pg_try_advisory_lock(4242) AS ok")).rows[0].ok).toBe(
      false,
    );
    const lockerPid = await pid(locker);
    expect(await pid(locker)).toBe(lockerPid);

    await Promise.all([setter, listener, temp, locker, ...free].map((c) => c.end()));
    // After they leave, their servers were cleaned (DISCARD ALL) and the lock is free again.
    const other = await connect();
    expect((await other.query("SELECT pg_try_advisory_lock(4242) AS ok")).rows[0].ok).toBe(true);
    await other.query("SELECT pg_advisory_unlock_all()");
    await other.end();
  });
});
