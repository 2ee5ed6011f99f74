// Turns the benchmark's samples into medians, ratios, target checks and a Markdown report.

export interface Scenario {
  id: string;
  label: string;
  selectOnly: boolean;
  /** A custom pgbench script (instead of -S or the TPC-B-like default). */
  script?: string;
  mode: "simple" | "extended" | "prepared";
  clients: number;
}

export interface Sample {
  ok: boolean;
  tps: number;
  latencyAvgMs: number;
  latencyP99Ms: number;
  transactions: number;
  /** The proxy's utime+stime during the run, ms (NaN for Postgres itself). */
  cpuMs: number;
  wallMs: number;
  error: string | null;
}

export interface Cell {
  samples: Sample[];
}

export interface IdleResult {
  target: string;
  clients: number;
  opened: number;
  failed: number;
  firstError: string | null;
  dropped: number;
  probeAsked: number;
  probeAnswered: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
}

export interface Machine {
  date: string;
  cpus: number;
  cpuModel: string;
  kernel: string;
  node: string;
  postgres: string;
  pgbench: string;
  pgbouncer: string;
  loadBefore: string;
  loadAfter: string;
}

export interface BenchReport {
  machine: Machine;
  seconds: number;
  reps: number;
  poolSize: number;
  targets: string[];
  scenarios: Scenario[];
  cells: Map<string, Cell>;
  idle: IdleResult[];
  notes: string[];
}

export const cellKey = (scenario: string, target: string) => `${scenario}/${target}`;

export function median(xs: number[]): number {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

export interface Summary {
  ok: boolean;
  runs: number;
  okRuns: number;
  tps: number;
  tpsMin: number;
  tpsMax: number;
  avgMs: number;
  p99Ms: number;
  /** The proxy's CPU ms per 1,000 transactions. */
  cpuPer1k: number;
  /** The proxy's CPU time as a share of one core during the run, %. */
  cpuPct: number;
  error: string | null;
}

export function summarize(cell: Cell | undefined): Summary | null {
  if (!cell || cell.samples.length === 0) return null;
  const good = cell.samples.filter((s) => s.ok);
  const error = cell.samples.find((s) => !s.ok)?.error ?? null;
  const tps = good.map((s) => s.tps);
  return {
    ok: good.length > 0,
    runs: cell.samples.length,
    okRuns: good.length,
    tps: median(tps),
    tpsMin: Math.min(...tps),
    tpsMax: Math.max(...tps),
    avgMs: median(good.map((s) => s.latencyAvgMs)),
    p99Ms: median(good.map((s) => s.latencyP99Ms)),
    cpuPer1k: median(good.map((s) => (s.cpuMs / s.transactions) * 1000)),
    cpuPct: median(good.map((s) => (100 * s.cpuMs) / s.wallMs)),
    error,
  };
}

const f = (x: number, digits = 0) =>
  Number.isFinite(x)
    ? x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : "–";
const ratio = (a: number, b: number) =>
  Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : "–";

export interface Check {
  what: string;
  value: string;
  pass: boolean | null;
}

/** The issue's targets, from the medians of this run. */
export function checks(r: BenchReport, sidecar = "pgsidecar"): Check[] {
  const get = (s: string, t: string) => summarize(r.cells.get(cellKey(s, t)));
  const out: Check[] = [];
  const tpsVs = (scenario: string, base: string, min: number, what: string) => {
    const a = get(scenario, sidecar);
    const b = get(scenario, base);
    if (!a || !b) return;
    const v = a.ok && b.ok ? a.tps / b.tps : Number.NaN;
    out.push({
      what,
      value: Number.isFinite(v) ? `${v.toFixed(2)}× (need ≥ ${min})` : "not measured",
      pass: Number.isFinite(v) ? v >= min : false,
    });
  };
  tpsVs("select-simple-32", "pgbouncer", 1.0, "select-only simple, 32 clients: TPS vs PgBouncer");
  tpsVs(
    "select-extended-32",
    "pgbouncer",
    1.0,
    "select-only extended, 32 clients: TPS vs PgBouncer",
  );
  tpsVs("tpcb-32", "pgbouncer", 1.0, "TPC-B-like, 32 clients: TPS vs PgBouncer");
  tpsVs(
    "select-prepared-32",
    "postgres",
    0.9,
    "select-only -M prepared, 32 clients: TPS vs direct",
  );
  const bouncerPrepared = get("select-prepared-32", "pgbouncer");
  if (bouncerPrepared) {
    out.push({
      what: "PgBouncer with -M prepared in transaction mode",
      value: bouncerPrepared.ok ? "ran (unexpected)" : `fails: ${bouncerPrepared.error ?? "?"}`,
      pass: null,
    });
  }
  // CPU: the worst ratio over the scenarios both proxies ran.
  let worst = Number.NaN;
  let worstAt = "";
  for (const s of r.scenarios) {
    const a = get(s.id, sidecar);
    const b = get(s.id, "pgbouncer");
    if (!a?.ok || !b?.ok) continue;
    const v = a.cpuPer1k / b.cpuPer1k;
    if (!(v <= worst)) {
      worst = v;
      worstAt = s.id;
    }
  }
  if (Number.isFinite(worst)) {
    out.push({
      what: "proxy CPU per 1,000 transactions vs PgBouncer (worst scenario)",
      value: `${worst.toFixed(2)}× at ${worstAt} (need ≤ 1.5)`,
      pass: worst <= 1.5,
    });
  }
  for (const i of r.idle) {
    if (i.target !== sidecar) continue;
    const per = perClientKiB(i);
    out.push({
      what: `RSS per idle client (${f(i.clients)} clients)`,
      value: `${per.toFixed(2)} KiB (need ≤ 4)`,
      pass: per <= 4,
    });
    out.push({
      what: `${f(i.clients)} idle clients held without error`,
      value: `${f(i.opened)} logged in, ${i.failed} failed, ${i.dropped} dropped, ${i.probeAnswered}/${i.probeAsked} probes answered`,
      pass:
        i.opened === i.clients &&
        i.failed === 0 &&
        i.dropped === 0 &&
        i.probeAnswered === i.probeAsked,
    });
  }
  return out;
}

export function perClientKiB(i: IdleResult): number {
  return i.opened > 0 ? (i.rssAfterKiB - i.rssBeforeKiB) / i.opened : Number.NaN;
}

/**
 * A Markdown table with its columns padded, as `biome format` lays them out, so that a
 * regenerated RESULTS.md passes `npm run lint` unchanged. `align`: "l" or "r" per column.
 */
function table(header: string[], align: string, rows: string[][]): string[] {
  const cell = (c: string) => c.replaceAll("|", "\\|");
  const all = [header, ...rows].map((r) => r.map(cell));
  const width = header.map((_, i) => Math.max(3, ...all.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) =>
    `| ${width.map((w, i) => (align[i] === "r" ? (r[i] ?? "").padStart(w) : (r[i] ?? "").padEnd(w))).join(" | ")} |`;
  const rule = `| ${width.map((w, i) => (align[i] === "r" ? `${"-".repeat(w - 1)}:` : "-".repeat(w))).join(" | ")} |`;
  return [line(all[0]), rule, ...all.slice(1).map(line)];
}

export function markdown(r: BenchReport): string {
  const m = r.machine;
  const lines: string[] = [];
  lines.push("# pgsidecar benchmark results", "");
  lines.push(
    `- Date: ${m.date}`,
    `- Machine: ${m.cpus} CPUs (${m.cpuModel}), Linux ${m.kernel}`,
    `- Versions: Node ${m.node}; ${m.postgres}; ${m.pgbench}; ${m.pgbouncer}`,
    `- Load average before / after: ${m.loadBefore} / ${m.loadAfter}`,
    `- Runs: ${r.reps} × ${r.seconds} s per (scenario, target), interleaved ${r.targets.join(" → ")} and repeated; medians shown, TPS range in brackets`,
    `- Pool: ${r.poolSize} server connections per pooler, transaction mode; pgbench -i -s 10; pgbench -n -j 2 --log`,
    "",
  );
  const sidecars = r.targets.filter((t) => t.startsWith("pgsidecar"));
  const rows: string[][] = [];
  for (const s of r.scenarios) {
    const direct = summarize(r.cells.get(cellKey(s.id, "postgres")));
    const bouncer = summarize(r.cells.get(cellKey(s.id, "pgbouncer")));
    for (const t of r.targets) {
      const x = summarize(r.cells.get(cellKey(s.id, t)));
      if (!x) continue;
      if (!x.ok) {
        rows.push([
          s.label,
          t,
          `fails: ${(x.error ?? "?").slice(0, 120)}`,
          "",
          "",
          "",
          "",
          "",
          "",
          "",
        ]);
        continue;
      }
      const isProxy = t !== "postgres";
      const range = x.okRuns > 1 ? ` (${f(x.tpsMin)}–${f(x.tpsMax)})` : "";
      const partial = x.okRuns < x.runs ? ` [${x.okRuns}/${x.runs} runs ok]` : "";
      rows.push([
        s.label,
        t,
        `${f(x.tps)}${range}${partial}`,
        t === "pgbouncer" ? "1.00×" : bouncer?.ok ? ratio(x.tps, bouncer.tps) : "–",
        t === "postgres" ? "1.00×" : direct?.ok ? ratio(x.tps, direct.tps) : "–",
        f(x.avgMs, 2),
        f(x.p99Ms, 2),
        isProxy ? f(x.cpuPer1k, 0) : "–",
        isProxy && bouncer?.ok ? ratio(x.cpuPer1k, bouncer.cpuPer1k) : "–",
        isProxy ? f(x.cpuPct, 0) : "–",
      ]);
    }
  }
  lines.push(
    ...table(
      [
        "Scenario",
        "Target",
        "TPS (min–max)",
        "vs PgBouncer",
        "vs direct",
        "avg ms",
        "p99 ms",
        "proxy CPU ms / 1k tx",
        "CPU vs PgBouncer",
        "proxy CPU % of a core",
      ],
      "llrrrrrrrr",
      rows,
    ),
    "",
  );
  if (r.idle.length > 0) {
    const idleRows = r.idle.map((i) => [
      i.target,
      f(i.clients),
      f(i.opened),
      f(i.rssBeforeKiB),
      f(i.rssAfterKiB),
      `${f(perClientKiB(i), 2)} KiB`,
      i.failed + i.dropped === 0 && i.probeAnswered === i.probeAsked
        ? `none (${i.probeAnswered}/${i.probeAsked} probes answered)`
        : `${i.failed} failed, ${i.dropped} dropped, ${i.probeAnswered}/${i.probeAsked} probes${i.firstError ? `: ${i.firstError}` : ""}`,
    ]);
    lines.push(
      "## Idle clients",
      "",
      ...table(
        [
          "Target",
          "Clients",
          "Logged in",
          "RSS before (KiB)",
          "RSS after (KiB)",
          "RSS per idle client",
          "Errors",
        ],
        "lrrrrrl",
        idleRows,
      ),
      "",
    );
  }
  for (const sc of sidecars) {
    const cs = checks(r, sc);
    if (cs.length === 0) continue;
    lines.push(
      `## Targets (${sc})`,
      "",
      ...table(
        ["Target", "Measured", ""],
        "lll",
        cs.map((c) => [c.what, c.value, c.pass === null ? "" : c.pass ? "met" : "**not met**"]),
      ),
      "",
    );
  }
  if (r.notes.length > 0) {
    lines.push("## Notes", "", ...r.notes.map((n) => `- ${n}`), "");
  }
  return lines.join("\n");
}
