// Backend churn: with server_lifetime = 1 s servers are replaced continuously, and named prepared
// statements are re-prepared on new servers without any client noticing.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgBinDir } from "../helpers/pg-cluster.js";
import { run } from "../helpers/processes.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { runPsycopg } from "../helpers/psycopg.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

/** pgbench's and the psycopg workload's tables: a database of this file's own, the upstream's. */
const DB = "churn";

describe("named statements under continuous server churn (server_lifetime 1 s)", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.createDatabase(DB);
    proxy = await startProxy(
      cluster,
      { pool_size: 3, server_lifetime: "1s" },
      cluster.url({ database: DB }),
    );
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  const reprepares = async () => {
    const m = proxy.proxy.metrics.registry.getSingleMetric(
      "pgsidecar_prepared_statement_lookups_total",
    );
    const values = m ? (await m.get()).values : [];
    return values.filter((v) => v.labels.result === "reprepare").reduce((n, v) => n + v.value, 0);
  };
  const lifetimeClosed = async () => {
    const m = proxy.proxy.metrics.registry.getSingleMetric(
      "pgsidecar_server_connections_closed_total",
    );
    const values = m ? (await m.get()).values : [];
    return values.filter((v) => v.labels.reason === "lifetime").reduce((n, v) => n + v.value, 0);
  };

  it("psycopg prepare_threshold=0, 30 tasks, plain and in transactions: 0 errors", async () => {
    const before = await reprepares();
    const r = await runPsycopg(proxy.url({ database: DB }), {
      PREPARE_THRESHOLD: "0",
      EXECUTIONS: "3000",
      MODES: "plain,transaction",
    });
    expect(r.first_errors).toEqual([]);
    expect(r).toMatchObject({ done: 6000, wrong: 0, errors: 0 });
    console.log(
      `psycopg: ${(await reprepares()) - before} re-Parses, ${await lifetimeClosed()} servers retired`,
    );
    expect(await lifetimeClosed()).toBeGreaterThan(0);
  });

  it("node-postgres named queries from 50 clients: 0 errors", async () => {
    const before = await reprepares();
    const pool = new pg.Pool({ ...proxy.pgConfig({ database: DB }), max: 50 });
    let errors = 0;
    const deadline = Date.now() + 4000;
    await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const c = await pool.connect();
        try {
          for (let k = 0; Date.now() < deadline; k++) {
            const r = await c.query({
              name: `q${k % 3}`,
              text: `SELECT $1::int + ${k % 3} AS v`,
              values: [i],
            });
            if (r.rows[0].v !== i + (k % 3)) errors++;
          }
        } catch {
          errors++;
        } finally {
          c.release();
        }
      }),
    );
    await pool.end();
    expect(errors).toBe(0);
    console.log(`node-postgres: ${(await reprepares()) - before} re-Parses`);
    expect((await reprepares()) - before).toBeGreaterThan(0);
  });

  it("pgbench -M prepared -c 50 -j 2: 0 failed transactions", async () => {
    const env = { ...process.env, PGPASSWORD: cluster.password };
    const args = ["-h", "127.0.0.1", "-p", String(proxy.port), "-U", cluster.superuser];
    const init = await run(`${pgBinDir()}/pgbench`, [...args, "-i", "-s", "1", "-q", DB], {
      env,
    });
    expect(init.code, init.stderr).toBe(0);
    const before = await reprepares();
    const r = await run(
      `${pgBinDir()}/pgbench`,
      [...args, "-c", "50", "-j", "2", "-T", "6", "-M", "prepared", DB],
      {
        env,
        timeoutMs: 60_000,
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(Number(/number of failed transactions: (\d+)/.exec(r.stdout)?.[1] ?? 0)).toBe(0);
    expect(Number(/actually processed: (\d+)/.exec(r.stdout)?.[1])).toBeGreaterThan(100);
    console.log(`pgbench: ${(await reprepares()) - before} re-Parses`);
  });
});
