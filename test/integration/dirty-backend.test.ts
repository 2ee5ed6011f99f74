// A client that dies while its server is mid-transaction, mid-query or pinned never hands that
// server on dirty: locks are released promptly and the next client of the pool starts clean.
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { until } from "../helpers/until.js";
import { frame, RawClient, startupPacket } from "../helpers/wire.js";

/** Kills a pg client's socket without a Terminate, as a crashed process would. */
function kill(c: pg.Client): void {
  // biome-ignore lint/suspicious/noExplicitAny: the socket sits on an untyped field
  (c as any).connection.stream.destroy();
}

async function connect(proxy: TestProxy): Promise<pg.Client> {
  const c = new pg.Client({ ...proxy.pgConfig(), connectionTimeoutMillis: 5000 });
  c.on("error", () => {});
  await c.connect();
  return c;
}

/** Resolves with `p`, or rejects when it takes longer than `ms`. */
function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** What a fresh server session looks like, asked in one statement (an implicit transaction). */
const CLEAN_STATE = `SELECT pg_current_xact_id_if_assigned() IS NULL AS no_xid,
  current_setting('transaction_isolation') AS isolation,
  now() = statement_timestamp() AS fresh_transaction,
  current_setting('work_mem') AS work_mem,
  current_setting('statement_timeout') AS statement_timeout`;
const CLEAN = {
  no_xid: true,
  isolation: "read committed",
  fresh_transaction: true,
  work_mem: "4MB",
  statement_timeout: "0",
};

describe("dirty backends after a client dies", () => {
  let cluster: PgCluster;
  let proxy: TestProxy;

  beforeAll(async () => {
    cluster = await startCluster();
    await cluster.query("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)");
    await cluster.query("INSERT INTO t VALUES (1, 0)");
    // One server, so the next client necessarily gets the one the dead client left.
    proxy = await startProxy(cluster, {
      pool_size: 1,
      pool_mode: "transaction",
      // Raw-socket clients log in without a SCRAM exchange.
      auth_type: "trust",
    });
  });
  afterAll(async () => {
    await proxy?.stop();
    await cluster?.destroy();
  });

  beforeEach(async () => {
    // Each test starts with a pool whose one server is usable.
    const c = await connect(proxy);
    await within(5000, c.query("SELECT 1"), "warm-up query");
    await c.end();
  });

  /**
   * Updates row 1 on a direct connection, waiting at most `ms` for its lock (lock_timeout):
   * succeeds only if whoever held the row lock let go within that time.
   */
  async function updateDirectly(ms: number): Promise<number> {
    const t0 = performance.now();
    await cluster.query(`SET lock_timeout = '${ms}ms'; UPDATE t SET v = v + 1 WHERE id = 1`);
    return performance.now() - t0;
  }

  /** Backends (other than the asker) that hold any lock on table t. */
  async function lockersOfT(): Promise<number> {
    const rows = await cluster.query(
      "SELECT count(*)::int AS n FROM pg_locks WHERE relation = 't'::regclass AND pid <> pg_backend_pid()",
    );
    return rows[0].n as number;
  }

  it("releases the row lock within 1 s of a client killed mid-transaction, and the next client starts clean", async () => {
    const a = await connect(proxy);
    await a.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
    await a.query("SET LOCAL statement_timeout = '123s'");
    await a.query("SELECT v FROM t WHERE id = 1 FOR UPDATE");
    expect(await lockersOfT()).toBe(1);
    kill(a);

    const waited = await updateDirectly(1000);
    expect(waited).toBeLessThan(1500);

    // Another client through the proxy, on the same (only) server.
    const b = await connect(proxy);
    try {
      const upd = await within(
        1000,
        b.query("UPDATE t SET v = v + 1 WHERE id = 1 RETURNING v"),
        "UPDATE through the proxy",
      );
      expect(upd.rowCount).toBe(1);
      const state = await b.query(CLEAN_STATE);
      expect(state.rows).toEqual([CLEAN]);
    } finally {
      await b.end().catch(() => {});
    }
    expect(await lockersOfT()).toBe(0);
  });

  it("recovers within 2 s from a client killed during a long query, without reusing the busy server", async () => {
    const a = await connect(proxy);
    const sleeping = a.query("SELECT pg_sleep(10)").catch(() => null);
    await until("the pg_sleep to run", async () => (await runningSleeps()) > 0, 5000, 50);
    expect(await runningSleeps()).toBe(1);
    kill(a);
    await sleeping;

    const t0 = performance.now();
    const b = await connect(proxy);
    try {
      const r = await within(2000, b.query(`${CLEAN_STATE}, 'b' AS who`), "next query");
      expect(performance.now() - t0).toBeLessThan(2000);
      // Only b's own row: nothing of a's pg_sleep result arrives in front of it.
      expect(r.rows).toEqual([{ ...CLEAN, who: "b" }]);
      expect((await b.query("SELECT 2 AS two")).rows).toEqual([{ two: 2 }]);
    } finally {
      await b.end().catch(() => {});
    }
    // The sleep was cancelled or its server closed; it does not run on for 10 s.
    await until("the pg_sleep to end", async () => (await runningSleeps()) === 0, 2000, 50);
    expect(await runningSleeps()).toBe(0);
  });

  it("releases locks of a client killed after an extended-protocol Execute without Sync", async () => {
    // Until Sync, the server keeps the implicit transaction of Parse/Bind/Execute open, with its
    // row lock, although the last ReadyForQuery it sent said idle.
    const raw = await RawClient.connect(proxy.port);
    raw.write(startupPacket(3, 0, { user: cluster.superuser, database: "postgres" }));
    expect(await raw.waitForType("Z")).toBeDefined();
    raw.write(
      Buffer.concat([
        frame("P", "\0SELECT v FROM t WHERE id = 1 FOR UPDATE\0\0\0"),
        frame("B", "\0\0\0\0\0\0\0\0"),
        frame("E", "\0\0\0\0\0"),
        frame("H"),
      ]),
    );
    const done = await raw.waitForType("C");
    expect(done?.body.toString("latin1")).toBe("SELECT 1\0");
    expect(await lockersOfT()).toBe(1);
    raw.destroy();

    const waited = await updateDirectly(1000);
    expect(waited).toBeLessThan(1500);

    const b = await connect(proxy);
    try {
      const state = await within(2000, b.query(CLEAN_STATE), "next query");
      expect(state.rows).toEqual([CLEAN]);
    } finally {
      await b.end().catch(() => {});
    }
  });

  it("never commits the write of a client killed after Execute and before Sync", async () => {
    // Postgres aborts such an implicit transaction when its client disconnects; so must we.
    const raw = await RawClient.connect(proxy.port);
    raw.write(startupPacket(3, 0, { user: cluster.superuser, database: "postgres" }));
    expect(await raw.waitForType("Z")).toBeDefined();
    raw.write(
      Buffer.concat([
        frame("P", "\0INSERT INTO t VALUES (2, 0)\0\0\0"),
        frame("B", "\0\0\0\0\0\0\0\0"),
        frame("E", "\0\0\0\0\0"),
        frame("H"),
      ]),
    );
    const done = await raw.waitForType("C");
    expect(done?.body.toString("latin1")).toBe("INSERT 0 1\0");
    raw.destroy();

    // The next client of the pool runs an ordinary statement.
    const b = await connect(proxy);
    try {
      await within(2000, b.query("SELECT 1"), "next query");
    } finally {
      await b.end().catch(() => {});
    }
    try {
      const rows = await cluster.query("SELECT count(*)::int AS n FROM t WHERE id = 2");
      expect(rows).toEqual([{ n: 0 }]);
    } finally {
      await cluster.query("DELETE FROM t WHERE id = 2");
    }
  });

  it("does not pass on session settings or advisory locks of a killed client", async () => {
    const a = await connect(proxy);
    await a.query("SET work_mem = '1234kB'");
    await a.query("SELECT pg_advisory_lock(4242)");
    expect((await a.query("SHOW work_mem")).rows).toEqual([{ work_mem: "1234kB" }]);
    kill(a);

    const t0 = performance.now();
    let free = false;
    while (!free && performance.now() - t0 < 1000) {
      const rows = await cluster.query(
        "SELECT pg_try_advisory_lock(4242) AS got, pg_advisory_unlock_all() IS NULL AS unlocked",
      );
      free = rows[0].got === true;
    }
    expect(free).toBe(true);

    const b = await connect(proxy);
    try {
      const state = await within(2000, b.query(CLEAN_STATE), "next query");
      expect(state.rows).toEqual([CLEAN]);
    } finally {
      await b.end().catch(() => {});
    }
  });

  it("does not pass on the failed transaction of a killed client", async () => {
    const a = await connect(proxy);
    await a.query("BEGIN");
    await expect(a.query("SELECT 1/0")).rejects.toThrow(/division by zero/);
    kill(a);

    const b = await connect(proxy);
    try {
      const state = await within(2000, b.query(CLEAN_STATE), "next query");
      expect(state.rows).toEqual([CLEAN]);
    } finally {
      await b.end().catch(() => {});
    }
  });

  async function runningSleeps(): Promise<number> {
    const rows = await cluster.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%' AND state = 'active' AND pid <> pg_backend_pid()",
    );
    return rows[0].n as number;
  }
});
