// POST /quitquitquit on the built CLI as a child process: the drain SIGTERM starts, then exit 0 (a
// Job whose main container finished ends its sidecar this way).
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { httpStatus, type SidecarProcess, spawnSidecar } from "../helpers/lifecycle-process.js";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { until } from "../helpers/until.js";

describe("POST /quitquitquit (CLI child process)", () => {
  let cluster: PgCluster;
  const running: SidecarProcess[] = [];
  const clients: pg.Client[] = [];

  beforeAll(async () => {
    cluster = await startCluster();
    await cluster.query("CREATE TABLE quit_rows (id int PRIMARY KEY)");
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.end().catch(() => {});
    for (const p of running.splice(0)) p.kill();
  });
  afterAll(async () => {
    await cluster?.destroy();
  });

  it("drains like SIGTERM: the open transaction commits, then the process exits 0", async () => {
    const p = await spawnSidecar([
      "--listen",
      "127.0.0.1:0",
      "--http-listen",
      "127.0.0.1:0",
      "--upstream",
      cluster.url({ database: "postgres" }),
      "--shutdown-timeout",
      "15s",
    ]);
    running.push(p);
    expect(await httpStatus(p.httpPort, "/startup")).toBe(200);
    expect(await httpStatus(p.httpPort, "/livez")).toBe(200);

    const client = new pg.Client({
      host: "127.0.0.1",
      port: p.port,
      user: cluster.superuser,
      password: cluster.password,
      database: "postgres",
    });
    clients.push(client);
    let ended = false;
    client.on("error", () => {});
    client.on("end", () => {
      ended = true;
    });
    await client.connect();
    await client.query("BEGIN");
    await client.query("INSERT INTO quit_rows VALUES (1)");

    const t0 = Date.now();
    const res = await fetch(`http://127.0.0.1:${p.httpPort}/quitquitquit`, { method: "POST" });
    expect(res.status).toBe(200);
    await p.waitForLog(/^\/quitquitquit: draining$/);
    await until("/readyz to fail", async () => (await httpStatus(p.httpPort, "/readyz")) === 503);
    expect(await httpStatus(p.httpPort, "/livez")).toBe(200);
    // A second request while draining changes nothing.
    expect(
      (await fetch(`http://127.0.0.1:${p.httpPort}/quitquitquit`, { method: "POST" })).status,
    ).toBe(200);

    // The transaction in flight finishes; after COMMIT the client is closed and the process exits.
    await client.query("INSERT INTO quit_rows VALUES (2)");
    await client.query("COMMIT");
    await until("the client to be closed", () => ended, 5000);
    const exit = await p.exited;
    expect(exit, p.output()).toMatchObject({ code: 0, signal: null });
    expect(exit.at - t0).toBeLessThan(15_000);
    expect(p.lines().some((l) => l.msg === "drained; exiting" && l.result === "drained")).toBe(
      true,
    );
    const rows = await cluster.query("SELECT id FROM quit_rows ORDER BY id");
    expect(rows.map((r: { id: number }) => r.id)).toEqual([1, 2]);
  });
});
