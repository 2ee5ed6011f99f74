// Unchanged connection strings (issue 13 item 6): a sidecar started with no TLS settings serves
// client TLS with an ephemeral self-signed certificate, so sslmode=require (psql, psycopg) and
// node-postgres's ssl: { rejectUnauthorized: false } work as against a managed Postgres, over an
// SSLRequest or direct TLS negotiation (ALPN "postgresql"). verify-full fails on the client with a
// certificate error unless tls_cert_file is configured; client_tls: off answers N as before.
// Where it applies, the same runs against Postgres itself (ssl = on), so the test shows they agree.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import tls, { type TLSSocket } from "node:tls";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { python3Psycopg, run } from "../helpers/processes.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { startupPacket } from "../helpers/wire.js";

interface Endpoint {
  name: string;
  port: number;
}

/** psql against 127.0.0.1:port with extra conninfo; its exit code, stdout and stderr. */
function psql(cluster: SharedCluster, port: number, conninfo: string, command = "\\conninfo") {
  return run(
    "psql",
    [
      `host=127.0.0.1 port=${port} user=${cluster.superuser} dbname=postgres connect_timeout=5 ${conninfo}`,
      "-XAtc",
      command,
    ],
    { env: { ...process.env, PGPASSWORD: cluster.password }, timeoutMs: 20_000 },
  );
}

/** node-postgres: one query; whether the connection was encrypted. */
async function pgQuery(
  config: pg.ClientConfig,
): Promise<{ one: number; encrypted: boolean } | { error: string }> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: 10_000 });
  c.on("error", () => {});
  try {
    await c.connect();
  } catch (err) {
    return { error: (err as Error).message };
  }
  try {
    const one = (await c.query("SELECT 1 AS one")).rows[0].one as number;
    // biome-ignore lint/suspicious/noExplicitAny: pg keeps its socket on an untyped field
    const stream = (c as any).connection.stream as Partial<TLSSocket>;
    return { one, encrypted: stream.encrypted === true };
  } finally {
    await c.end().catch(() => {});
  }
}

const PSYCOPG = `
import os, psycopg
try:
    with psycopg.connect(os.environ["DSN"], connect_timeout=5) as conn:
        conn.execute("SELECT 1").fetchone()
        print("ssl_in_use", conn.pgconn.ssl_in_use)
except psycopg.OperationalError as e:
    print("error", str(e).strip().replace("\\n", " "))
`;

function psycopgDsn(cluster: SharedCluster, port: number, extra: string): string {
  return `host=127.0.0.1 port=${port} user=${cluster.superuser} password=${cluster.password} dbname=postgres ${extra}`;
}

/** A self-signed certificate no one trusts, as a wrong sslrootcert. */
function strangerCa(dir: string): string {
  const cert = join(dir, "stranger.crt");
  execFileSync(
    "openssl",
    [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
      ...["-keyout", join(dir, "stranger.key"), "-out", cert, "-days", "2"],
      ...["-subj", "/CN=stranger"],
    ],
    { stdio: "pipe" },
  );
  return cert;
}

describe("client TLS with no TLS settings: an ephemeral certificate", () => {
  let cluster: PgCluster;
  let proxy: TestProxy;
  /** The same with pool_mode: session (TLS is the session's, whatever the pool mode). */
  let sessionProxy: TestProxy;
  let dir: string;
  let stranger: string;
  /** Postgres itself (ssl = on, its own CA) and the sidecar with no TLS settings at all. */
  let both: Endpoint[];

  beforeAll(async () => {
    cluster = await startCluster({ ssl: true });
    dir = mkdtempSync(join(tmpdir(), "pgsidecar-ephemeral-"));
    stranger = strangerCa(dir);
    proxy = await startProxy(cluster, { pool_size: 2 });
    sessionProxy = await startProxy(cluster, { pool_size: 2, pool_mode: "session" });
    both = [
      { name: "postgres", port: cluster.port },
      { name: "sidecar", port: proxy.port },
    ];
  });
  afterAll(async () => {
    await proxy?.stop();
    await sessionProxy?.stop();
    await cluster?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("psql with sslmode=require connects over TLS", async () => {
    for (const e of both) {
      const r = await psql(cluster, e.port, "sslmode=require");
      expect({ at: e.name, code: r.code, stderr: r.stderr }).toEqual({
        at: e.name,
        code: 0,
        stderr: "",
      });
      expect(r.stdout).toMatch(/SSL connection \(protocol: TLSv1\.[23]/);
    }
  });

  it("psql with the default sslmode (prefer) uses TLS", async () => {
    const r = await psql(cluster, proxy.port, "");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/SSL connection/);
  });

  it("psycopg with sslmode=require connects over TLS", async () => {
    for (const e of both) {
      const r = await python3Psycopg(PSYCOPG, {
        DSN: psycopgDsn(cluster, e.port, "sslmode=require"),
      });
      expect({ at: e.name, code: r.code, out: r.stdout.trim(), err: r.stderr }).toEqual({
        at: e.name,
        code: 0,
        out: "ssl_in_use True",
        err: "",
      });
    }
  });

  it("node-postgres with ssl: { rejectUnauthorized: false } connects over TLS", async () => {
    for (const e of [...both, { name: "sidecar (session)", port: sessionProxy.port }]) {
      const config = { ...proxy.pgConfig(), port: e.port, ssl: { rejectUnauthorized: false } };
      expect({ at: e.name, r: await pgQuery(config) }).toEqual({
        at: e.name,
        r: { one: 1, encrypted: true },
      });
    }
  });

  it("node-postgres with direct TLS negotiation connects (Postgres 17's sslnegotiation=direct)", async () => {
    // Postgres 15 here predates direct negotiation: only the sidecar is asked, in both modes.
    for (const p of [proxy, sessionProxy]) {
      const r = await pgQuery({
        ...p.pgConfig(),
        ssl: { rejectUnauthorized: false },
        sslnegotiation: "direct",
      } as pg.ClientConfig);
      expect(r).toEqual({ one: 1, encrypted: true });
    }
  });

  it("direct TLS by hand: ALPN postgresql, then a StartupMessage inside TLS", async () => {
    const socket = tls.connect({
      host: "127.0.0.1",
      port: proxy.port,
      ALPNProtocols: ["postgresql"],
      rejectUnauthorized: false,
    });
    const reply = await new Promise<{ alpn: string | false | null; first: Buffer }>(
      (resolve, reject) => {
        socket.on("error", reject);
        socket.once("secureConnect", () => {
          socket.write(startupPacket(3, 0, { user: cluster.superuser, database: "postgres" }));
        });
        socket.once("data", (d: Buffer) => resolve({ alpn: socket.alpnProtocol, first: d }));
      },
    );
    socket.destroy();
    expect(reply.alpn).toBe("postgresql");
    // AuthenticationSASL (R, code 10) listing SCRAM-SHA-256.
    expect(String.fromCharCode(reply.first[0])).toBe("R");
    expect(reply.first.readInt32BE(5)).toBe(10);
    expect(reply.first.toString("latin1")).toContain("SCRAM-SHA-256");
  });

  it("verify-full fails on the client with a certificate error (psql, psycopg, node-postgres)", async () => {
    // A client that verifies cannot trust a certificate made at start: it must say so itself.
    const r = await psql(cluster, proxy.port, `sslmode=verify-full sslrootcert=${stranger}`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("certificate verify failed");
    const py = await python3Psycopg(PSYCOPG, {
      DSN: psycopgDsn(cluster, proxy.port, `sslmode=verify-full sslrootcert=${stranger}`),
    });
    expect(py.stdout).toMatch(/^error .*certificate verify failed/);
    const node = await pgQuery({ ...proxy.pgConfig(), ssl: { rejectUnauthorized: true } });
    expect(node).toEqual({ error: "self-signed certificate" });
    // Without a root certificate at all libpq refuses before it connects, naming the file.
    const noRoot = await psql(cluster, proxy.port, "sslmode=verify-full sslrootcert=/nonexistent");
    expect(noRoot.stderr).toContain('root certificate file "/nonexistent" does not exist');
  });

  it("verify-full works once tls_cert_file is configured (the same certificate as Postgres's)", async () => {
    // The cluster's server certificate (CN and SAN localhost, 127.0.0.1) and its CA.
    const ca = cluster.caFile as string;
    const sslDir = dirname(ca);
    const configured = await startProxy(cluster, {
      pool_size: 1,
      tls_cert_file: join(sslDir, "server.crt"),
      tls_key_file: join(sslDir, "server.key"),
    });
    try {
      for (const e of [
        { name: "postgres", port: cluster.port },
        { name: "sidecar", port: configured.port },
      ]) {
        const r = await psql(cluster, e.port, `sslmode=verify-full sslrootcert=${ca}`);
        expect({ at: e.name, code: r.code, stderr: r.stderr }).toEqual({
          at: e.name,
          code: 0,
          stderr: "",
        });
        const node = await pgQuery({
          ...configured.pgConfig(),
          port: e.port,
          ssl: { ca: [execFileSync("cat", [ca]).toString()], servername: "localhost" },
        });
        expect({ at: e.name, node }).toEqual({ at: e.name, node: { one: 1, encrypted: true } });
      }
    } finally {
      await configured.stop();
    }
  });
});

describe("client_tls: off", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;

  beforeAll(async () => {
    cluster = await sharedCluster();
    proxy = await startProxy(cluster, { pool_size: 1, client_tls: "off" });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it("answers N: sslmode=require fails as before, prefer and disable connect in plaintext", async () => {
    const req = await psql(cluster, proxy.port, "sslmode=require");
    expect(req.code).not.toBe(0);
    expect(req.stderr).toContain("server does not support SSL, but SSL was required");
    for (const mode of ["prefer", "disable"]) {
      const r = await psql(cluster, proxy.port, `sslmode=${mode}`);
      expect(r.code).toBe(0);
      expect(r.stdout).not.toMatch(/SSL connection/);
    }
    expect(await pgQuery({ ...proxy.pgConfig(), ssl: { rejectUnauthorized: false } })).toEqual({
      error: "The server does not support SSL connections",
    });
  });

  it("closes a direct TLS ClientHello", async () => {
    const err = await new Promise<Error | null>((resolve) => {
      const s = tls.connect({
        host: "127.0.0.1",
        port: proxy.port,
        ALPNProtocols: ["postgresql"],
        rejectUnauthorized: false,
      });
      s.on("error", resolve);
      s.on("secureConnect", () => resolve(null));
    });
    expect(err).not.toBeNull();
  });
});

describe("start-time cost of the ephemeral certificate", () => {
  let cluster: SharedCluster;
  beforeAll(async () => {
    cluster = await sharedCluster();
  });

  it("adds milliseconds to start, measured against client_tls: off", async () => {
    const startMs = async (settings: Record<string, unknown>) => {
      const t0 = performance.now();
      const p = await startProxy(cluster, settings);
      const ms = performance.now() - t0;
      await p.stop();
      return ms;
    };
    // The first start of each kind pays for module loading (the SQL parser, the X.509 library).
    const withTls: number[] = [];
    const without: number[] = [];
    for (let i = 0; i < 5; i++) {
      withTls.push(await startMs({}));
      without.push(await startMs({ client_tls: "off" }));
    }
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[2];
    console.log(
      `sidecar start: ${withTls.map((m) => m.toFixed(0)).join(", ")} ms with the ephemeral certificate, ${without.map((m) => m.toFixed(0)).join(", ")} ms with client_tls: off (median ${median(withTls).toFixed(0)} vs ${median(without).toFixed(0)})`,
    );
    expect(median(withTls) - median(without)).toBeLessThan(250);
  });
});
