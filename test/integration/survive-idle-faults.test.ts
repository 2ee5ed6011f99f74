// Faults that must be invisible to every client: idle backends killed, idle_session_timeout, an
// outage shorter than query_wait_timeout (short form; `npm run chaos` runs them longer).
import { describe, expect, it } from "vitest";
import { faults, formatScenario, runScenario, type ScenarioResult } from "../helpers/chaos.js";

const seconds = Number(process.env.CHAOS_SECONDS ?? "6");

function expectInvisible(r: ScenarioResult): void {
  for (const [w, x] of Object.entries(r.workloads)) {
    expect(x?.firstErrors, `${w}: ${formatScenario(r)}`).toEqual([]);
    expect(x?.ops, w).toBeGreaterThan(0);
    expect(x?.failedOps, w).toBe(0);
    expect(x?.lostWrites, w).toBe(0);
    expect(x?.duplicatedWrites, w).toBe(0);
  }
}

// Faults land at random instants against a concurrent workload: a scenario that fails is run once
// more before it counts as failed (a systematic defect fails both runs).
describe("faults no client may notice", { retry: 1 }, () => {
  it("pg_terminate_backend of idle backends every 0.5 s: 0 errors in W1, W2, W3", async () => {
    const r = await runScenario({
      name: "terminate idle backends every 0.5 s",
      fault: faults.terminateIdle(500),
      durationMs: seconds * 1000,
      workloads: ["w1", "w2", "w3"],
      // More servers than busy clients, so some sit idle in the pool to be killed there.
      settings: { pool_size: 30 },
    });
    console.log(formatScenario(r));
    expectInvisible(r);
    // Killed servers are seen by their FATAL (terminated) or, when the kernel reset the socket
    // under a write, as network.
    expect((r.serversClosed.terminated ?? 0) + (r.serversClosed.network ?? 0)).toBeGreaterThan(0);
  });

  it("idle_session_timeout = 300ms on the server: 0 errors in W1 and W2", async () => {
    const r = await runScenario({
      name: "idle_session_timeout = 300ms",
      fault: faults.none(),
      clusterConf: { idle_session_timeout: "300ms" },
      durationMs: seconds * 1000,
      workloads: ["w1", "w2"],
      // A large pool leaves servers idle long enough for the server to time them out.
      settings: { min_pool_size: 2, pool_size: 20 },
    });
    console.log(formatScenario(r));
    expectInvisible(r);
    expect(r.serversClosed.server_timeout ?? 0).toBeGreaterThan(0);
  });

  // The stop itself (-m fast) terminates the statements running at that instant: with retry all
  // (LangGraph's idempotent upserts) they are replayed once the server is back; with safe, a write
  // cut off mid-flight is a non-fatal 08006 (the busy-kill case). Work arriving during the outage
  // waits and proceeds either way.
  it("upstream stopped (fast) for 3 s, query_wait_timeout 20 s, retry all: 0 errors in autocommit work", async () => {
    const r = await runScenario({
      name: "upstream down 3 s (retry all)",
      fault: faults.outage(3000),
      durationMs: seconds * 1000 + 3000,
      workloads: ["w1", "w2"],
      retry: "all",
    });
    console.log(formatScenario(r));
    // W1 (autocommit, as in the seed): nothing to see.
    expectInvisible({ ...r, workloads: { w1: r.workloads.w1 } });
    // W2's explicit transactions open at the moment of the stop are lost, and say so: 08006, then
    // ROLLBACK works and the retried operation completes. Nothing else fails.
    const w2 = r.workloads.w2;
    expect(w2?.failedOps).toBe(0);
    expect(w2?.readErrors).toBe(0);
    expect(w2?.closedErrors).toBe(0);
    expect(Object.keys(w2?.errorsBySqlstate ?? {}).filter((k) => k !== "08006")).toEqual([]);
    expect(w2?.writeErrors ?? 0).toBeLessThanOrEqual(8);
    expect(w2?.lostWrites).toBe(0);
  });
});
