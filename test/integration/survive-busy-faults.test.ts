// Faults that hit servers while they work: pg_terminate_backend of all servers, restarts, a killed
// backend (crash recovery). Short form; `npm run chaos` runs them longer and prints the tables.
import { describe, expect, it } from "vitest";
import {
  faults,
  formatScenario,
  runScenario,
  type ScenarioResult,
  type WorkloadResult,
} from "../helpers/chaos.js";

/** What an interrupted write may report: 08006 (it did not run, or was rolled back) or 08007
 * (it may have committed: DESIGN.md section 1). */
const LOST_CONNECTION = new Set(["08006", "08007"]);

const seconds = Number(process.env.CHAOS_SECONDS ?? "8");

/**
 * The promises that hold whatever the fault: nothing acknowledged lost, no connection broken, and
 * (unless the policy is `all`, which replays writes by design) no write applied more often than
 * the client sent it.
 */
function expectSafe(r: ScenarioResult): void {
  for (const [w, x] of Object.entries(r.workloads) as Array<[string, WorkloadResult]>) {
    const where = `${w}: ${formatScenario(r)}`;
    expect(x.ops, where).toBeGreaterThan(0);
    expect(x.closedErrors, where).toBe(0);
    expect(x.checkedWrites, where).toBeGreaterThan(0);
    expect(x.lostWrites, where).toBe(0);
    if (r.retry !== "all") expect(x.duplicatedWrites, where).toBe(0);
  }
}

/** retry: safe — reads are never failed; a failed write is a non-fatal 08006 or 08007; client retries finish every operation. */
function expectSafePolicy(r: ScenarioResult): void {
  expectSafe(r);
  for (const [w, x] of Object.entries(r.workloads) as Array<[string, WorkloadResult]>) {
    expect(x.readErrors, `${w}: ${formatScenario(r)}`).toBe(0);
    expect(
      Object.keys(x.errorsBySqlstate).filter((k) => !LOST_CONNECTION.has(k)),
      `${w}: ${formatScenario(r)}`,
    ).toEqual([]);
    expect(x.failedOps, `${w}: ${formatScenario(r)}`).toBe(0);
  }
}

// No vitest retry: a violated promise is a bug the first time it is seen, wherever the fault landed.
describe("faults on busy servers", () => {
  it("pg_terminate_backend of all servers every 0.7 s, retry all: W1 sees 0 errors", async () => {
    const r = await runScenario({
      name: "terminate all every 0.7 s (retry all)",
      fault: faults.terminateAll(700),
      durationMs: seconds * 1000,
      workloads: ["w1"],
      retry: "all",
    });
    console.log(formatScenario(r));
    expectSafe(r);
    expect(r.workloads.w1?.firstErrors, formatScenario(r)).toEqual([]);
    expect(r.replays.succeeded ?? 0, formatScenario(r)).toBeGreaterThan(0);
  });

  it("pg_terminate_backend of all servers every 0.7 s, retry safe: reads never fail, writes fail only as 08006/08007", async () => {
    const r = await runScenario({
      name: "terminate all every 0.7 s (retry safe)",
      fault: faults.terminateAll(700),
      durationMs: seconds * 1000,
      workloads: ["w1", "w2"],
    });
    console.log(formatScenario(r));
    expectSafePolicy(r);
  });

  it("pg_ctl restart -m fast every 4 s, retry safe: reads never fail, writes fail only as 08006/08007", async () => {
    const r = await runScenario({
      name: "restart -m fast every 4 s",
      fault: faults.restart("fast", 4000),
      durationMs: seconds * 1000 + 2000,
      workloads: ["w1", "w2"],
    });
    console.log(formatScenario(r));
    expectSafePolicy(r);
  });

  it("restart -m fast and a killed backend with retry all: W1 sees 0 errors", async () => {
    for (const [name, fault] of [
      ["restart -m fast every 4 s (retry all)", faults.restart("fast", 4000)],
      ["kill -9 of a backend every 3 s (retry all)", faults.killBackend(3000)],
    ] as const) {
      const r = await runScenario({
        name,
        fault,
        durationMs: seconds * 1000,
        workloads: ["w1"],
        retry: "all",
      });
      console.log(formatScenario(r));
      expectSafe(r);
      expect(r.workloads.w1?.firstErrors, formatScenario(r)).toEqual([]);
    }
  });

  it("pg_ctl restart -m immediate, and a killed backend (crash recovery): safe policy holds", async () => {
    for (const [name, fault] of [
      ["restart -m immediate every 4 s", faults.restart("immediate", 4000)],
      ["kill -9 of a backend every 3 s", faults.killBackend(3000)],
    ] as const) {
      const r = await runScenario({
        name,
        fault,
        durationMs: seconds * 1000,
        workloads: ["w1", "w2"],
      });
      console.log(formatScenario(r));
      expectSafePolicy(r);
    }
  });
});
