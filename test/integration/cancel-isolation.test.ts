// A CancelRequest reaches only the backend still serving the client that sent it: a client
// between units (its backend back in the pool, now running someone else's query) cancels nothing.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { until } from "../helpers/until.js";
import { cancelPacket, RawClient } from "../helpers/wire.js";

/** The BackendKeyData a pg client received (the sidecar's key). */
function keyOf(c: pg.Client): { pid: number; secret: number } {
  // biome-ignore lint/suspicious/noExplicitAny: processID/secretKey are untyped in @types/pg
  const any = c as any;
  return { pid: any.processID as number, secret: any.secretKey as number };
}

async function sendCancel(port: number, key: { pid: number; secret: number }): Promise<void> {
  const raw = await RawClient.connect(port);
  const s = Buffer.alloc(4);
  s.writeInt32BE(key.secret | 0, 0);
  raw.write(cancelPacket(key.pid, s));
  await raw.waitClosed(5000);
  raw.destroy();
}

async function sleepers(cluster: SharedCluster): Promise<number> {
  const rows = await cluster.query(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%' AND state = 'active' AND pid <> pg_backend_pid()",
  );
  return rows[0].n as number;
}

describe("cancel isolation", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;

  beforeAll(async () => {
    cluster = await sharedCluster();
    // One backend: whatever client A used is what client B runs on next.
    proxy = await startProxy(cluster, { pool_size: 1 });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it("a client between units cancels nothing, not the next client's query on its old backend", async () => {
    const a = new pg.Client(proxy.pgConfig());
    const b = new pg.Client(proxy.pgConfig());
    a.on("error", () => {});
    b.on("error", () => {});
    await a.connect();
    await b.connect();
    try {
      const [{ pid: serverPid }] = (await a.query("SELECT pg_backend_pid() AS pid")).rows;
      const running = b.query("SELECT pg_sleep(1.5), pg_backend_pid() AS pid");
      await until("the pg_sleep to run", async () => (await sleepers(cluster)) > 0, 5000, 20);
      await sendCancel(proxy.port, keyOf(a));
      const result = await running; // not 57014 "canceling statement due to user request"
      expect(result.rows[0].pid).toBe(serverPid);
    } finally {
      await a.end().catch(() => {});
      await b.end().catch(() => {});
    }
  });

  it("the same cancel during the client's own query still cancels it", async () => {
    const a = new pg.Client(proxy.pgConfig());
    a.on("error", () => {});
    await a.connect();
    try {
      const running = a.query("SELECT pg_sleep(30)").then(
        () => null,
        (e: pg.DatabaseError) => e,
      );
      await until("the pg_sleep to run", async () => (await sleepers(cluster)) > 0, 5000, 20);
      await sendCancel(proxy.port, keyOf(a));
      expect((await running)?.code).toBe("57014");
      expect((await a.query("SELECT 1 AS v")).rows[0].v).toBe(1);
    } finally {
      await a.end().catch(() => {});
    }
  });
});
