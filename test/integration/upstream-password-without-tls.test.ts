// server_password_without_tls: a cleartext password or an md5 answer goes upstream over TCP
// without TLS only as allowed (default: to loopback addresses only). The refusal is a permanent
// login failure (28000, naming the setting), not a retry loop. Tests send traffic to loopback
// only, so a non-loopback server is not dialled here: which addresses count as loopback is the
// unit test of src/loopback.ts; the refusal itself is exercised with \`refuse\` on 127.0.0.1.

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";

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
  const proxies: TestProxy[] = [];

  /** The upstream URL for `user` at `host`. */
  function upstream(user: string, password: string, host: string, sslmode = "disable"): string {
    return `postgres://${user}:${encodeURIComponent(password)}@${host}:${cluster.port}/postgres?sslmode=${sslmode}`;
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
  });
  afterAll(async () => {
    for (const p of proxies) await p.stop().catch(() => {});
    await cluster?.destroy();
  });

  it("sends an md5 password to a loopback address by default", async () => {
    const p = await proxyFor(upstream("md5_alice", "alice pw", "127.0.0.1"));
    expect(await currentUser(p.pgConfig({ user: "md5_alice", password: "alice pw" }))).toBe(
      "md5_alice",
    );
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
