// The bench's latency added over direct Postgres: paired by round, so a slow minute cancels out.
import { describe, expect, it } from "vitest";
import { addedLatencyUs, type Cell, cellKey, type Sample } from "../../bench/report.js";

const sample = (p50Ms: number, ok = true): Sample => ({
  ok,
  tps: 1,
  latencyAvgMs: p50Ms,
  latencyP50Ms: p50Ms,
  latencyP99Ms: p50Ms * 2,
  transactions: 1,
  cpuMs: 0,
  wallMs: 1,
  stealPct: 0,
  error: ok ? null : "failed",
});

function report(rounds: Record<string, Array<number | null>>) {
  const cells = new Map<string, Cell>();
  for (const [target, p50s] of Object.entries(rounds))
    cells.set(cellKey("lat", target), {
      samples: p50s.map((p) => (p === null ? sample(0, false) : sample(p))),
    });
  return { cells };
}

describe("addedLatencyUs", () => {
  it("takes the median of each round's difference, not the difference of medians", () => {
    // Round 2 is a slow minute for both: paired it adds +20 µs like the others; the medians'
    // difference (0.180 - 0.130 ms) would say +50.
    const r = report({ postgres: [0.1, 0.3, 0.13], proxy: [0.12, 0.32, 0.18] });
    expect(addedLatencyUs(r, "lat", "proxy", "latencyP50Ms")).toBeCloseTo(20, 6);
    expect(addedLatencyUs(r, "lat", "proxy", "latencyP99Ms")).toBeCloseTo(40, 6);
  });

  it("leaves out rounds where either sample failed; NaN when none is left", () => {
    const r = report({ postgres: [0.1, null, 0.1], proxy: [0.15, 0.2, null] });
    expect(addedLatencyUs(r, "lat", "proxy", "latencyP50Ms")).toBeCloseTo(50, 6);
    expect(
      addedLatencyUs(report({ postgres: [null], proxy: [0.1] }), "lat", "proxy", "latencyP50Ms"),
    ).toBeNaN();
    expect(addedLatencyUs(r, "lat", "absent", "latencyP50Ms")).toBeNaN();
  });
});
