// The lifecycle endpoints on http_listen: /startup (once able to serve), /livez and /healthz (the
// process answers), /readyz (serving and not draining) and POST /quitquitquit (drain, loopback
// peers only). Tests dial loopback only: a server whose rule counts no peer as local stands in for
// a request from another address.

import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminHttpServer } from "../../src/admin/http.js";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type Relay, startRelay } from "../helpers/relay.js";
import { until } from "../helpers/until.js";

async function status(port: number, path: string, init?: RequestInit): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, init);
  await res.arrayBuffer();
  return res.status;
}

describe("lifecycle endpoints", () => {
  let cluster: PgCluster;
  const proxies: TestProxy[] = [];
  const relays: Relay[] = [];

  beforeAll(async () => {
    cluster = await startCluster();
  });
  afterAll(async () => {
    for (const p of proxies) await p.stop().catch(() => {});
    for (const r of relays) await r.close();
    await cluster?.destroy();
  });

  async function proxy(settings: Record<string, unknown> = {}, upstream?: string) {
    const p = await startProxy(cluster, settings, upstream);
    proxies.push(p);
    return p;
  }

  it("answers /startup, /livez, /healthz and /readyz with 200 once listening", async () => {
    const p = await proxy();
    for (const path of ["/startup", "/livez", "/healthz", "/readyz"]) {
      expect(await status(p.proxy.httpPort, path), path).toBe(200);
    }
  });

  it("with startup_checks_upstream, /startup answers 503 until the upstream took a login, then 200 for good", async () => {
    const relay = await startRelay({ host: cluster.host, port: cluster.port });
    relays.push(relay);
    relay.refuse(true);
    const p = await proxy(
      {
        startup_checks_upstream: true,
        server_login_retry: "100ms",
        server_login_retry_max: "200ms",
        query_wait_timeout: "1s",
      },
      cluster.url({ database: "postgres" }).replace(`:${cluster.port}/`, `:${relay.port}/`),
    );
    const http = p.proxy.httpPort;
    // Listening, alive and (readyz_checks_upstream is off) ready, but not started.
    await new Promise((r) => setTimeout(r, 500));
    expect(await status(http, "/startup")).toBe(503);
    expect(await status(http, "/livez")).toBe(200);
    expect(await status(http, "/readyz")).toBe(200);

    relay.refuse(false);
    await until("/startup to pass", async () => (await status(http, "/startup")) === 200, 10_000);
    // The login it waited for left a server in the pool.
    expect(p.proxy.snapshot().find((s) => s.database === "postgres")?.idle).toBe(1);
    // Started stays started: the upstream going away again is readiness' business, not startup's.
    relay.refuse(true);
    relay.sever();
    expect(await status(http, "/startup")).toBe(200);
  });

  it("POST /quitquitquit from loopback drains the in-process sidecar: /readyz 503, the listener closes, /startup stays 200", async () => {
    const p = await proxy({ shutdown_timeout: "5s" });
    const client = new pg.Client(p.pgConfig());
    const ended = new Promise<void>((resolve) => client.on("end", () => resolve()));
    client.on("error", () => {});
    await client.connect();
    await client.query("SELECT 1");
    const http = p.proxy.httpPort;
    const res = await fetch(`http://127.0.0.1:${http}/quitquitquit`, { method: "POST" });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("draining\n");
    // The idle client is at a transaction boundary: closed at once; then the sidecar stops.
    await ended;
    await until("the sidecar to stop listening", () => !p.proxy.listening);
    expect(p.proxy.draining).toBe(true);
    expect(p.proxy.sessions.size).toBe(0);
  });

  describe("POST /quitquitquit access (AdminHttpServer)", () => {
    let quits = 0;
    let local: AdminHttpServer;
    let remote: AdminHttpServer;
    beforeAll(async () => {
      const handlers = {
        metrics: (await proxy()).proxy.metrics,
        ready: () => true,
        started: () => true,
        status: () => ({}),
        adminPassword: () => null,
        quit: () => {
          quits++;
        },
      };
      local = new AdminHttpServer(handlers);
      // No peer is local for this one: every request stands for one from another address.
      remote = new AdminHttpServer(handlers, () => false);
      await local.start("127.0.0.1", 0);
      await remote.start("127.0.0.1", 0);
    });
    afterAll(async () => {
      await local?.stop();
      await remote?.stop();
    });

    it("refuses a peer that is not local with 403, whatever it sends", async () => {
      expect(await status(remote.port, "/quitquitquit", { method: "POST" })).toBe(403);
      expect(
        await status(remote.port, "/quitquitquit", {
          method: "POST",
          headers: { Authorization: `Basic ${Buffer.from("ops:pw").toString("base64")}` },
        }),
      ).toBe(403);
      // The probes stay open to it (the kubelet probes the pod IP).
      expect(await status(remote.port, "/livez")).toBe(200);
      expect(await status(remote.port, "/startup")).toBe(200);
      expect(quits).toBe(0);
    });

    it("takes POST only, and refuses a browser's cross-site POST (Origin header)", async () => {
      const get = await fetch(`http://127.0.0.1:${local.port}/quitquitquit`);
      expect(get.status).toBe(405);
      expect(get.headers.get("allow")).toBe("POST");
      expect(
        await status(local.port, "/quitquitquit", {
          method: "POST",
          headers: { Origin: "http://example.test" },
        }),
      ).toBe(403);
      expect(quits).toBe(0);
      expect(await status(local.port, "/quitquitquit", { method: "POST" })).toBe(200);
      await until("the quit handler to run", () => quits === 1);
    });
  });
});
