// The bench's rule for rounds the hypervisor disturbed: taken again whole, the least disturbed kept.
import { describe, expect, it } from "vitest";
import { newTally, retakeLine, roundSteal, steadyRound } from "../../bench/rounds.js";

/** A round-taker that returns the given steal figures, one round per call. */
function rounds(...steals: number[][]) {
  let call = 0;
  const take = async () => (steals[call++] ?? []).map((stealPct) => ({ stealPct, call }));
  return { take, calls: () => call };
}

describe("bench rounds", () => {
  it("keeps a quiet round as it is", async () => {
    const tally = newTally(5, 2);
    const r = rounds([1, 4, 2]);
    const kept = await steadyRound(r.take, tally, () => {});
    expect(r.calls()).toBe(1);
    expect(kept.map((s) => s.stealPct)).toEqual([1, 4, 2]);
    expect(tally).toMatchObject({ rounds: 1, retaken: 0, extraRounds: 0, keptOver: 0 });
  });

  it("takes a disturbed round again, and keeps the first quiet take", async () => {
    const tally = newTally(5, 2);
    const r = rounds([1, 30, 2], [2, 3, 1], [0, 0, 0]);
    const said: string[] = [];
    const kept = await steadyRound(r.take, tally, (l) => said.push(l));
    expect(r.calls()).toBe(2);
    expect(kept.map((s) => s.stealPct)).toEqual([2, 3, 1]);
    expect(said).toEqual(["round disturbed (30 % stolen by the hypervisor): taken again"]);
    expect(tally).toMatchObject({ rounds: 1, retaken: 1, extraRounds: 1, keptOver: 0 });
  });

  it("keeps the least disturbed take when every retake is disturbed, and counts it", async () => {
    const tally = newTally(5, 2);
    const r = rounds([40], [12], [20], [0]);
    const kept = await steadyRound(r.take, tally, () => {});
    expect(r.calls()).toBe(3); // the first take and two retakes, never a fourth
    expect(kept[0].stealPct).toBe(12);
    expect(tally).toMatchObject({ rounds: 1, retaken: 1, extraRounds: 2, keptOver: 1 });
    expect(retakeLine(tally)).toBe(
      "a round with a sample above 5 % stolen is taken again (up to 2×): 1 of 1 rounds re-taken (2 extra), 1 kept above the limit",
    );
  });

  it("never retakes with --steal-retakes 0, and ignores unknown steal", async () => {
    const tally = newTally(5, 0);
    const r = rounds([50]);
    await steadyRound(r.take, tally, () => {});
    expect(r.calls()).toBe(1);
    expect(tally.keptOver).toBe(1);
    expect(roundSteal([{ stealPct: Number.NaN }, { stealPct: 3 }])).toBe(3);
    expect(retakeLine(tally)).toBe("rounds are not re-taken (--steal-retakes 0)");
  });
});
