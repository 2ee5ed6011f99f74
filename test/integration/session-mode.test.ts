// Session pooling: a client keeps one server for its whole session; the server is reset
// (DISCARD ALL) before another client gets it.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

describe("session mode", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  beforeAll(async () => {
    cluster = await sharedCluster();
    proxy = await startProxy(cluster, { pool_mode: "session", pool_size: 1 });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it("a session SET persists across statements and another client never sees it", async () => {
    const a = new pg.Client(proxy.pgConfig());
    await a.connect();
    await a.query("SET statement_timeout = '4321ms'");
    await a.query("SELECT 1");
    const pidA = (await a.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
    expect((await a.query("SHOW statement_timeout")).rows[0].statement_timeout).toBe("4321ms");
    await a.end();

    const b = new pg.Client(proxy.pgConfig());
    await b.connect();
    // pool_size 1: the same server, reset with DISCARD ALL in between.
    expect((await b.query("SELECT pg_backend_pid() AS pid")).rows[0].pid).toBe(pidA);
    expect((await b.query("SHOW statement_timeout")).rows[0].statement_timeout).toBe("0");
    await b.end();
  });

  it("a second client waits for the session's server and proceeds when it leaves", async () => {
    const a = new pg.Client(proxy.pgConfig());
    await a.connect();
    await a.query("SELECT 1");
    const b = new pg.Client(proxy.pgConfig());
    await b.connect();
    const pending = b.query("SELECT 42 AS v");
    await new Promise((r) => setTimeout(r, 200));
    await a.end();
    expect((await pending).rows[0].v).toBe(42);
    await b.end();
  });
});
