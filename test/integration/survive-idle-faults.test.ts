// Faults that must be invisible to every client: idle backends killed, idle_session_timeout, an
// outage shorter than query_wait_timeout (short form; `npm run chaos` runs them longer).
import { describe, expect, it } from "vitest";
import { faults, formatScenario, runScenario, type ScenarioResult } from "../helpers/chaos.js";

/** What an interrupted write may report: 08006 (it did not run, or was rolled back) or 08007
 * (it may have committed: DESIGN.md section 1). */
const LOST_CONNECTION = new Set(["08006", "08007"]);

const seconds = Number(process.env.CHAOS_SECONDS ?? "6");

function expectInvisible(r: ScenarioResult): void {
  for (const [w, x] of Object.entries(r.workloads)) {
    const where = `${w}: ${formatScenario(r)}`;
    expect(x?.firstErrors, where).toEqual([]);
    expect(x?.ops, where).toBeGreaterThan(0);
    expect(x?.failedOps, where).toBe(0);
    expect(x?.checkedWrites, where).toBeGreaterThan(0);
    expect(x?.lostWrites, where).toBe(0);
    // retry: all replays writes by design (idempotent workloads): a second application is allowed.
    if (r.retry !== "all") expect(x?.duplicatedWrites, where).toBe(0);
  }
}

// No vitest retry: a violated promise is a bug the first time it is seen, wherever the fault landed.
describe("faults no client may notice", () => {
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
    expect(
      (r.serversClosed.terminated ?? 0) + (r.serversClosed.network ?? 0),
      formatScenario(r),
    ).toBeGreaterThan(0);
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
    expect(r.serversClosed.server_timeout ?? 0, formatScenario(r)).toBeGreaterThan(0);
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
    const where = `w2: ${formatScenario(r)}`;
    expect(w2?.failedOps, where).toBe(0);
    expect(w2?.readErrors, where).toBe(0);
    expect(w2?.closedErrors, where).toBe(0);
    expect(
      Object.keys(w2?.errorsBySqlstate ?? {}).filter((k) => !LOST_CONNECTION.has(k)),
      where,
    ).toEqual([]);
    expect(w2?.writeErrors ?? 0, where).toBeLessThanOrEqual(8);
    expect(w2?.checkedWrites ?? 0, where).toBeGreaterThan(0);
    expect(w2?.lostWrites, where).toBe(0);
  });
});
