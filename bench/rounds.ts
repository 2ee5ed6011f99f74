// Rounds: one interleaved pass over every target (a rep of a scenario). On a shared VM the
// hypervisor may take a third of both CPUs for minutes; a round it disturbed measures the
// hypervisor, not the poolers, and one such round decides a median of five. A round in which any
// sample lost more than --max-steal of the machine is taken again, whole (so every target's figures
// still come from the same minutes), at most --steal-retakes times; the least disturbed is kept.

/** What the report says of the retakes. */
export interface RetakeTally {
  /** A sample above this share of the machine stolen disturbs its round (%). */
  limitPct: number;
  /** Retakes allowed per round (0: none). */
  retakes: number;
  rounds: number;
  /** Rounds taken more than once. */
  retaken: number;
  /** Extra rounds run. */
  extraRounds: number;
  /** Rounds kept above the limit (every retake was disturbed too). */
  keptOver: number;
}

export function newTally(limitPct: number, retakes: number): RetakeTally {
  return { limitPct, retakes, rounds: 0, retaken: 0, extraRounds: 0, keptOver: 0 };
}

/** The most any sample of a round lost to the hypervisor (NaN: unknown, counted as 0). */
export function roundSteal(samples: ReadonlyArray<{ stealPct: number }>): number {
  let worst = 0;
  for (const s of samples)
    if (Number.isFinite(s.stealPct) && s.stealPct > worst) worst = s.stealPct;
  return worst;
}

/**
 * Runs `take` (one round) until a take stays within the limit or the retakes are spent; returns
 * the least disturbed take. `say` logs each retake.
 */
export async function steadyRound<S extends { stealPct: number }>(
  take: () => Promise<S[]>,
  tally: RetakeTally,
  say: (line: string) => void,
): Promise<S[]> {
  tally.rounds++;
  let best = await take();
  let bestSteal = roundSteal(best);
  for (let i = 0; i < tally.retakes && bestSteal > tally.limitPct; i++) {
    if (i === 0) tally.retaken++;
    tally.extraRounds++;
    say(`round disturbed (${bestSteal.toFixed(0)} % stolen by the hypervisor): taken again`);
    const again = await take();
    const steal = roundSteal(again);
    if (steal < bestSteal) {
      best = again;
      bestSteal = steal;
    }
  }
  if (bestSteal > tally.limitPct) tally.keptOver++;
  return best;
}

/** The report's line on retakes. */
export function retakeLine(t: RetakeTally): string {
  if (t.retakes === 0 || t.rounds === 0) return "rounds are not re-taken (--steal-retakes 0)";
  return (
    `a round with a sample above ${t.limitPct} % stolen is taken again (up to ${t.retakes}×): ` +
    `${t.retaken} of ${t.rounds} rounds re-taken (${t.extraRounds} extra), ${t.keptOver} kept above the limit`
  );
}
