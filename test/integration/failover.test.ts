// A failover behind the sidecar (issue 12, done-when 1 and 2): a primary and a synchronous
// streaming standby (pg_basebackup -R, both throwaway clusters here), the sidecar's upstream naming
// both with target_session_attrs=read-write, the seed's psycopg workload (W1) running while the
// primary stops and the standby is promoted. Rows are checked on the new primary afterwards.
import { describe, expect, it } from "vitest";
import { faults, formatScenario, runScenario, type ScenarioResult } from "../helpers/chaos.js";

/** What an interrupted write may report under retry: safe (DESIGN.md section 1). */
const LOST_CONNECTION = new Set(["08006", "08007"]);
const SECONDS = 12;
/** The sidecar's own reconnect backoff defaults (runScenario shortens them for other faults). */
const DEFAULT_BACKOFF = { server_login_retry: "0.5s", server_login_retry_max: "10s" };

function checkData(r: ScenarioResult): void {
  const w1 = r.workloads.w1;
  const where = formatScenario(r);
  expect(w1, where).toBeDefined();
  if (!w1) return;
  expect(w1.ops, where).toBeGreaterThan(0);
  expect(w1.checkedWrites, where).toBeGreaterThan(0);
  expect(w1.lostWrites, where).toBe(0);
  expect(w1.failedOps, where).toBe(0);
  expect(w1.closedErrors, where).toBe(0);
  // Nothing waits for a writer forever: writes were acknowledged after the promotion.
  expect(r.firstAckAfterPromotionMs, where).not.toBeNull();
  // A failover is not the client's business: the old writer's refusal never reaches it.
  expect(w1.errorsBySqlstate["25006"] ?? 0, where).toBe(0);
  console.log(where);
}

describe("failover to a promoted standby", { timeout: 180_000 }, () => {
  for (const mode of ["fast", "immediate"] as const) {
    it(`primary stopped (${mode}), standby promoted, retry all: no error, no acknowledged write lost`, async () => {
      const r = await runScenario({
        name: `failover, primary stop -m ${mode} (retry all)`,
        fault: faults.failover(mode, { afterMs: 1500, downMs: 1500 }),
        durationMs: SECONDS * 1000,
        workloads: ["w1"],
        retry: "all",
        standby: true,
        settings: DEFAULT_BACKOFF,
      });
      checkData(r);
      expect(r.workloads.w1?.firstErrors, formatScenario(r)).toEqual([]);
    });
  }

  it("retry safe: only 08006/08007 on writes in flight; the old primary back as a standby is skipped without a 25006", async () => {
    const r = await runScenario({
      name: "failover, primary stop -m fast, old primary returns as a standby (retry safe)",
      fault: faults.failover("fast", { afterMs: 1500, downMs: 1500, oldPrimaryReturns: true }),
      durationMs: SECONDS * 1000,
      workloads: ["w1"],
      retry: "safe",
      standby: true,
      settings: DEFAULT_BACKOFF,
    });
    checkData(r);
    // The sidecar logged in to the old primary again once it was back read-only, and moved on.
    expect(r.observed.appLoginsOnOldPrimary, formatScenario(r)).toBeGreaterThan(0);
    const w1 = r.workloads.w1;
    const where = formatScenario(r);
    expect(w1?.readErrors, where).toBe(0);
    expect(
      Object.keys(w1?.errorsBySqlstate ?? {}).filter((k) => !LOST_CONNECTION.has(k)),
      where,
    ).toEqual([]);
    // No row was applied twice: safe never replays a write that may have run.
    expect(w1?.duplicatedWrites, where).toBe(0);
  });
});
