// Each failed server connect is counted and logged by why it failed (ConnectFailureReason), not by
// a SQLSTATE that reads 08006 for a missing name, a closed port and a silent peer alike.
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { Sidecar } from "../../src/proxy.js";
import { captureLog } from "../helpers/log-capture.js";
import { findFreePort, type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { until } from "../helpers/until.js";

const FAMILY = "pgsidecar_upstream_connect_failures_total";

/** The connect failures a sidecar counted, by "reason sqlstate", and the reasons its log lines name. */
async function failuresFor(upstream: string, settings: Record<string, unknown> = {}) {
  const capture = captureLog("info");
  const config = loadConfig({
    argv: {
      listen: "127.0.0.1:0",
      http_listen: "127.0.0.1:0",
      upstream,
      min_pool_size: 1,
      server_login_retry: "50ms",
      server_login_retry_max: "200ms",
      ...settings,
    },
    env: {},
  });
  const sidecar = new Sidecar(config, capture.log);
  await sidecar.start();
  const counted = async () => {
    const text = await (await fetch(`http://127.0.0.1:${sidecar.httpPort}/metrics`)).text();
    const byReason = new Map<string, number>();
    for (const line of text.split("\n")) {
      if (!line.startsWith(`${FAMILY}{`)) continue;
      const reason = /reason="([^"]*)"/.exec(line)?.[1];
      const sqlstate = /sqlstate="([^"]*)"/.exec(line)?.[1];
      const key = `${reason} ${sqlstate}`;
      byReason.set(key, (byReason.get(key) ?? 0) + Number(line.split(" ").pop()));
    }
    return byReason;
  };
  try {
    await until("a connect failure counted", async () => (await counted()).size > 0, 15_000);
    const logged = capture.lines
      .map((l) => JSON.parse(l) as { msg: string; reason?: string })
      .filter((l) => l.msg === "server connection failed")
      .map((l) => l.reason);
    return { counted: await counted(), logged: new Set(logged) };
  } finally {
    await sidecar.stop();
  }
}

describe("connect failures by reason", () => {
  let cluster: PgCluster;
  beforeAll(async () => {
    cluster = await startCluster();
  });
  afterAll(async () => {
    await cluster?.destroy();
  });

  it("a closed port is refused", async () => {
    const port = await findFreePort();
    const { counted, logged } = await failuresFor(
      `postgres://postgres:x@127.0.0.1:${port}/postgres`,
    );
    expect([...counted.keys()]).toEqual(["refused 08006"]);
    expect([...logged]).toEqual(["refused"]);
  });

  it("a name that does not resolve is dns", async () => {
    // .invalid never resolves (RFC 6761): the local resolver answers NXDOMAIN without asking anyone.
    const { counted, logged } = await failuresFor(
      "postgres://postgres:x@nonexistent.invalid:5432/postgres",
    );
    expect([...counted.keys()]).toEqual(["dns 08006"]);
    expect([...logged]).toEqual(["dns"]);
  });

  it("a wrong password is auth, with the server's SQLSTATE beside it", async () => {
    const { counted, logged } = await failuresFor(
      `postgres://postgres:wrong@127.0.0.1:${cluster.port}/postgres`,
    );
    expect([...counted.keys()]).toEqual(["auth 28P01"]);
    expect([...logged]).toEqual(["auth"]);
  });

  it("a peer that accepts and never answers is a timeout", async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const { port } = silent.address() as net.AddressInfo;
    try {
      const { counted, logged } = await failuresFor(
        `postgres://postgres:x@127.0.0.1:${port}/postgres?sslmode=disable`,
        { server_connect_timeout: "200ms" },
      );
      expect([...counted.keys()]).toEqual(["timeout 08006"]);
      expect([...logged]).toEqual(["timeout"]);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  it("a server without TLS under sslmode=require is tls", async () => {
    const { counted, logged } = await failuresFor(
      `postgres://postgres:${cluster.password}@127.0.0.1:${cluster.port}/postgres?sslmode=require`,
    );
    expect([...counted.keys()]).toEqual(["tls 08006"]);
    expect([...logged]).toEqual(["tls"]);
  });
});
