// The full fault-injection suite (`npm run chaos`): every fault against W1 (psycopg checkpointer
// mix), W2 (node-postgres with explicit transactions) and W3 (pgbench -M extended), longer than the
// CI short form, with a table per scenario written to tmp/chaos-report.md.
import { mkdirSync, writeFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import {
  type Fault,
  faults,
  formatScenario,
  runScenario,
  type ScenarioResult,
  type Workload,
} from "../helpers/chaos.js";

/** What an interrupted write may report: 08006 (it did not run, or was rolled back) or 08007
 * (it may have committed: DESIGN.md section 1). */
const LOST_CONNECTION = new Set(["08006", "08007"]);

const seconds = Number(process.env.CHAOS_SECONDS ?? "20");
const report: string[] = [];

interface Case {
  name: string;
  fault: Fault;
  workloads: Workload[];
  retry: "safe" | "all";
  /** "invisible": no client error at all; "safe": the safe-policy guarantees. */
  expect: "invisible" | "safe";
  clusterConf?: Record<string, string | number>;
  settings?: Record<string, unknown>;
  extraMs?: number;
}

const cases: Case[] = [
  {
    name: "terminate idle servers every 0.5 s",
    fault: faults.terminateIdle(500),
    workloads: ["w1", "w2", "w3"],
    retry: "safe",
    expect: "invisible",
    settings: { pool_size: 30 },
  },
  {
    name: "idle_session_timeout = 300ms",
    fault: faults.none(),
    workloads: ["w1", "w2", "w3"],
    retry: "safe",
    expect: "invisible",
    clusterConf: { idle_session_timeout: "300ms" },
    settings: { pool_size: 20, min_pool_size: 2 },
  },
  {
    name: "upstream down 10 s, query_wait_timeout 20 s (retry all)",
    fault: faults.outage(10_000, 3000),
    workloads: ["w1"],
    retry: "all",
    expect: "invisible",
    extraMs: 10_000,
  },
  {
    name: "terminate all servers every 0.7 s (retry all)",
    fault: faults.terminateAll(700),
    workloads: ["w1"],
    retry: "all",
    expect: "invisible",
  },
  {
    name: "terminate all servers every 0.7 s (retry safe)",
    fault: faults.terminateAll(700),
    workloads: ["w1", "w2"],
    retry: "safe",
    expect: "safe",
  },
  {
    name: "restart -m fast every 5 s (retry all)",
    fault: faults.restart("fast", 5000),
    workloads: ["w1"],
    retry: "all",
    expect: "invisible",
  },
  {
    name: "restart -m fast every 5 s (retry safe)",
    fault: faults.restart("fast", 5000),
    workloads: ["w1", "w2"],
    retry: "safe",
    expect: "safe",
  },
  {
    name: "restart -m immediate every 5 s (retry safe)",
    fault: faults.restart("immediate", 5000),
    workloads: ["w1", "w2"],
    retry: "safe",
    expect: "safe",
  },
  {
    name: "kill -9 of a backend every 4 s (retry all)",
    fault: faults.killBackend(4000),
    workloads: ["w1"],
    retry: "all",
    expect: "invisible",
  },
  {
    name: "kill -9 of a backend every 4 s (retry safe)",
    fault: faults.killBackend(4000),
    workloads: ["w1", "w2"],
    retry: "safe",
    expect: "safe",
  },
];

function check(r: ScenarioResult, mode: Case["expect"]): void {
  for (const [w, x] of Object.entries(r.workloads)) {
    if (!x) continue;
    const where = `${w}: ${formatScenario(r)}`;
    expect(x.ops, where).toBeGreaterThan(0);
    expect(x.closedErrors, where).toBe(0);
    expect(x.checkedWrites, where).toBeGreaterThan(0);
    expect(x.lostWrites, where).toBe(0);
    expect(x.failedOps, where).toBe(0);
    // retry: all replays writes by design (idempotent workloads): a second application is allowed.
    if (r.retry !== "all") expect(x.duplicatedWrites, where).toBe(0);
    if (mode === "invisible") expect(x.firstErrors, where).toEqual([]);
    else {
      expect(x.readErrors, where).toBe(0);
      expect(
        Object.keys(x.errorsBySqlstate).filter((k) => !LOST_CONNECTION.has(k)),
        where,
      ).toEqual([]);
    }
  }
}

describe(`chaos suite (${seconds} s per scenario)`, () => {
  afterAll(() => {
    mkdirSync("tmp", { recursive: true });
    const text = `# pgsidecar chaos report\n\n${new Date().toISOString()}, ${seconds} s per scenario\n\n${report.join("\n\n")}\n`;
    writeFileSync("tmp/chaos-report.md", text);
    console.log(text);
  });

  for (const c of cases) {
    it(c.name, { timeout: (seconds + 120) * 1000 + (c.extraMs ?? 0) }, async () => {
      const r = await runScenario({
        name: c.name,
        fault: c.fault,
        durationMs: seconds * 1000 + (c.extraMs ?? 0),
        workloads: c.workloads,
        retry: c.retry,
        clusterConf: c.clusterConf,
        settings: c.settings,
      });
      report.push(formatScenario(r));
      check(r, c.expect);
    });
  }
});
