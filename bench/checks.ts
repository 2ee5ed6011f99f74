// Issue 14's "Done when" targets, checked against the medians of one run. Keep in sync with the
// issue and with the Targets section of bench/README.md. A benchmark, not a test: nothing here
// decides the exit code.

import {
  addedLatencyUs,
  type BenchReport,
  BOUNCER,
  DIRECT,
  f,
  get,
  perClientKiB,
  RELAY,
  ratio,
  type Summary,
  seedSummary,
  table,
} from "./report.js";

export const SEED_BOUNCER = "pgbouncer-session";

/** The thresholds. */
export const TARGETS = {
  preparedVsRelay: 0.9,
  tpsVsRelay: 0.95,
  cpuVsRelay: 1.2,
  idleKiBAt10k: 5,
  idleKiBAt1k: 8,
  addedP50VsBouncer: 1.5,
  seedVsBouncerSession: 0.95,
};

export interface Check {
  what: string;
  /** pgsidecar's own figure. */
  value: string;
  vsRelay: string;
  vsBouncer: string;
  vsDirect: string;
  need: string;
  /** null: could not be judged in this run (a baseline missing). */
  pass: boolean | null;
}

const ratioNum = (a: number, b: number) =>
  Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : Number.NaN;

export function checks(r: BenchReport, sidecar = "pgsidecar"): Check[] {
  const out: Check[] = [];
  const tpsRow = (id: string, what: string, min: number) => {
    const a = get(r, id, sidecar);
    if (!a) return;
    const relay = get(r, id, RELAY);
    const bouncer = get(r, id, BOUNCER);
    const direct = get(r, id, DIRECT);
    const vs = (b: Summary | null) =>
      b === null ? "–" : b.ok ? ratio(a.tps, b.tps) : "fails (see table)";
    const v = a.ok && relay?.ok ? a.tps / relay.tps : Number.NaN;
    out.push({
      what,
      value: a.ok ? `${f(a.tps)} tps` : "fails",
      vsRelay: vs(relay),
      vsBouncer: vs(bouncer),
      vsDirect: vs(direct),
      need: `≥ ${min}× relay`,
      pass: !a.ok ? false : relay?.ok ? v >= min : null,
    });
  };
  tpsRow("select-prepared-32", "select-only -M prepared, 32 clients: TPS", TARGETS.preparedVsRelay);
  for (const i of r.idle) {
    if (i.target !== sidecar) continue;
    const per = perClientKiB(i);
    const big = i.clients >= 10_000;
    const need = big ? TARGETS.idleKiBAt10k : TARGETS.idleKiBAt1k;
    const bouncer = r.idle.find((b) => b.target === BOUNCER && b.clients === i.clients);
    out.push({
      what: `RSS per idle client, ${f(i.clients)} clients`,
      value: `${f(per, 2)} KiB`,
      vsRelay: "–",
      vsBouncer: bouncer ? ratio(per, perClientKiB(bouncer)) : "–",
      vsDirect: "–",
      need:
        big || i.clients === 1000
          ? `≤ ${need} KiB`
          : `≤ ${need} KiB (the 1,000-client target; indicative at ${f(i.clients)})`,
      pass: per <= need,
    });
    out.push({
      what: `${f(i.clients)} idle clients held`,
      value: `${f(i.opened)} in, ${i.failed} failed, ${i.dropped} dropped, ${i.probeAnswered}/${i.probeAsked} probes`,
      vsRelay: "–",
      vsBouncer: "–",
      vsDirect: "–",
      need: "all, no error",
      pass:
        i.opened === i.clients &&
        i.failed === 0 &&
        i.dropped === 0 &&
        i.probeAnswered === i.probeAsked,
    });
  }
  const throughput: Array<[string, string]> = [
    ["select-simple-32", "select-only -M simple, 32 clients: TPS"],
    ["select-extended-32", "select-only -M extended, 32 clients: TPS"],
    ["tpcb-32", "TPC-B-like, 32 clients: TPS"],
  ];
  for (const [id, what] of throughput) tpsRow(id, what, TARGETS.tpsVsRelay);
  // CPU per transaction: the worst ratio to the relay over the three scenarios above.
  let worst: { id: string; v: number; a: Summary } | null = null;
  for (const [id] of throughput) {
    const a = get(r, id, sidecar);
    const relay = get(r, id, RELAY);
    if (!a?.ok || !relay?.ok) continue;
    const v = a.cpuPer1k / relay.cpuPer1k;
    if (worst === null || !(v <= worst.v)) worst = { id, v, a };
  }
  if (worst) {
    const bouncer = get(r, worst.id, BOUNCER);
    out.push({
      what: "proxy CPU per transaction, worst of the three above",
      value: `${f(worst.a.cpuPer1k)} µs at ${worst.id}`,
      vsRelay: `${worst.v.toFixed(2)}×`,
      vsBouncer: bouncer?.ok ? ratio(worst.a.cpuPer1k, bouncer.cpuPer1k) : "–",
      vsDirect: "–",
      need: `≤ ${TARGETS.cpuVsRelay}× relay`,
      pass: worst.v <= TARGETS.cpuVsRelay,
    });
  }
  for (const id of ["latency-simple-1", "latency-extended-1"]) {
    const a = get(r, id, sidecar);
    const direct = get(r, id, DIRECT);
    if (!a || !direct?.ok) continue;
    const added = (t: string) => addedLatencyUs(r, id, t, "latencyP50Ms");
    const mine = added(sidecar);
    const bouncer = added(BOUNCER);
    const relay = added(RELAY);
    const v = ratioNum(mine, bouncer);
    out.push({
      what: `added p50 latency, ${id.includes("simple") ? "-M simple" : "-M extended"}, 1 client`,
      value: a.ok ? `+${f(mine)} µs (p50 ${f(a.p50Ms, 3)} ms)` : "fails",
      vsRelay: Number.isFinite(relay) ? `${ratio(mine, relay)} (relay +${f(relay)} µs)` : "–",
      vsBouncer: Number.isFinite(bouncer)
        ? `${ratio(mine, bouncer)} (PgBouncer +${f(bouncer)} µs)`
        : "–",
      vsDirect: a.ok ? `${ratio(a.p50Ms, direct.p50Ms)} of direct p50` : "–",
      need: `≤ ${TARGETS.addedP50VsBouncer}× PgBouncer's added`,
      pass: !a.ok
        ? false
        : Number.isFinite(bouncer)
          ? bouncer > 0
            ? v <= TARGETS.addedP50VsBouncer
            : mine <= 0
          : null,
    });
  }
  if (r.seed && !r.seed.unavailable) {
    const s = (t: string) => seedSummary(r.seed?.samples.get(t));
    const a = s(sidecar);
    const session = s(SEED_BOUNCER);
    if (a) {
      const vs = (b: ReturnType<typeof s>) => (b?.ok ? ratio(a.opsPerS, b.opsPerS) : "–");
      out.push({
        what: `seed workload (psycopg, ${r.seed.tasks} tasks): ops/s`,
        value: a.ok ? `${f(a.opsPerS)} ops/s` : `fails: ${a.error ?? "?"}`,
        vsRelay: vs(s(RELAY)),
        vsBouncer: `${vs(session)} (session mode)`,
        vsDirect: vs(s(DIRECT)),
        need: `≥ ${TARGETS.seedVsBouncerSession}× PgBouncer session`,
        pass: !a.ok
          ? false
          : session?.ok
            ? a.opsPerS / session.opsPerS >= TARGETS.seedVsBouncerSession
            : null,
      });
    }
  }
  return out;
}

/** The compact pass/fail table: the report's Targets section and what `--quick` is read for. */
export function targetsTable(cs: Check[], sidecar = "pgsidecar"): string[] {
  return table(
    ["Target (issue 14)", sidecar, "vs relay", "vs PgBouncer", "vs direct", "Need", "Result"],
    "lrrrrll",
    cs.map((c) => [
      c.what,
      c.value,
      c.vsRelay,
      c.vsBouncer,
      c.vsDirect,
      c.need,
      c.pass === null ? "not judged (baseline missing)" : c.pass ? "met" : "**not met**",
    ]),
  );
}
