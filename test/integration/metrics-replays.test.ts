// Replays in metrics: a unit whose backend is terminated before it replied is counted by outcome
// (succeeded, gave_up, not_retryable), next to the terminated server and the 08006 sent. The unit is
// a read-only SELECT: its RowDescription waits in the server's output buffer until the FATAL, and
// is held by the proxy (never forwarded), so the unit may be replayed. (A DO block would pin its
// client: unknown code may leave session state behind.)
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { until } from "../helpers/until.js";

const APP = { user: "replays_app", password: "app-pw" };
const SLEEP = "SELECT pg_sleep(1.5)";

describe("replay metrics", () => {
  let cluster: SharedCluster;
  const proxies: TestProxy[] = [];

  /** Terminates the backend running pg_sleep for APP as soon as it shows up; returns its pid. */
  async function killSleeper(exclude: number[] = []): Promise<number> {
    let pid: number | undefined;
    const sleeperRuns = async () => {
      const rows = await cluster.query(
        `SELECT pid FROM pg_stat_activity WHERE usename = '${APP.user}' AND state = 'active' AND query LIKE '%pg_sleep%'`,
      );
      pid = rows.map((r) => r.pid as number).find((p) => !exclude.includes(p));
      return pid !== undefined;
    };
    // Up to 15 s: a loaded 2-core machine can be slow to replay (check, reconnect, login).
    await until("a backend running pg_sleep", sleeperRuns, 15_000, 50);
    await cluster.query("SELECT pg_terminate_backend($1)", [pid]);
    return pid as number;
  }
  async function start(retry: string, retryMax = 1) {
    const p = await startProxy(cluster, {
      pool_size: 2,
      retry,
      retry_max: retryMax,
      users: [{ name: APP.user, password: APP.password }],
    });
    proxies.push(p);
    const c = new pg.Client(p.pgConfig(APP));
    c.on("error", () => {}); // the proxies stop while some clients are still connected
    await c.connect();
    await c.query("SELECT 1");
    return { stats: p.proxy.metrics.pool({ database: "postgres", user: APP.user }), c };
  }

  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.createUser(APP.user, APP.password);
  });
  afterAll(async () => {
    for (const p of proxies) await p.stop();
  });

  it("counts a replay that succeeded", async () => {
    const { stats, c } = await start("all");
    const q = c.query(SLEEP);
    await killSleeper();
    await q;
    expect(stats.replays).toEqual({ succeeded: 1, gave_up: 0, not_retryable: 0 });
    expect(stats.serversClosed.get("terminated")).toBe(1);
    await c.end();
  });

  it("counts a unit the policy does not replay as not_retryable, and the 08006 the client got", async () => {
    const { stats, c } = await start("off");
    const q = c.query(SLEEP).then(
      () => null,
      (e: unknown) => e,
    );
    await killSleeper();
    expect(await q).toMatchObject({ code: "08006" });
    expect(stats.replays).toEqual({ succeeded: 0, gave_up: 0, not_retryable: 1 });
    expect(stats.clientErrors.get("08006")).toBe(1);
    // The connection stays usable.
    expect((await c.query("SELECT 1 AS v")).rows[0].v).toBe(1);
    await c.end();
  });

  it("counts a unit lost again after retry_max replays once, as gave_up", async () => {
    const { stats, c } = await start("all", 1);
    const q = c.query(SLEEP).then(
      () => null,
      (e: unknown) => e,
    );
    const first = await killSleeper();
    await killSleeper([first]);
    expect(await q).toMatchObject({ code: "08006" });
    expect(stats.replays).toEqual({ succeeded: 0, gave_up: 1, not_retryable: 0 });
    expect(stats.serversClosed.get("terminated")).toBe(2);
    await c.end();
  });
});
