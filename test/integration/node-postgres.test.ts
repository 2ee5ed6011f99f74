// node-postgres Pool through transaction pooling: 50 concurrent clients over 3 servers.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

describe("node-postgres Pool, 50 clients, transaction pooling with pool_size 3", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  let pool: pg.Pool;

  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.query("CREATE TABLE nodepg_accounts (id int PRIMARY KEY, balance int NOT NULL)");
    await cluster.query("INSERT INTO nodepg_accounts SELECT g, 1000 FROM generate_series(1, 50) g");
    proxy = await startProxy(cluster, { pool_size: 3 });
    pool = new pg.Pool({ ...proxy.pgConfig(), max: 50 });
  });
  afterAll(async () => {
    await pool?.end();
    await proxy?.stop();
  });

  it("parameterized queries return correct results", async () => {
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        pool.query("SELECT $1::int * 2 AS v, $2::text AS t", [i, `x${i}`]),
      ),
    );
    for (const [i, r] of results.entries()) expect(r.rows[0]).toEqual({ v: i * 2, t: `x${i}` });
  });

  it("BEGIN/COMMIT and BEGIN/ROLLBACK keep their effects and isolation", async () => {
    await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const id = i + 1;
        const c = await pool.connect();
        try {
          await c.query("BEGIN");
          await c.query("UPDATE nodepg_accounts SET balance = balance - 10 WHERE id = $1", [id]);
          const mid = await c.query("SELECT balance FROM nodepg_accounts WHERE id = $1", [id]);
          expect(mid.rows[0].balance).toBe(990);
          await c.query(i % 2 === 0 ? "COMMIT" : "ROLLBACK");
        } finally {
          c.release();
        }
      }),
    );
    const rows = await cluster.query("SELECT id, balance FROM nodepg_accounts ORDER BY id");
    for (const r of rows) expect(r.balance).toBe(r.id % 2 === 1 ? 990 : 1000);
  });

  it("an error inside a transaction aborts it until ROLLBACK, then the client works", async () => {
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        const c = await pool.connect();
        try {
          await c.query("BEGIN");
          await expect(c.query("SELECT 1/0")).rejects.toMatchObject({ code: "22012" });
          await expect(c.query("SELECT 1")).rejects.toMatchObject({ code: "25P02" });
          await c.query("ROLLBACK");
          const r = await c.query("SELECT 2 AS two");
          expect(r.rows[0].two).toBe(2);
        } finally {
          c.release();
        }
      }),
    );
  });

  it("a query error outside a transaction leaves the client usable", async () => {
    const c = await pool.connect();
    try {
      await expect(c.query("SELECT * FROM no_such_table")).rejects.toMatchObject({ code: "42P01" });
      await expect(c.query("SELECT $1::int", ["x"])).rejects.toMatchObject({ code: "22P02" });
      expect((await c.query("SELECT 3 AS three")).rows[0].three).toBe(3);
    } finally {
      c.release();
    }
  });

  it("named queries ({ name, text, values }) from 50 clients run with 0 errors", async () => {
    const shapes = [
      "SELECT $1::int + 1 AS v",
      "SELECT balance FROM nodepg_accounts WHERE id = $1",
      "SELECT count(*)::int AS v FROM nodepg_accounts WHERE balance > $1",
    ];
    let errors = 0;
    await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const c = await pool.connect();
        try {
          for (let k = 0; k < 30; k++) {
            const shape = (i + k) % shapes.length;
            const r = await c.query({
              name: `q${shape}`,
              text: shapes[shape],
              values: [(k % 50) + 1],
            });
            if (shape === 0) expect(r.rows[0].v).toBe((k % 50) + 2);
            expect(r.rows.length).toBe(1);
          }
        } catch {
          errors++;
        } finally {
          c.release();
        }
      }),
    );
    expect(errors).toBe(0);
  });

  it("never holds more than pool_size servers", async () => {
    const rows = await cluster.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    );
    expect(rows[0].n).toBeLessThanOrEqual(3);
  });
});
