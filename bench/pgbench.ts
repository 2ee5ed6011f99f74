// One pgbench run against a host:port: TPS and average latency from its summary, p50 and p99 from
// its per-transaction log (--log), and the first error when clients aborted (PgBouncer and -M
// prepared).

import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "../test/helpers/processes.js";

export type QueryMode = "simple" | "extended" | "prepared";

export interface PgbenchRun {
  port: number;
  user: string;
  password: string;
  database: string;
  /** pgbench -S (built-in select-only) instead of the TPC-B-like default script. */
  selectOnly: boolean;
  /** A custom script, run with -f (written into logDir). */
  script?: string;
  mode: QueryMode;
  clients: number;
  threads: number;
  seconds: number;
  /** A fresh directory for the per-transaction logs (emptied and reused). */
  logDir: string;
  pgbench: string;
}

export interface PgbenchResult {
  ok: boolean;
  /** Transactions per second, without the initial connection time. */
  tps: number;
  /** Transactions processed (the denominator of CPU per 1,000 transactions). */
  transactions: number;
  latencyAvgMs: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** Clients that aborted (an error pgbench does not retry). */
  aborted: boolean;
  /** The first error line, when there was one. */
  error: string | null;
  wallMs: number;
}

export async function runPgbench(r: PgbenchRun): Promise<PgbenchResult> {
  rmSync(r.logDir, { recursive: true, force: true });
  mkdirSync(r.logDir, { recursive: true });
  if (r.script) writeFileSync(join(r.logDir, "script.sql"), r.script);
  const args = [
    ...["-h", "127.0.0.1", "-p", String(r.port), "-U", r.user],
    // -n: no VACUUM before the run (it would also run through the pooler, and only once matters).
    "-n",
    ...(r.script ? ["-f", "script.sql"] : r.selectOnly ? ["-S"] : []),
    ...["-M", r.mode, "-c", String(r.clients), "-j", String(r.threads), "-T", String(r.seconds)],
    ...["--log", `--log-prefix=${join(r.logDir, "tx")}`],
    r.database,
  ];
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    LC_ALL: "C",
    PGPASSWORD: r.password,
    PGSSLMODE: "disable",
    PGCONNECT_TIMEOUT: "10",
  };
  const started = performance.now();
  const res = await run(r.pgbench, args, {
    env,
    cwd: r.logDir,
    timeoutMs: (r.seconds + 60) * 1000,
  });
  const wallMs = performance.now() - started;
  const out = `${res.stdout}\n${res.stderr}`;
  const num = (re: RegExp): number => {
    const m = re.exec(out);
    return m ? Number(m[1]) : Number.NaN;
  };
  const transactions = num(/number of transactions actually processed: (\d+)/);
  const tps = num(/^tps = ([\d.]+) \(without initial connection time\)/m);
  const latencyAvgMs = num(/^latency average = ([\d.]+) ms/m);
  const errorLine =
    out
      .split("\n")
      .find((l) => /error|FATAL|aborted/i.test(l) && !/number of failed/.test(l))
      ?.trim() ?? null;
  const aborted = /aborted in command|Run was aborted/.test(out) || res.code === 2;
  const [p50, p99] = percentilesFromLogs(r.logDir, [0.5, 0.99]);
  const ok = res.code === 0 && !res.timedOut && Number.isFinite(tps) && !aborted;
  return {
    ok,
    tps: Number.isFinite(tps) ? tps : 0,
    transactions: Number.isFinite(transactions) ? transactions : 0,
    latencyAvgMs,
    latencyP50Ms: p50,
    latencyP99Ms: p99,
    aborted,
    error: ok
      ? null
      : res.timedOut
        ? `pgbench timed out after ${r.seconds + 60} s`
        : (errorLine ?? `pgbench exited with ${res.code}`),
    wallMs,
  };
}

/**
 * Quantiles of transaction latency (ms) from pgbench's --log files. Each line is
 * `client_id transaction_no time script_no time_epoch time_us`, `time` in microseconds.
 */
function percentilesFromLogs(dir: string, qs: number[]): number[] {
  const lat: number[] = [];
  for (const name of readdirSync(dir)) {
    if (!name.startsWith("tx.")) continue;
    const text = readFileSync(join(dir, name), "latin1");
    let pos = 0;
    while (pos < text.length) {
      let nl = text.indexOf("\n", pos);
      if (nl < 0) nl = text.length;
      // Third field: skip two spaces.
      const s1 = text.indexOf(" ", pos);
      const s2 = s1 < 0 ? -1 : text.indexOf(" ", s1 + 1);
      const s3 = s2 < 0 ? -1 : text.indexOf(" ", s2 + 1);
      if (s3 > 0 && s3 < nl) {
        const v = Number(text.slice(s2 + 1, s3));
        if (Number.isFinite(v)) lat.push(v);
      }
      pos = nl + 1;
    }
  }
  if (lat.length === 0) return qs.map(() => Number.NaN);
  const sorted = Float64Array.from(lat).sort();
  return qs.map(
    (q) =>
      sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1))] / 1000,
  );
}
