// Query cancellation through the sidecar: a client's CancelRequest (with the key the sidecar issued)
// reaches the server running its query; a wrong key cancels nothing.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { python3Psycopg } from "../helpers/processes.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { until } from "../helpers/until.js";
import { cancelPacket, RawClient } from "../helpers/wire.js";

/** The BackendKeyData a pg client received (the sidecar's key, not the server's). */
function keyOf(c: pg.Client): { pid: number; secret: number } {
  // biome-ignore lint/suspicious/noExplicitAny: processID/secretKey are untyped in @types/pg
  const any = c as any;
  return { pid: any.processID as number, secret: any.secretKey as number };
}

/** Sends a CancelRequest on a new connection and waits until the sidecar closes it. */
async function sendCancel(port: number, pid: number, secret: number): Promise<void> {
  const raw = await RawClient.connect(port);
  const s = Buffer.alloc(4);
  s.writeInt32BE(secret | 0, 0);
  raw.write(cancelPacket(pid, s));
  // The server answers a CancelRequest with nothing and closes; so does the sidecar.
  const closed = await raw.waitClosed(5000);
  raw.destroy();
  expect(closed).toBe(true);
  expect(raw.received.length).toBe(0);
}

/** pg_stat_activity rows of the cluster running pg_sleep (seen directly, not through the proxy). */
async function sleepers(cluster: SharedCluster): Promise<number> {
  const rows = await cluster.query(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%' AND state = 'active' AND pid <> pg_backend_pid()",
  );
  return rows[0].n as number;
}

describe("cancel", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;

  beforeAll(async () => {
    cluster = await sharedCluster();
    proxy = await startProxy(cluster, { pool_size: 3 });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it("cancels a running pg_sleep within 1 s with 57014, and the client's next query works", async () => {
    const c = new pg.Client(proxy.pgConfig());
    c.on("error", () => {});
    await c.connect();
    try {
      const query = new pg.Query("SELECT pg_sleep(30)");
      const running = new Promise<{ err: pg.DatabaseError; at: number } | null>((resolve) => {
        query.on("error", (e: Error) =>
          resolve({ err: e as pg.DatabaseError, at: performance.now() }),
        );
        query.on("end", () => resolve(null));
      });
      c.query(query);
      await until("one pg_sleep running", async () => (await sleepers(cluster)) === 1, 5000, 50);

      // node-postgres cancels through a second Client on a new connection (Client#cancel).
      const canceller = new pg.Client(proxy.pgConfig());
      const sentAt = performance.now();
      // biome-ignore lint/suspicious/noExplicitAny: Client#cancel is undocumented and untyped
      (canceller as any).cancel(c, query);
      const outcome = await running;
      expect(outcome).not.toBeNull();
      expect(outcome?.err.code).toBe("57014");
      expect(outcome?.err.message).toBe("canceling statement due to user request");
      expect((outcome?.at ?? Number.POSITIVE_INFINITY) - sentAt).toBeLessThan(1000);

      const r = await c.query("SELECT 'after cancel' AS r");
      expect(r.rows).toEqual([{ r: "after cancel" }]);
      expect(await sleepers(cluster)).toBe(0);
    } finally {
      await c.end().catch(() => {});
    }
  });

  it("cancels with a CancelRequest sent over a raw socket using the issued key", async () => {
    const c = new pg.Client(proxy.pgConfig());
    c.on("error", () => {});
    await c.connect();
    try {
      const running = c.query("SELECT pg_sleep(30)").then(
        () => null,
        (e: pg.DatabaseError) => e,
      );
      await until("one pg_sleep running", async () => (await sleepers(cluster)) === 1, 5000, 50);
      const { pid, secret } = keyOf(c);
      const t0 = performance.now();
      await sendCancel(proxy.port, pid, secret);
      const err = await running;
      expect(performance.now() - t0).toBeLessThan(1000);
      expect(err?.code).toBe("57014");
      expect((await c.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    } finally {
      await c.end().catch(() => {});
    }
  });

  it("ignores a CancelRequest with a wrong secret or a wrong pid", async () => {
    const c = new pg.Client(proxy.pgConfig());
    c.on("error", () => {});
    await c.connect();
    try {
      let settled = false;
      const running = c.query("SELECT pg_sleep(30)").then(
        () => {
          settled = true;
          return null;
        },
        (e: pg.DatabaseError) => {
          settled = true;
          return e;
        },
      );
      await until("one pg_sleep running", async () => (await sleepers(cluster)) === 1, 5000, 50);
      const { pid, secret } = keyOf(c);
      await sendCancel(proxy.port, pid, secret ^ 0x5a5a5a5a);
      await sendCancel(proxy.port, pid === 1 ? 2 : pid - 1, secret);
      await new Promise((r) => setTimeout(r, 1000));
      expect(settled).toBe(false);
      expect(await sleepers(cluster)).toBe(1);

      // The right key still works afterwards.
      await sendCancel(proxy.port, pid, secret);
      expect((await running)?.code).toBe("57014");
    } finally {
      await c.end().catch(() => {});
    }
  });

  it("cancels a psycopg query with conn.cancel() (libpq PQcancel)", async () => {
    const script = `
import sys, threading, time, psycopg
conn = psycopg.connect(sys.argv[1] if len(sys.argv) > 1 else __import__("os").environ["DSN"], autocommit=True)
threading.Timer(0.5, conn.cancel).start()
t0 = time.monotonic()
try:
    conn.execute("SELECT pg_sleep(30)")
    print("NOT CANCELLED")
except psycopg.errors.QueryCanceled as e:
    print("CANCELLED", e.sqlstate, round(time.monotonic() - t0 - 0.5, 3))
print("NEXT", conn.execute("SELECT 7").fetchone()[0])
conn.close()
`;
    const r = await python3Psycopg(script, { DSN: proxy.url() }, { timeoutMs: 30_000 });
    expect(r.stderr).toBe("");
    const lines = r.stdout.trim().split("\n");
    const [word, sqlstate, seconds] = lines[0].split(" ");
    expect(word).toBe("CANCELLED");
    expect(sqlstate).toBe("57014");
    expect(Number(seconds)).toBeLessThan(1);
    expect(lines[1]).toBe("NEXT 7");
  });
});
