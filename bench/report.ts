// The benchmark's results and what is derived from them: medians, ratios, Markdown tables. The
// report's sections are laid out in report-sections.ts, the issue's targets checked in checks.ts.

import type { RetakeTally } from "./rounds.js";
import type { SeedSample } from "./seed.js";

export interface Scenario {
  id: string;
  label: string;
  selectOnly: boolean;
  /** A custom pgbench script (instead of -S or the TPC-B-like default). */
  script?: string;
  mode: "simple" | "extended" | "prepared";
  clients: number;
  /** pgbench -j for this scenario (default: --threads). */
  threads?: number;
  /** A low-concurrency run whose point is the latency added over direct (its own table). */
  latency?: boolean;
}

export interface Sample {
  ok: boolean;
  tps: number;
  latencyAvgMs: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  transactions: number;
  /** The proxy's utime+stime during the run, ms (NaN for Postgres itself). */
  cpuMs: number;
  wallMs: number;
  /** Percent of the machine's CPU time stolen by the hypervisor during the run (NaN: unknown). */
  stealPct: number;
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
  /** RSS at the end of the hold (the steady state). */
  rssAfterKiB: number;
  /** The highest RSS read during the hold (right after the logins, before the garbage goes). */
  rssPeakKiB: number;
  /**
   * The pooler's CPU (utime + stime) per second while the clients sat idle, over IDLE_CPU_SECONDS
   * after the RSS reading: timers and housekeeping that run with nothing to do (NaN: unknown).
   */
  idleCpuMsPerS: number;
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
  /** Percent of the machine's CPU time stolen by the hypervisor over the whole run. */
  stealPct: number;
}

export interface SeedResults {
  /** Targets in the order they ran (interleaved like the pgbench scenarios). */
  targets: string[];
  tasks: number;
  thinkMs: number;
  samples: Map<string, SeedSample[]>;
  /** Why it did not run (no psycopg), or null. */
  unavailable: string | null;
}

export interface PrefilterRow {
  name: string;
  /** The statement's length; null for the parsed ones (timed through detectSessionState only). */
  bytes: number | null;
  prefilterNs: number | null;
  detectNs: number;
  floorNs: number | null;
  toParser: boolean;
}

export interface PrefilterResult {
  calls: number;
  parsedCalls: number;
  rows: PrefilterRow[];
}

export interface BenchReport {
  machine: Machine;
  quick: boolean;
  seconds: number;
  reps: number;
  poolSize: number;
  targets: string[];
  scenarios: Scenario[];
  cells: Map<string, Cell>;
  idle: IdleResult[];
  seed: SeedResults | null;
  prefilter: PrefilterResult | { error: string } | null;
  /** Rounds taken again because the hypervisor stole too much of the machine (bench/rounds.ts). */
  retakes: RetakeTally;
  notes: string[];
}

export const cellKey = (scenario: string, target: string) => `${scenario}/${target}`;

/** The targets every pgsidecar figure is compared with. */
export const RELAY = "node-relay";
export const BOUNCER = "pgbouncer";
export const DIRECT = "postgres";

export function median(xs: number[]): number {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/**
 * The latency `target` adds over direct Postgres in a scenario, in µs: the median over rounds of
 * the difference within each round. Both samples of a round come from the same minute, so a slow
 * minute, which slows both, cancels out; a difference of medians mixes minutes and swung by tens
 * of µs between runs. NaN when no round has both samples.
 */
export function addedLatencyUs(
  r: Pick<BenchReport, "cells">,
  scenario: string,
  target: string,
  percentile: "latencyP50Ms" | "latencyP99Ms",
): number {
  const mine = r.cells.get(cellKey(scenario, target))?.samples ?? [];
  const direct = r.cells.get(cellKey(scenario, DIRECT))?.samples ?? [];
  const diffs: number[] = [];
  for (let i = 0; i < Math.min(mine.length, direct.length); i++) {
    if (mine[i].ok && direct[i].ok)
      diffs.push((mine[i][percentile] - direct[i][percentile]) * 1000);
  }
  return median(diffs);
}

export interface Summary {
  ok: boolean;
  runs: number;
  okRuns: number;
  tps: number;
  tpsMin: number;
  tpsMax: number;
  p50Ms: number;
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
    p50Ms: median(good.map((s) => s.latencyP50Ms)),
    p99Ms: median(good.map((s) => s.latencyP99Ms)),
    cpuPer1k: median(good.map((s) => (s.cpuMs / s.transactions) * 1000)),
    cpuPct: median(good.map((s) => (100 * s.cpuMs) / s.wallMs)),
    error,
  };
}

/** The summary of one (scenario, target) of the report, null when it did not run. */
export const get = (r: BenchReport, scenario: string, target: string) =>
  summarize(r.cells.get(cellKey(scenario, target)));

export interface SeedSummary {
  ok: boolean;
  runs: number;
  okRuns: number;
  opsPerS: number;
  opsMin: number;
  opsMax: number;
  p50Ms: number;
  p99Ms: number;
  /** Over all runs. */
  errors: number;
  failed: number;
  /** The proxy's CPU ms per 1,000 checkpointer calls. */
  cpuPer1k: number;
  error: string | null;
}

export function seedSummary(samples: SeedSample[] | undefined): SeedSummary | null {
  if (!samples || samples.length === 0) return null;
  const good = samples.filter((s) => s.ok);
  const ops = good.map((s) => s.opsPerS);
  return {
    ok: good.length > 0,
    runs: samples.length,
    okRuns: good.length,
    opsPerS: median(ops),
    opsMin: Math.min(...ops),
    opsMax: Math.max(...ops),
    p50Ms: median(good.map((s) => s.p50Ms)),
    p99Ms: median(good.map((s) => s.p99Ms)),
    errors: samples.reduce((n, s) => n + s.errors, 0),
    failed: samples.reduce((n, s) => n + s.failed, 0),
    cpuPer1k: median(good.map((s) => (s.cpuMs / s.ops) * 1000)),
    error: samples.find((s) => s.error)?.error ?? null,
  };
}

export const f = (x: number, digits = 0) =>
  Number.isFinite(x)
    ? x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : "–";
export const ratio = (a: number, b: number) =>
  Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : "–";

export function perClientKiB(i: IdleResult): number {
  return i.opened > 0 ? (i.rssAfterKiB - i.rssBeforeKiB) / i.opened : Number.NaN;
}

/**
 * A Markdown table with its columns padded, as `biome format` lays them out, so that a
 * regenerated RESULTS.md passes `npm run lint` unchanged. `align`: "l" or "r" per column.
 */
export function table(header: string[], align: string, rows: string[][]): string[] {
  const cell = (c: string) => c.replaceAll("|", "\\|");
  const all = [header, ...rows].map((r) => r.map(cell));
  const width = header.map((_, i) => Math.max(3, ...all.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) =>
    `| ${width.map((w, i) => (align[i] === "r" ? (r[i] ?? "").padStart(w) : (r[i] ?? "").padEnd(w))).join(" | ")} |`;
  const rule = `| ${width.map((w, i) => (align[i] === "r" ? `${"-".repeat(w - 1)}:` : "-".repeat(w))).join(" | ")} |`;
  return [line(all[0]), rule, ...all.slice(1).map(line)];
}
