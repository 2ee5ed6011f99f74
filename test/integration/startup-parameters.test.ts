// Every startup parameter honoured as Postgres honours it (issue 13 item 3), in both pool modes:
// node-postgres's statement_timeout / idle_in_transaction_session_timeout / lock_timeout travel
// in its StartupMessage; psql's `options -c`; a value Postgres rejects gets Postgres's FATAL.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../helpers/processes.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

describe("startup parameters", () => {
  let cluster: SharedCluster;
  const proxies = new Map<string, TestProxy>();
  beforeAll(async () => {
    cluster = await sharedCluster();
    proxies.set("transaction", await startProxy(cluster, { pool_size: 2 }));
    proxies.set("session", await startProxy(cluster, { pool_size: 2, pool_mode: "session" }));
  });
  afterAll(async () => {
    for (const p of proxies.values()) await p.stop();
  });

  const targets = () =>
    [
      ["direct", { host: "127.0.0.1", port: cluster.port }],
      ...[...proxies].map(([mode, p]) => [mode, { host: "127.0.0.1", port: p.port }] as const),
    ] as const;

  it("node-postgres connection options take effect, directly and through the sidecar in both modes", async () => {
    for (const [where, at] of targets()) {
      const c = new pg.Client({
        ...at,
        user: cluster.superuser,
        password: cluster.password,
        database: "postgres",
        statement_timeout: 1234,
        idle_in_transaction_session_timeout: 4321,
        lock_timeout: 2345,
      } as pg.ClientConfig);
      await c.connect();
      for (let i = 0; i < 5; i++) {
        const r = await c.query(
          "SELECT current_setting('statement_timeout') AS s, current_setting('idle_in_transaction_session_timeout') AS i, current_setting('lock_timeout') AS l",
        );
        expect(r.rows[0], where).toEqual({ s: "1234ms", i: "4321ms", l: "2345ms" });
      }
      await expect(c.query("SELECT pg_sleep(2)"), where).rejects.toMatchObject({ code: "57014" });
      await c.end();
    }
  });

  it("a value Postgres rejects at login gets the same FATAL through the sidecar", async () => {
    for (const [where, at] of targets()) {
      const r = await run(
        "psql",
        [
          "-h",
          at.host,
          "-p",
          String(at.port),
          "-U",
          cluster.superuser,
          "-d",
          "postgres",
          "-Atc",
          "SELECT 1",
        ],
        {
          env: {
            ...process.env,
            PGPASSWORD: cluster.password,
            PGOPTIONS: "-c statement_timeout=abc",
          },
        },
      );
      expect(r.code, where).not.toBe(0);
      expect(r.stderr, where).toContain(
        'FATAL:  invalid value for parameter "statement_timeout": "abc"',
      );
      expect(r.stdout, where).toBe("");
    }
  });
});
