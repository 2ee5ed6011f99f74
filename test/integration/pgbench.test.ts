// pgbench through transaction pooling: every protocol mode, 50 clients over 5 servers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgBinDir } from "../helpers/pg-cluster.js";
import { run } from "../helpers/processes.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

describe("pgbench through transaction pooling (pool_size 5)", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  const env = () => ({ ...process.env, PGPASSWORD: cluster.password });
  const args = () => ["-h", "127.0.0.1", "-p", String(proxy.port), "-U", cluster.superuser];
  /** pgbench's tables have fixed names: a database of this file's own, the proxy's upstream. */
  const DB = "pgbench_bench";

  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.createDatabase(DB);
    proxy = await startProxy(cluster, { pool_size: 5 }, cluster.url({ database: DB }));
    const init = await run(`${pgBinDir()}/pgbench`, [...args(), "-i", "-s", "1", "-q", DB], {
      env: env(),
      timeoutMs: 60_000,
    });
    expect(init.code, init.stderr).toBe(0);
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  for (const mode of ["simple", "extended", "prepared"]) {
    it(`-M ${mode}: 50 clients finish with 0 failed transactions and at most 5 backends`, async () => {
      let maxBackends = 0;
      const watcher = setInterval(async () => {
        const rows = await cluster.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename = $1 AND pid <> pg_backend_pid()",
          [cluster.superuser],
        );
        maxBackends = Math.max(maxBackends, rows[0].n);
      }, 200);
      const result = await run(
        `${pgBinDir()}/pgbench`,
        [...args(), "-c", "50", "-j", "2", "-T", "5", "-M", mode, DB],
        { env: env(), timeoutMs: 60_000 },
      );
      clearInterval(watcher);
      expect(result.code, result.stderr + result.stdout).toBe(0);
      const processed = /number of transactions actually processed: (\d+)/.exec(result.stdout);
      expect(Number(processed?.[1])).toBeGreaterThan(100);
      const failed = /number of failed transactions: (\d+)/.exec(result.stdout);
      if (failed) expect(Number(failed[1])).toBe(0);
      // +1: the watcher's own connection is excluded by pid; the proxy never exceeds pool_size.
      expect(maxBackends).toBeLessThanOrEqual(5);
      expect(maxBackends).toBeGreaterThan(0);
    });
  }
});
