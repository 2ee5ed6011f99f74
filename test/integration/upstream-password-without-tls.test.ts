// server_password_without_tls: a cleartext password or an md5 answer goes upstream over TCP
// without TLS only as allowed (default: to loopback addresses only). The refusal is a permanent
// login failure (28000, naming the setting), not a retry loop. The cluster is reached from
// another address of this machine through a plain TCP forwarder.

import { readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";

function externalIPv4(): string | undefined {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

const external = externalIPv4();

/** Listens on `host` and pipes every connection to the cluster on 127.0.0.1. */
async function forwarder(host: string, cluster: PgCluster): Promise<net.Server> {
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: "127.0.0.1", port: cluster.port });
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return server;
}

async function loginError(config: pg.ClientConfig): Promise<pg.DatabaseError> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: 20_000 });
  c.on("error", () => {});
  try {
    await c.connect();
  } catch (err) {
    return err as pg.DatabaseError;
  }
  await c.end().catch(() => {});
  throw new Error("login unexpectedly succeeded");
}

async function currentUser(config: pg.ClientConfig): Promise<string> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: 20_000 });
  c.on("error", () => {});
  await c.connect();
  try {
    return (await c.query("SELECT current_user AS u")).rows[0].u;
  } finally {
    await c.end().catch(() => {});
  }
}

describe("server_password_without_tls", () => {
  let cluster: PgCluster;
  let fwd: net.Server | null = null;
  const proxies: TestProxy[] = [];

  const fwdPort = () => ((fwd as net.Server).address() as net.AddressInfo).port;

  /** The upstream URL for `user` at `host` (the forwarder's port unless on 127.0.0.1). */
  function upstream(user: string, password: string, host: string, sslmode = "disable"): string {
    const port = host === "127.0.0.1" ? cluster.port : fwdPort();
    return `postgres://${user}:${encodeURIComponent(password)}@${host}:${port}/postgres?sslmode=${sslmode}`;
  }

  async function proxyFor(url: string, settings: Record<string, unknown> = {}) {
    // A long query_wait_timeout: a refusal must come at once, not when a wait runs out.
    const p = await startProxy(
      cluster,
      { pool_size: 1, query_wait_timeout: "60s", ...settings },
      url,
    );
    proxies.push(p);
    return p;
  }

  beforeAll(async () => {
    cluster = await startCluster({ ssl: true });
    await cluster.createUser("md5_alice", "alice pw", { md5: true });
    await cluster.createUser("pw_bob", "bob pw");
    // pw_bob logs in with a cleartext password (pg_hba method "password"); first match wins.
    const hba = join(cluster.dataDir, "pg_hba.conf");
    writeFileSync(hba, `host all pw_bob 127.0.0.1/32 password\n${readFileSync(hba, "utf8")}`);
    await cluster.query("SELECT pg_reload_conf()");
    if (external) fwd = await forwarder(external, cluster);
  });
  afterAll(async () => {
    for (const p of proxies) await p.stop().catch(() => {});
    await new Promise<void>((resolve) => (fwd ? fwd.close(() => resolve()) : resolve()));
    await cluster?.destroy();
  });

  it("sends an md5 password to a loopback address by default", async () => {
    const p = await proxyFor(upstream("md5_alice", "alice pw", "127.0.0.1"));
    expect(await currentUser(p.pgConfig({ user: "md5_alice", password: "alice pw" }))).toBe(
      "md5_alice",
    );
  });

  it.skipIf(external === undefined)(
    "refuses md5 and cleartext to another address by default, at once and every time",
    async () => {
      for (const [user, password, what] of [
        ["md5_alice", "alice pw", "an md5 password"],
        ["pw_bob", "bob pw", "a cleartext password"],
      ]) {
        const p = await proxyFor(upstream(user, password, external as string));
        for (let attempt = 0; attempt < 2; attempt++) {
          const started = Date.now();
          const err = await loginError(p.pgConfig({ user, password }));
          expect(Date.now() - started).toBeLessThan(15_000); // the backoff at most, not the 60s wait
          expect(err.code).toBe("28000");
          expect(err.severity).toBe("FATAL");
          expect(err.message).toBe(
            `server ${external}:${fwdPort()} requested ${what} over a connection without TLS; not sent (server_password_without_tls: loopback)`,
          );
        }
      }
    },
  );

  it.skipIf(external === undefined)("sends them to another address over TLS", async () => {
    const p = await proxyFor(upstream("md5_alice", "alice pw", external as string, "require"));
    expect(await currentUser(p.pgConfig({ user: "md5_alice", password: "alice pw" }))).toBe(
      "md5_alice",
    );
  });

  it.skipIf(external === undefined)(
    "logs in with SCRAM to another address without TLS",
    async () => {
      const p = await proxyFor(upstream(cluster.superuser, cluster.password, external as string));
      expect(await currentUser(p.pgConfig())).toBe(cluster.superuser);
    },
  );

  it.skipIf(external === undefined)("sends them anywhere with allow", async () => {
    const p = await proxyFor(upstream("pw_bob", "bob pw", external as string), {
      server_password_without_tls: "allow",
    });
    expect(await currentUser(p.pgConfig({ user: "pw_bob", password: "bob pw" }))).toBe("pw_bob");
  });

  it("with refuse, sends them not even to a loopback address", async () => {
    const p = await proxyFor(upstream("md5_alice", "alice pw", "127.0.0.1"), {
      server_password_without_tls: "refuse",
    });
    const err = await loginError(p.pgConfig({ user: "md5_alice", password: "alice pw" }));
    expect(err.code).toBe("28000");
    expect(err.message).toMatch(
      /requested an md5 password over a connection without TLS; not sent/,
    );
    expect(err.detail).toMatch(/sslmode=require/);
  });
});
