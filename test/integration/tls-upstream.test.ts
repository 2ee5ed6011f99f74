// TLS on both sides: the sidecar's connection to Postgres per sslmode (verify-full, require, a wrong
// CA), and client connections to the sidecar (SSLRequest and direct TLS negotiation).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";

/** A self-signed certificate (CN localhost) and its key, for the sidecar or as a stranger CA. */
function selfSigned(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync(
    "openssl",
    [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
      ...["-keyout", key, "-out", cert, "-days", "2", "-subj", `/CN=${name}`],
      ...["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
    ],
    { stdio: "pipe" },
  );
  return { cert, key };
}

function upstreamUrl(cluster: PgCluster, host: string, params: Record<string, string>): string {
  return cluster.url({ params }).replace("@127.0.0.1:", `@${host}:`);
}

async function queryVia(
  config: pg.ClientConfig,
  sql: string,
): Promise<{ rows: Record<string, unknown>[]; encrypted: boolean }> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: 10_000 });
  c.on("error", () => {});
  await c.connect();
  try {
    const rows = (await c.query(sql)).rows;
    // biome-ignore lint/suspicious/noExplicitAny: pg keeps its socket on an untyped field
    const stream = (c as any).connection.stream as Partial<TLSSocket>;
    return { rows, encrypted: stream.encrypted === true };
  } finally {
    await c.end().catch(() => {});
  }
}

const SSL_IN_USE = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

describe("TLS upstream and client-facing", () => {
  let cluster: PgCluster;
  let dir: string;
  const proxies: TestProxy[] = [];

  beforeAll(async () => {
    cluster = await startCluster({ ssl: true });
    dir = mkdtempSync(join(tmpdir(), "pgsidecar-tls-"));
  });
  afterAll(async () => {
    for (const p of proxies) await p.stop().catch(() => {});
    await cluster?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function proxyWith(settings: Record<string, unknown>, upstream?: string) {
    const p = await startProxy(cluster, { pool_size: 2, ...settings }, upstream);
    proxies.push(p);
    return p;
  }

  it("connects upstream with sslmode=verify-full against the cluster's CA and host localhost", async () => {
    const p = await proxyWith(
      {},
      upstreamUrl(cluster, "localhost", {
        sslmode: "verify-full",
        sslrootcert: cluster.caFile as string,
      }),
    );
    const { rows } = await queryVia(p.pgConfig(), SSL_IN_USE);
    expect(rows).toEqual([{ ssl: true }]);
  });

  it("fails verify-full against a wrong CA with a clear error to the client, and keeps serving", async () => {
    const stranger = selfSigned(dir, "stranger-ca");
    const p = await proxyWith(
      { query_wait_timeout: "2s", server_login_retry: "0.2s" },
      upstreamUrl(cluster, "localhost", { sslmode: "verify-full", sslrootcert: stranger.cert }),
    );
    for (let attempt = 0; attempt < 2; attempt++) {
      const c = new pg.Client({ ...p.pgConfig(), connectionTimeoutMillis: 10_000 });
      c.on("error", () => {});
      const err = (await c.connect().then(
        () => new Error("login unexpectedly succeeded"),
        (e: unknown) => e,
      )) as pg.DatabaseError;
      await c.end().catch(() => {});
      // An ErrorResponse from the sidecar (a DatabaseError with a SQLSTATE), not a dropped socket.
      expect(err).toBeInstanceOf(pg.DatabaseError);
      expect(err.code).toMatch(/^08/);
      expect(err.message).toMatch(/certificate/i);
    }
    // Counted as a TLS failure (the certificate's error code), not as a refused connection.
    const metrics = await p.proxy.metrics.registry.metrics();
    expect(metrics).toMatch(
      /pgsidecar_upstream_connect_failures_total\{[^}]*reason="tls"[^}]*\} [1-9]/,
    );
    expect(metrics).not.toMatch(/pgsidecar_upstream_connect_failures_total\{[^}]*reason="refused"/);
    expect(p.proxy.listening).toBe(true);
  });

  it("connects upstream with sslmode=require (encrypted, not verified)", async () => {
    const p = await proxyWith({}, upstreamUrl(cluster, "127.0.0.1", { sslmode: "require" }));
    const { rows } = await queryVia(p.pgConfig(), SSL_IN_USE);
    expect(rows).toEqual([{ ssl: true }]);
  });

  describe("client-facing TLS", () => {
    let p: TestProxy;
    beforeAll(async () => {
      const server = selfSigned(dir, "sidecar");
      p = await proxyWith({ tls_cert_file: server.cert, tls_key_file: server.key });
    });

    it("serves a pg client that asks for TLS with SSLRequest", async () => {
      const r = await queryVia(
        { ...p.pgConfig(), ssl: { rejectUnauthorized: false } },
        "SELECT 1 AS one",
      );
      expect(r.rows).toEqual([{ one: 1 }]);
      expect(r.encrypted).toBe(true);
    });

    it("serves a pg client with direct TLS negotiation (sslnegotiation=direct)", async () => {
      const r = await queryVia(
        { ...p.pgConfig(), ssl: { rejectUnauthorized: false }, sslnegotiation: "direct" },
        "SELECT 2 AS two",
      );
      expect(r.rows).toEqual([{ two: 2 }]);
      expect(r.encrypted).toBe(true);
    });

    it("still serves plaintext clients when TLS is configured", async () => {
      const r = await queryVia({ ...p.pgConfig(), ssl: false }, "SELECT 3 AS three");
      expect(r.rows).toEqual([{ three: 3 }]);
      expect(r.encrypted).toBe(false);
    });
  });
});
