// The Markdown report's sections: targets, throughput and CPU, latency added at low concurrency,
// the seed workload, idle clients and the SQL prefilter's cost.

import { checks, SEED_BOUNCER, targetsTable } from "./checks.js";
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
  type SeedSummary,
  type Summary,
  seedSummary,
  table,
} from "./report.js";
import { retakeLine } from "./rounds.js";

/** Throughput and CPU: every pgbench scenario, every target, against relay, PgBouncer and direct. */
function throughputSection(r: BenchReport): string[] {
  const rows: string[][] = [];
  for (const s of r.scenarios) {
    const relay = get(r, s.id, RELAY);
    const bouncer = get(r, s.id, BOUNCER);
    const direct = get(r, s.id, DIRECT);
    for (const t of r.targets) {
      const x = get(r, s.id, t);
      if (!x) continue;
      if (!x.ok) {
        rows.push([s.label, t, `fails: ${(x.error ?? "?").slice(0, 120)}`, ...Array(9).fill("")]);
        continue;
      }
      const isProxy = t !== DIRECT;
      const vs = (base: Summary | null, name: string) =>
        t === name ? "1.00×" : base?.ok ? ratio(x.tps, base.tps) : "–";
      const cpuVs = (base: Summary | null) =>
        isProxy && base?.ok && base !== x ? ratio(x.cpuPer1k, base.cpuPer1k) : "–";
      const range = x.okRuns > 1 ? ` (${f(x.tpsMin)}–${f(x.tpsMax)})` : "";
      const partial = x.okRuns < x.runs ? ` [${x.okRuns}/${x.runs} runs ok]` : "";
      rows.push([
        s.label,
        t,
        `${f(x.tps)}${range}${partial}`,
        vs(relay, RELAY),
        vs(bouncer, BOUNCER),
        vs(direct, DIRECT),
        f(x.p50Ms, 2),
        f(x.p99Ms, 2),
        isProxy ? f(x.cpuPer1k, 0) : "–",
        t === RELAY ? "1.00×" : cpuVs(relay),
        t === BOUNCER ? "1.00×" : cpuVs(bouncer),
        isProxy ? f(x.cpuPct, 0) : "–",
      ]);
    }
  }
  return [
    "## Throughput and CPU",
    "",
    ...table(
      [
        "Scenario",
        "Target",
        "TPS (min–max)",
        "vs relay",
        "vs PgBouncer",
        "vs direct",
        "p50 ms",
        "p99 ms",
        "proxy CPU ms / 1k tx",
        "CPU vs relay",
        "CPU vs PgBouncer",
        "proxy CPU % of a core",
      ],
      "llrrrrrrrrrr",
      rows,
    ),
    "",
  ];
}

/** p50/p99 at 1 and 4 clients, and the latency each proxy adds over direct, side by side. */
function latencySection(r: BenchReport): string[] {
  const rows: string[][] = [];
  for (const s of r.scenarios.filter((x) => x.latency)) {
    const added = (t: string, p: "latencyP50Ms" | "latencyP99Ms") => addedLatencyUs(r, s.id, t, p);
    const relayAdded = added(RELAY, "latencyP50Ms");
    const bouncerAdded = added(BOUNCER, "latencyP50Ms");
    const signed = (x: number) =>
      Number.isFinite(x) ? `${x >= 0 ? "+" : "−"}${f(Math.abs(x))}` : "–";
    for (const t of r.targets) {
      const x = get(r, s.id, t);
      if (!x) continue;
      if (!x.ok) {
        rows.push([s.label, t, `fails: ${(x.error ?? "?").slice(0, 100)}`, "", "", "", "", ""]);
        continue;
      }
      const a50 = added(t, "latencyP50Ms");
      const isProxy = t !== DIRECT;
      rows.push([
        s.label,
        t,
        f(x.p50Ms, 3),
        f(x.p99Ms, 3),
        isProxy ? signed(a50) : "–",
        isProxy ? signed(added(t, "latencyP99Ms")) : "–",
        isProxy && t !== BOUNCER && a50 > 0 && bouncerAdded > 0 ? ratio(a50, bouncerAdded) : "–",
        isProxy && t !== RELAY && a50 > 0 && relayAdded > 0 ? ratio(a50, relayAdded) : "–",
      ]);
    }
  }
  if (rows.length === 0) return [];
  return [
    "## Latency added at low concurrency",
    "",
    "Added = the median over rounds of the target's percentile − direct Postgres's in the same round (µs; paired, so that a slow minute cancels out), from pgbench's per-transaction log; pgbench -j 1.",
    "",
    ...table(
      [
        "Scenario",
        "Target",
        "p50 ms",
        "p99 ms",
        "added p50 µs",
        "added p99 µs",
        "added p50 vs PgBouncer's",
        "added p50 vs relay's",
      ],
      "llrrrrrr",
      rows,
    ),
    "",
  ];
}

const SEED_MODE: Record<string, string> = {
  [DIRECT]: "direct",
  [BOUNCER]: "transaction",
  [SEED_BOUNCER]:
    "session: 1.18 cannot carry psycopg's named prepared statements (prepare_threshold=0) in transaction mode",
  [RELAY]: "none (1:1 byte relay)",
};

function seedSection(r: BenchReport): string[] {
  const seed = r.seed;
  if (!seed) return [];
  const head = [
    `## Seed workload (psycopg 3, checkpointer mix, ${seed.tasks} tasks)`,
    "",
    `demo/checkpointer_workload.py with the forum thread's pool: AsyncConnectionPool(max_size=30, min_size=2, kwargs autocommit, dict_row, prepare_threshold=0); ${seed.tasks} tasks, each playing get_tuple (SELECT), put (pipelined upserts) and put_writes (pipelined upserts) ${seed.thinkMs > 0 ? `with a mean pause of ${seed.thinkMs} ms` : "back to back"} for ${r.seconds} s, after a warm-up run per target; the tables are emptied before each run. ops = completed calls; p50/p99 per call. Each run opens a fresh psycopg pool: direct, every connection is a new backend (fork, SCRAM, cold caches); the poolers' servers are already open.`,
    "",
  ];
  if (seed.unavailable) return [...head, `Not run: ${seed.unavailable}`, ""];
  const s = (t: string) => seedSummary(seed.samples.get(t));
  const session = s(SEED_BOUNCER);
  const relay = s(RELAY);
  const direct = s(DIRECT);
  const rows = seed.targets.flatMap((t) => {
    const x = s(t);
    if (!x) return [];
    const vs = (b: SeedSummary | null, name: string) =>
      t === name ? "1.00×" : b?.ok && x.ok ? ratio(x.opsPerS, b.opsPerS) : "–";
    const range = x.okRuns > 1 ? ` (${f(x.opsMin)}–${f(x.opsMax)})` : "";
    return [
      [
        t,
        SEED_MODE[t] ?? "transaction",
        x.ok ? `${f(x.opsPerS)}${range}` : `fails: ${(x.error ?? "?").slice(0, 120)}`,
        vs(session, SEED_BOUNCER),
        vs(relay, RELAY),
        vs(direct, DIRECT),
        f(x.p50Ms, 1),
        f(x.p99Ms, 1),
        `${x.errors} (${x.failed} lost)`,
        t === DIRECT ? "–" : f(x.cpuPer1k, 0),
      ],
    ];
  });
  return [
    ...head,
    ...table(
      [
        "Target",
        "Pool mode",
        "ops/s (min–max)",
        "vs PgBouncer session",
        "vs relay",
        "vs direct",
        "p50 ms",
        "p99 ms",
        "errors (lost calls)",
        "proxy CPU ms / 1k ops",
      ],
      "llrrrrrrrr",
      rows,
    ),
    "",
  ];
}

function idleSection(r: BenchReport): string[] {
  if (r.idle.length === 0) return [];
  const rows = r.idle.map((i) => [
    i.target,
    f(i.clients),
    f(i.opened),
    f(i.rssBeforeKiB),
    f(i.rssAfterKiB),
    `${f(perClientKiB(i), 2)} KiB`,
    i.opened > 0 ? `${f((i.rssPeakKiB - i.rssBeforeKiB) / i.opened, 2)} KiB` : "–",
    Number.isFinite(i.idleCpuMsPerS) ? f(i.idleCpuMsPerS, 1) : "–",
    i.failed + i.dropped === 0 && i.probeAnswered === i.probeAsked
      ? `none (${i.probeAnswered}/${i.probeAsked} probes answered)`
      : `${i.failed} failed, ${i.dropped} dropped, ${i.probeAnswered}/${i.probeAsked} probes${i.firstError ? `: ${i.firstError}` : ""}`,
  ]);
  return [
    "## Idle clients",
    "",
    ...table(
      [
        "Target",
        "Clients",
        "Logged in",
        "RSS before (KiB)",
        "RSS after the hold (KiB)",
        "RSS per idle client",
        "at the peak",
        "CPU while idle (ms/s)",
        "Errors",
      ],
      "lrrrrrrrl",
      rows,
    ),
    "",
  ];
}

/** bench/sql-prefilter.ts's timings, with pgsidecar's CPU per transaction for scale. */
function prefilterSection(r: BenchReport): string[] {
  const p = r.prefilter;
  if (!p) return [];
  const head = ["## SQL prefilter cost (bench/sql-prefilter.ts)", ""];
  if ("error" in p) return [...head, `Not measured: ${p.error}`, ""];
  const rows = p.rows.map((x) => [
    x.name,
    x.bytes === null ? "–" : f(x.bytes),
    x.prefilterNs === null ? "–" : f(x.prefilterNs, 1),
    f(x.detectNs, x.bytes === null ? 0 : 1),
    x.floorNs === null ? "–" : f(x.floorNs, 1),
    x.bytes === null ? "parsed" : x.toParser ? "yes" : "no",
  ]);
  const sc = get(r, "select-simple-32", "pgsidecar");
  const scale = sc?.ok
    ? ` For scale: pgsidecar spent ${f(sc.cpuPer1k, 1)} µs (${f(sc.cpuPer1k * 1000)} ns) of CPU per select-only simple transaction (32 clients) in this run.`
    : "";
  return [
    ...head,
    `ns per call, best of 3 × ${f(p.calls)} calls in a separate Node process (parsed statements: ${f(p.parsedCalls)} calls). The prefilter (src/sql/prefilter.ts) runs on every statement; only what it lets through reaches the parser (detectSessionState).${scale}`,
    "",
    ...table(
      [
        "Statement",
        "bytes",
        "prefilter ns",
        "detectSessionState ns",
        "byte-sum floor ns",
        "to parser",
      ],
      "lrrrrl",
      rows,
    ),
    "",
  ];
}

/**
 * The run's steal, and how many pgbench samples lost more than 10 % of the machine: figures from
 * a run with much steal compare poorly with another run's (within the run, interleaving spreads it).
 */
function stealLine(pct: number, r: BenchReport): string {
  if (!Number.isFinite(pct)) return "unknown";
  const per = [...r.cells.values()]
    .flatMap((c) => c.samples.map((s) => s.stealPct))
    .filter(Number.isFinite);
  const over = per.filter((x) => x > 10).length;
  const max = per.length > 0 ? Math.max(...per) : Number.NaN;
  return per.length === 0
    ? `${pct.toFixed(1)} %`
    : `${pct.toFixed(1)} % (worst pgbench sample ${max.toFixed(0)} %; ${over} of ${per.length} samples above 10 %)`;
}

export function markdown(r: BenchReport): string {
  const m = r.machine;
  const lines: string[] = [];
  lines.push(`# pgsidecar benchmark results${r.quick ? " (--quick)" : ""}`, "");
  lines.push(
    `- Date: ${m.date}`,
    `- Machine: ${m.cpus} CPUs (${m.cpuModel}), Linux ${m.kernel}`,
    `- Versions: Node ${m.node}; ${m.postgres}; ${m.pgbench}; ${m.pgbouncer}`,
    `- Load average before / after: ${m.loadBefore} / ${m.loadAfter}`,
    `- CPU stolen by the hypervisor over the run: ${stealLine(m.stealPct, r)}`,
    `- Disturbed rounds: ${retakeLine(r.retakes)}`,
    `- Runs: ${r.reps} × ${r.seconds} s per (scenario, target), interleaved ${r.targets.join(" → ")} and repeated; medians shown, ranges in brackets`,
    `- Pool: ${r.poolSize} server connections per pooler, transaction mode; pgbench -i -s 10; pgbench -n --log (-j 2, or -j 1 at 1 and 4 clients)`,
    "",
  );
  for (const sc of r.targets.filter((t) => t.startsWith("pgsidecar"))) {
    const cs = checks(r, sc);
    if (cs.length > 0) lines.push(`## Targets (${sc}, issue 14)`, "", ...targetsTable(cs, sc), "");
  }
  lines.push(...throughputSection(r), ...latencySection(r), ...seedSection(r));
  lines.push(...idleSection(r), ...prefilterSection(r));
  if (r.notes.length > 0) lines.push("## Notes", "", ...r.notes.map((n) => `- ${n}`), "");
  return lines.join("\n");
}
