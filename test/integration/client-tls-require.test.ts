// client_tls: require. TCP clients that negotiate TLS (SSLRequest or direct) are served; one that
// does not gets FATAL 28000 after its StartupMessage, where Postgres refuses a connection that no
// hostssl line lets in without encryption. Unix-socket clients never leave the machine: served.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

function selfSigned(dir: string): { cert: string; key: string } {
  const cert = join(dir, "sidecar.crt");
  const key = join(dir, "sidecar.key");
  execFileSync(
    "openssl",
    [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
      ...["-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
    ],
    { stdio: "pipe" },
  );
  return { cert, key };
}

/** Runs one query; returns its value and whether the connection was encrypted. */
async function queryVia(config: pg.ClientConfig): Promise<{ v: number; encrypted: boolean }> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: 10_000 });
  c.on("error", () => {});
  await c.connect();
  try {
    const v = (await c.query("SELECT 7 AS v")).rows[0].v as number;
    // biome-ignore lint/suspicious/noExplicitAny: pg keeps its socket on an untyped field
    const stream = (c as any).connection.stream as Partial<TLSSocket>;
    return { v, encrypted: stream.encrypted === true };
  } finally {
    await c.end().catch(() => {});
  }
}

describe("client_tls: require", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  let dir: string;

  beforeAll(async () => {
    cluster = await sharedCluster();
    dir = mkdtempSync(join(tmpdir(), "pgsidecar-client-tls-"));
    const { cert, key } = selfSigned(dir);
    proxy = await startProxy(cluster, {
      tls_cert_file: cert,
      tls_key_file: key,
      client_tls: "require",
      unix_socket_dir: dir,
      pool_size: 2,
    });
  });
  afterAll(async () => {
    await proxy?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("serves a client that asks for TLS with SSLRequest", async () => {
    const r = await queryVia({ ...proxy.pgConfig(), ssl: { rejectUnauthorized: false } });
    expect(r).toEqual({ v: 7, encrypted: true });
  });

  it("serves a client with direct TLS negotiation", async () => {
    const r = await queryVia({
      ...proxy.pgConfig(),
      ssl: { rejectUnauthorized: false },
      sslnegotiation: "direct",
    } as pg.ClientConfig);
    expect(r).toEqual({ v: 7, encrypted: true });
  });

  it("refuses a TCP client without TLS with FATAL 28000", async () => {
    const err = await queryVia({ ...proxy.pgConfig(), ssl: false }).then(
      () => null,
      (e: pg.DatabaseError) => e,
    );
    expect(err?.code).toBe("28000");
    expect(err?.severity).toBe("FATAL");
    expect(err?.message).toBe("pgsidecar requires TLS connections");
  });

  it("serves a unix-socket client without TLS", async () => {
    const r = await queryVia({ ...proxy.pgConfig(), host: dir, ssl: false });
    expect(r).toEqual({ v: 7, encrypted: false });
  });
});
