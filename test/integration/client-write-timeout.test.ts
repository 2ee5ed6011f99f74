// client_write_timeout: a client that holds the only backend and stops reading its results is
// closed, its backend freed, and the next client is served; a client that reads slowly is not cut.
import net from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { queryFrame, RawClient, startupPacket } from "../helpers/wire.js";

/** About 64 MB of rows: far more than the socket buffers between Postgres and the client hold. */
const BIG_QUERY = "SELECT repeat('x', 1000) FROM generate_series(1, 64000)";

describe("client_write_timeout", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;

  beforeAll(async () => {
    cluster = await sharedCluster();
    // One backend: a client that sits on it blocks everyone else.
    proxy = await startProxy(cluster, {
      auth_type: "trust",
      pool_size: 1,
      client_write_timeout: "1s",
    });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  async function loggedIn(): Promise<RawClient> {
    const c = await RawClient.connect(proxy.port);
    c.write(startupPacket(3, 0, { user: cluster.superuser, database: "postgres" }));
    await c.waitForType("Z");
    return c;
  }

  it("closes a client that stops reading while it holds the backend, and serves the next", async () => {
    const stalled = await loggedIn();
    stalled.write(queryFrame(BIG_QUERY));
    stalled.socket.pause(); // reads nothing more
    await new Promise((r) => setTimeout(r, 200));

    const good = new pg.Client(proxy.pgConfig());
    await good.connect();
    const t0 = performance.now();
    const r = await good.query("SELECT 1 AS one");
    const waited = performance.now() - t0;
    await good.end();
    expect(r.rows).toEqual([{ one: 1 }]);
    // 1 s of timeout, up to 1 s until the janitor looks, and the backend replaced.
    expect(waited).toBeLessThan(8000); // without client_write_timeout: query_wait_timeout (30 s)
    stalled.socket.resume(); // to see the close behind what the kernel still holds for it
    expect(await stalled.waitClosed(5000)).toBe(true);
    stalled.destroy();
  });

  it("does not cut a client that reads its results slowly", async () => {
    // A plain socket that only counts bytes (64 MB arrive): paused 300 ms at a time,
    // then read a little.
    const socket = net.connect({ host: "127.0.0.1", port: proxy.port });
    await new Promise((r) => socket.once("connect", r));
    let tail = Buffer.alloc(0);
    let bytes = 0;
    let closed = false;
    socket.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      tail = Buffer.concat([tail, chunk]).subarray(-6);
    });
    socket.on("close", () => {
      closed = true;
    });
    socket.on("error", () => {});
    const idle = () => tail.equals(Buffer.from([0x5a, 0, 0, 0, 5, 0x49])); // ReadyForQuery('I')
    const until = async (done: () => boolean, ms: number) => {
      const end = performance.now() + ms;
      while (!done() && !closed && performance.now() < end)
        await new Promise((r) => setTimeout(r, 5));
    };
    socket.write(startupPacket(3, 0, { user: cluster.superuser, database: "postgres" }));
    await until(idle, 5000);
    expect(idle()).toBe(true);
    const loggedInBytes = bytes;
    tail = Buffer.alloc(0);
    socket.write(queryFrame("SELECT repeat('x', 1000) FROM generate_series(1, 64000)"));
    const t0 = performance.now();
    let stalls = 0;
    while (!idle() && !closed && performance.now() - t0 < 30_000) {
      socket.pause();
      await new Promise((r) => setTimeout(r, 300));
      stalls++;
      socket.resume();
      // Read until some of it has come (the sidecar's socket drains), or for 100 ms at most.
      const from = bytes;
      await until(() => idle() || bytes - from > 256 * 1024, 100);
    }
    const seconds = (performance.now() - t0) / 1000;
    socket.destroy();
    expect(closed).toBe(false);
    expect(idle()).toBe(true);
    // Every row arrived (each DataRow is 1011 bytes), through stalls that add up to more than the
    // timeout: each ended in a drain, which restarts the clock.
    expect(bytes - loggedInBytes).toBeGreaterThan(64000 * 1011);
    expect(stalls).toBeGreaterThanOrEqual(4);
    expect(seconds).toBeGreaterThan(1.2);
  });
});
