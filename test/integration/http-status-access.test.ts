// /status lists every client and server: it is served to loopback peers, and to others only with
// HTTP basic auth as an admin user. /metrics, /healthz and /readyz stay open (Prometheus and the
// kubelet reach them from outside the pod). Tests dial loopback only: a server whose rule counts
// no peer as local stands in for a request from another address.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminHttpServer } from "../../src/admin/http.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

function basic(user: string, password: string): Record<string, string> {
  return { Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` };
}

describe("HTTP /status access", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  /** The same HTTP server, for which no peer is local: every request comes "from outside". */
  let remote: AdminHttpServer;
  const url = (host: string, path: string) => `http://${host}:${proxy.proxy.httpPort}${path}`;
  const fromOutside = (path: string) => `http://127.0.0.1:${remote.port}${path}`;

  beforeAll(async () => {
    cluster = await sharedCluster();
    proxy = await startProxy(cluster, {
      http_listen: "0.0.0.0:0",
      users: [
        { name: "ops", password: "ops pw", admin: true },
        { name: "app_user", password: "app pw" },
      ],
    });
    remote = new AdminHttpServer(
      {
        metrics: proxy.proxy.metrics,
        ready: () => true,
        status: () => ({ clients: [], servers: [] }),
        adminPassword: (user) => (user === "ops" ? "ops pw" : null),
      },
      () => false,
    );
    await remote.start("127.0.0.1", 0);
  });
  afterAll(async () => {
    await remote?.stop();
    await proxy?.stop();
  });

  it("serves /status to a loopback peer without credentials", async () => {
    const res = await fetch(url("127.0.0.1", "/status"));
    expect(res.status).toBe(200);
    expect(await res.json()).toHaveProperty("servers");
  });

  it("refuses /status to another address without credentials, with a basic auth challenge", async () => {
    const res = await fetch(fromOutside("/status"));
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe('Basic realm="pgsidecar", charset="UTF-8"');
    expect(await res.text()).not.toContain("servers");
  });

  it("serves /status to another address with an admin user's credentials only", async () => {
    const ok = await fetch(fromOutside("/status"), {
      headers: basic("ops", "ops pw"),
    });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toHaveProperty("clients");
    for (const [user, password] of [
      ["ops", "wrong"],
      ["app_user", "app pw"], // a valid user, but not an admin
      ["nobody", "ops pw"],
      ["ops", ""],
    ]) {
      const res = await fetch(fromOutside("/status"), {
        headers: basic(user, password),
      });
      expect(res.status, `${user}:${password}`).toBe(401);
    }
  });

  it("keeps /metrics, /healthz and /readyz open to other addresses", async () => {
    for (const path of ["/metrics", "/healthz", "/readyz"]) {
      const res = await fetch(fromOutside(path));
      expect(res.status, path).toBe(200);
    }
  });
});
