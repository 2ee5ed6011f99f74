// Client authentication to the sidecar (SCRAM, md5, password, trust) and the sidecar's own login
// upstream (SCRAM, md5), with the errors Postgres itself would send.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  parseScramSecret,
  type ScramSecret,
  scramSecretFromPassword,
} from "../../src/auth/scram-sha-256.js";
import { run } from "../helpers/processes.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

/** Connects, runs one query, ends; returns its rows. */
async function queryVia(config: pg.ClientConfig, sql: string): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: 10_000 });
  c.on("error", () => {});
  await c.connect();
  try {
    return (await c.query(sql)).rows;
  } finally {
    await c.end().catch(() => {});
  }
}

/** The error a login fails with (fails the test when the login succeeds). */
async function loginError(config: pg.ClientConfig): Promise<pg.DatabaseError> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: 10_000 });
  c.on("error", () => {});
  try {
    await c.connect();
  } catch (err) {
    return err as pg.DatabaseError;
  }
  await c.end().catch(() => {});
  throw new Error("login unexpectedly succeeded");
}

/** psql -c through the proxy with PGPASSWORD; no other PG* variables leak in. */
function psql(proxy: TestProxy, user: string, password: string, sql: string) {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PG")) env[k] = v;
  env.PGPASSWORD = password;
  env.PGCONNECT_TIMEOUT = "10";
  return run(
    "psql",
    [
      ...["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
      ...["-h", "127.0.0.1", "-p", String(proxy.port), "-U", user, "-d", "postgres"],
      ...["-c", sql],
    ],
    { env, timeoutMs: 30_000 },
  );
}

/** The server log lines saying how a user authenticated (log_connections=on). */
function authMethodsLogged(cluster: SharedCluster, user: string): string[] {
  const re = new RegExp(`connection authenticated: identity="${user}" method=([a-z0-9-]+)`, "g");
  return [...cluster.log().matchAll(re)].map((m) => m[1]);
}

describe("authentication", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  const started: TestProxy[] = [];

  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.createUser("auth_app_user", "app secret");
    await cluster.createUser("md5_auth_alice", "alice pw", { md5: true });
    proxy = await startProxy(cluster, {
      pool_size: 2,
      users: [{ name: "auth_app_user", password: "app secret" }],
    });
    started.push(proxy);
  });
  afterAll(async () => {
    for (const p of started) await p.stop().catch(() => {});
  });

  /** Another proxy on the same cluster, stopped in afterAll. */
  async function extraProxy(settings: Record<string, unknown>, upstream?: string) {
    const p = await startProxy(cluster, settings, upstream);
    started.push(p);
    return p;
  }

  it("accepts a pg client over SCRAM-SHA-256 with the upstream URL's credentials", async () => {
    const rows = await queryVia(proxy.pgConfig(), "SELECT current_user AS u");
    expect(rows).toEqual([{ u: "postgres" }]);
  });

  it("accepts psql over SCRAM-SHA-256 with PGPASSWORD", async () => {
    const r = await psql(proxy, cluster.superuser, cluster.password, "SELECT 40 + 2");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe("42");
  });

  it("logs in upstream with SCRAM-SHA-256 on a default cluster", async () => {
    const rows = await queryVia(proxy.pgConfig(), "SELECT 1 AS one");
    expect(rows).toEqual([{ one: 1 }]);
    const stored = await cluster.query(
      "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' AS scram FROM pg_authid WHERE rolname = 'postgres'",
    );
    expect(stored).toEqual([{ scram: true }]);
    expect(authMethodsLogged(cluster, "postgres")).toContain("scram-sha-256");
  });

  it("logs in upstream with md5 when the upstream user's password is stored as md5", async () => {
    const md5Proxy = await extraProxy(
      { pool_size: 1 },
      cluster.url({ user: "md5_auth_alice", password: "alice pw" }),
    );
    const rows = await queryVia(
      md5Proxy.pgConfig({ user: "md5_auth_alice", password: "alice pw" }),
      "SELECT current_user AS u",
    );
    expect(rows).toEqual([{ u: "md5_auth_alice" }]);
    expect(authMethodsLogged(cluster, "md5_auth_alice")).toContain("md5");
  });

  it("authenticates clients with auth_type md5", async () => {
    const p = await extraProxy({ pool_size: 1, auth_type: "md5" });
    const rows = await queryVia(p.pgConfig(), "SELECT 'md5 ok' AS r");
    expect(rows).toEqual([{ r: "md5 ok" }]);
    const err = await loginError(p.pgConfig({ password: "wrong" }));
    expect(err.code).toBe("28P01");
    expect(err.message).toBe('password authentication failed for user "postgres"');
  });

  it("authenticates clients with auth_type password (cleartext)", async () => {
    const p = await extraProxy({ pool_size: 1, auth_type: "password" });
    const rows = await queryVia(p.pgConfig(), "SELECT 'password ok' AS r");
    expect(rows).toEqual([{ r: "password ok" }]);
    const err = await loginError(p.pgConfig({ password: "wrong" }));
    expect(err.code).toBe("28P01");
    expect(err.message).toBe('password authentication failed for user "postgres"');
  });

  it("with auth_type trust, lets listed users in without a password and refuses others", async () => {
    const p = await extraProxy({
      pool_size: 1,
      auth_type: "trust",
      users: [{ name: "auth_app_user", password: "app secret" }],
    });
    const rows = await queryVia(p.pgConfig({ password: "anything" }), "SELECT current_user AS u");
    expect(rows).toEqual([{ u: "postgres" }]);
    const rows2 = await queryVia(
      p.pgConfig({ user: "auth_app_user", password: "not it" }),
      "SELECT current_user AS u",
    );
    expect(rows2).toEqual([{ u: "auth_app_user" }]);
    const err = await loginError(p.pgConfig({ user: "stranger", password: "x" }));
    expect(err.code).toBe("28P01");
    expect(err.message).toBe('password authentication failed for user "stranger"');
  });

  it("refuses a wrong password with 28P01 and Postgres's exact message", async () => {
    const err = await loginError(proxy.pgConfig({ password: "not the password" }));
    expect(err.code).toBe("28P01");
    expect(err.severity).toBe("FATAL");
    expect(err.message).toBe('password authentication failed for user "postgres"');
  });

  it("refuses an unknown user exactly as a wrong password", async () => {
    const err = await loginError(proxy.pgConfig({ user: "nobody_here", password: "whatever" }));
    expect(err.code).toBe("28P01");
    expect(err.message).toBe('password authentication failed for user "nobody_here"');
  });

  it("refuses a wrong password given to psql", async () => {
    const r = await psql(proxy, cluster.superuser, "wrong", "SELECT 1");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('password authentication failed for user "postgres"');
  });

  it("refuses an unknown database with 3D000", async () => {
    const err = await loginError(proxy.pgConfig({ database: "nope" }));
    expect(err.code).toBe("3D000");
    expect(err.message).toBe('database "nope" does not exist');
  });

  it("accepts a user from the config users list and logs in upstream as that user", async () => {
    const rows = await queryVia(
      proxy.pgConfig({ user: "auth_app_user", password: "app secret" }),
      "SELECT current_user AS u",
    );
    expect(rows).toEqual([{ u: "auth_app_user" }]);
    const err = await loginError(proxy.pgConfig({ user: "auth_app_user", password: "wrong" }));
    expect(err.code).toBe("28P01");
    expect(err.message).toBe('password authentication failed for user "auth_app_user"');
  });

  // SASLprep parity: PostgreSQL hashed each password (pg_saslprep, raw bytes where it refuses);
  // the sidecar must derive the same keys upstream, and psql (libpq's pg_saslprep) must log in to
  // the sidecar with a secret the sidecar derived itself.
  it("hashes passwords that need SASLprep as PostgreSQL does, raw where PostgreSQL refuses", async () => {
    const roles: [string, string][] = [
      ["auth_sasl_soft_hyphen", "I\u00adX"], // B.1: mapped to nothing -> "IX"
      ["auth_sasl_roman_nine", "\u2168"], // NFKC -> "IX"
      ["auth_sasl_nbsp", "pass\u00a0word"], // C.1.2: a space -> "pass word"
      ["auth_sasl_bell", "\u00e9\u0007"], // C.2.1 prohibited: the raw bytes
      ["auth_sasl_tone_mark", "a\u0340"], // C.8 before NFKC (not after): the raw bytes
      ["auth_sasl_hebrew_tm", "\u05d0\u2122\u05d0"], // no LCat before NFKC (TM after) -> "\u05d0TM\u05d0"
    ];
    const create = roles.map(([name, pw]) => `CREATE ROLE ${name} LOGIN PASSWORD '${pw}';`);
    await cluster.query(`SET password_encryption = 'scram-sha-256'; ${create.join(" ")}`);
    const stored = await cluster.query(
      "SELECT rolname, rolpassword FROM pg_authid WHERE rolname LIKE 'auth\\_sasl\\_%' ORDER BY rolname",
    );
    expect(stored).toHaveLength(roles.length);
    for (const { rolname, rolpassword } of stored) {
      const postgres = parseScramSecret(rolpassword) as ScramSecret;
      const password = roles.find(([name]) => name === rolname)?.[1] as string;
      const ours = scramSecretFromPassword(password, postgres.iterations, postgres.salt);
      expect({ rolname, ...ours }).toEqual({ rolname, ...postgres });
    }

    const p = await extraProxy({
      pool_size: 1,
      users: roles.map(([name, password]) => ({ name, password })),
    });
    for (const [name, password] of roles) {
      const r = await psql(p, name, password, "SELECT current_user");
      expect({ name, stderr: r.stderr, out: r.stdout.trim() }).toEqual({
        name,
        stderr: "",
        out: name,
      });
    }
    // Equivalent under SASLprep: the same keys. Not equivalent once SASLprep refused: 28P01.
    expect((await psql(p, "auth_sasl_roman_nine", "IX", "SELECT 1")).code).toBe(0);
    const bell = await psql(p, "auth_sasl_bell", "\u00e9", "SELECT 1");
    expect(bell.stderr).toContain('password authentication failed for user "auth_sasl_bell"');
  });
});
