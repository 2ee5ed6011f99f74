// psycopg 3 (Debian's python3-psycopg) AsyncConnectionPool through transaction pooling, configured
// as LangGraph's checkpointer is in shared/seed: autocommit, dict_row, prepare_threshold=0.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { runPsycopg } from "../helpers/psycopg.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

describe("psycopg AsyncConnectionPool through transaction pooling (pool_size 3)", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;

  beforeAll(async () => {
    cluster = await sharedCluster();
    proxy = await startProxy(cluster, { pool_size: 3 });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it("prepare_threshold=None, 30 tasks: correct results", async () => {
    const r = await runPsycopg(proxy.url(), {
      PREPARE_THRESHOLD: "none",
      EXECUTIONS: "1500",
      MODES: "plain,transaction",
    });
    expect(r.first_errors).toEqual([]);
    expect(r).toMatchObject({ done: 3000, wrong: 0, errors: 0 });
  });

  it("prepare_threshold=0 (the seed's config), 10 shapes, 5,000 executions plain and 5,000 in transactions: 0 errors", async () => {
    const r = await runPsycopg(proxy.url(), {
      PREPARE_THRESHOLD: "0",
      EXECUTIONS: "5000",
      MODES: "plain,transaction",
    });
    expect(r.first_errors).toEqual([]);
    expect(r).toMatchObject({ done: 9960, wrong: 0, errors: 0 });
  });

  it("pipeline mode (conn.pipeline()), prepare_threshold=0: 0 errors", async () => {
    const r = await runPsycopg(proxy.url(), {
      PREPARE_THRESHOLD: "0",
      EXECUTIONS: "3000",
      MODES: "pipeline",
    });
    expect(r.first_errors).toEqual([]);
    expect(r).toMatchObject({ done: 3000, wrong: 0, errors: 0 });
  });
});
