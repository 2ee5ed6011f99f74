// /status lists every client and server: it is served to loopback peers, and to others only with
// HTTP basic auth as an admin user. /metrics, /healthz and /readyz stay open (Prometheus and the
// kubelet reach them from outside the pod). "Outside" is this machine's own non-loopback address.
import { networkInterfaces } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";

/** An IPv4 address of this machine that is not loopback, if it has one. */
function externalIPv4(): string | undefined {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

const external = externalIPv4();

function basic(user: string, password: string): Record<string, string> {
  return { Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` };
}

describe("HTTP /status access", () => {
  let cluster: PgCluster;
  let proxy: TestProxy;
  const url = (host: string, path: string) => `http://${host}:${proxy.proxy.httpPort}${path}`;

  beforeAll(async () => {
    cluster = await startCluster();
    proxy = await startProxy(cluster, {
      http_listen: "0.0.0.0:0",
      users: [
        { name: "ops", password: "ops pw", admin: true },
        { name: "app_user", password: "app pw" },
      ],
    });
  });
  afterAll(async () => {
    await proxy?.stop();
    await cluster?.destroy();
  });

  it("serves /status to a loopback peer without credentials", async () => {
    const res = await fetch(url("127.0.0.1", "/status"));
    expect(res.status).toBe(200);
    expect(await res.json()).toHaveProperty("servers");
  });

  it.skipIf(external === undefined)(
    "refuses /status to another address without credentials, with a basic auth challenge",
    async () => {
      const res = await fetch(url(external as string, "/status"));
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toBe('Basic realm="pgsidecar", charset="UTF-8"');
      expect(await res.text()).not.toContain("servers");
    },
  );

  it.skipIf(external === undefined)(
    "serves /status to another address with an admin user's credentials only",
    async () => {
      const ok = await fetch(url(external as string, "/status"), {
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
        const res = await fetch(url(external as string, "/status"), {
          headers: basic(user, password),
        });
        expect(res.status, `${user}:${password}`).toBe(401);
      }
    },
  );

  it.skipIf(external === undefined)(
    "keeps /metrics, /healthz and /readyz open to other addresses",
    async () => {
      for (const path of ["/metrics", "/healthz", "/readyz"]) {
        const res = await fetch(url(external as string, path));
        expect(res.status, path).toBe(200);
      }
    },
  );
});
