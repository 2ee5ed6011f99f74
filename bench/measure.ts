// One measurement each: a pgbench run through a target (with the proxy's CPU time), idle clients
// through a freshly started pooler (its RSS), and the SQL prefilter's timing in a child process.

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type PgCluster, pgBinDir } from "../test/helpers/pg-cluster.js";
import { run } from "../test/helpers/processes.js";
import { openIdleClients } from "./idle-clients.js";
import { runPgbench } from "./pgbench.js";
import type { Target } from "./poolers.js";
import { machineTicks, stealPct, totalCpuMs, totalRssKiB } from "./procfs.js";
import type { IdleResult, PrefilterResult, Sample, Scenario } from "./report.js";

const PREFILTER = fileURLToPath(new URL("./sql-prefilter.js", import.meta.url));
/** How long the idle clients are held while the pooler's own CPU is read. */
const IDLE_CPU_SECONDS = 5;

export function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

/** pgbench through `target`; the proxy's utime+stime over the run is in `cpuMs`. */
export async function measure(
  target: Target,
  scenario: Scenario,
  c: PgCluster,
  o: { threads: number; seconds: number; logDir: string },
): Promise<Sample> {
  const pids = target.pids();
  const cpuBefore = pids.length ? totalCpuMs(pids) : Number.NaN;
  const ticksBefore = machineTicks();
  const r = await runPgbench({
    port: target.port,
    user: c.superuser,
    password: c.password,
    database: "postgres",
    selectOnly: scenario.selectOnly,
    script: scenario.script,
    mode: scenario.mode,
    clients: scenario.clients,
    threads: scenario.threads ?? o.threads,
    seconds: o.seconds,
    logDir: o.logDir,
    pgbench: join(pgBinDir(), "pgbench"),
  });
  const cpuMs = pids.length ? totalCpuMs(pids) - cpuBefore : Number.NaN;
  return { ...r, cpuMs, stealPct: stealPct(ticksBefore, machineTicks()) };
}

export function fmtSample(s: Sample): string {
  if (!s.ok) return `FAILED: ${s.error}`;
  const cpu = Number.isFinite(s.cpuMs)
    ? `, CPU ${((s.cpuMs / s.transactions) * 1000).toFixed(0)} ms/1k tx (${((100 * s.cpuMs) / s.wallMs).toFixed(0)}% of a core)`
    : "";
  const steal = Number.isFinite(s.stealPct) ? `, steal ${s.stealPct.toFixed(0)}%` : "";
  return `${s.tps.toFixed(0)} tps, p50 ${s.latencyP50Ms.toFixed(3)} ms, p99 ${s.latencyP99Ms.toFixed(2)} ms${cpu}${steal}`;
}

/**
 * Opens `count` idle clients through a freshly started pooler and reads its RSS before and after.
 * One client logs in first and stays (not counted), so the pool's first server login and the
 * pooler's lazily initialised code are in the "before" figure, read `t.settleSeconds` after it.
 * The clients are then held `t.holdSeconds`, RSS read every second: "after" is the last reading,
 * "peak" the highest. A Node pooler keeps the garbage of a burst of logins until V8's memory
 * reducer runs, 7 to 30 s later on this machine (a sidecar's RSS at 10,000 idle clients fell from
 * 5.1 to 2.3 KiB per client 31 s after the logins): only a long hold reads the steady state.
 */
export async function idleTest(
  target: Target,
  count: number,
  c: PgCluster,
  t: { settleSeconds: number; holdSeconds: number },
): Promise<IdleResult> {
  const pids = target.pids();
  const login = {
    port: target.port,
    user: c.superuser,
    password: c.password,
    database: "postgres",
  };
  const first = await openIdleClients(login, 1);
  await first.probe(1, 10_000);
  await new Promise((r) => setTimeout(r, t.settleSeconds * 1000));
  const before = totalRssKiB(pids);
  const started = performance.now();
  const clients = await openIdleClients(login, count);
  log(
    `${target.name}: ${clients.opened}/${count} idle clients logged in in ${((performance.now() - started) / 1000).toFixed(1)} s` +
      (clients.failed ? ` (${clients.failed} failed: ${clients.firstError})` : ""),
  );
  // Hold the clients while the pooler settles (timers, lazily freed login state, its GC).
  let after = totalRssKiB(pids);
  let peak = after;
  for (let s = 0; s < t.holdSeconds; s++) {
    await new Promise((r) => setTimeout(r, 1000));
    after = totalRssKiB(pids);
    if (after > peak) peak = after;
  }
  // What the pooler spends with nothing to do: its timers, housekeeping and GC, per second.
  const cpuBefore = totalCpuMs(pids);
  await new Promise((r) => setTimeout(r, IDLE_CPU_SECONDS * 1000));
  const idleCpuMsPerS = pids.length
    ? (totalCpuMs(pids) - cpuBefore) / IDLE_CPU_SECONDS
    : Number.NaN;
  const probe = await clients.probe(Math.max(1, Math.floor(count / 100)), 10_000);
  const result: IdleResult = {
    target: target.name,
    clients: count,
    opened: clients.opened,
    failed: clients.failed,
    firstError: clients.firstError,
    dropped: clients.dropped,
    probeAsked: probe.asked,
    probeAnswered: probe.answered,
    rssBeforeKiB: before,
    rssAfterKiB: after,
    rssPeakKiB: peak,
    idleCpuMsPerS,
  };
  clients.close();
  first.close();
  return result;
}

/** bench/sql-prefilter.ts in a child Node process (its own heap and JIT), under a deadline. */
export async function measurePrefilter(
  calls: number,
): Promise<PrefilterResult | { error: string }> {
  const r = await run(process.execPath, [PREFILTER, String(calls), "--json"], {
    timeoutMs: 180_000,
  });
  const line = r.stdout.trim().split("\n").pop() ?? "";
  if (r.code === 0 && line.startsWith("{")) return JSON.parse(line) as PrefilterResult;
  return {
    error: r.timedOut
      ? "sql-prefilter.js timed out"
      : `sql-prefilter.js exited with ${r.code ?? r.signal}: ${r.stderr.trim().split("\n").slice(-2).join(" ")}`,
  };
}
