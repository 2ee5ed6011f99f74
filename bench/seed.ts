// The seed's workload in the benchmark: demo/checkpointer_workload.py (psycopg 3 with the forum
// thread's pool configuration: AsyncConnectionPool(max_size=30, min_size=2), autocommit, dict_row,
// prepare_threshold=0) playing the checkpointer-like mix (aget_tuple's SELECT, aput's pipelined
// upserts, aput_writes' pipelined upserts) with N tasks for a fixed time, through one target.
// The script prints JSON lines; its last ("done") carries ops, errors and p50/p99 per call.

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SCHEMA } from "../demo/checkpointer-sql.js";
import type { ProgressEvent } from "../demo/workload-events.js";
import type { PgCluster } from "../test/helpers/pg-cluster.js";
import { run, SYSTEM_PYTHON } from "../test/helpers/processes.js";
import { machineTicks, stealPct, totalCpuMs } from "./procfs.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const SEED_WORKLOAD = join(ROOT, "demo", "checkpointer_workload.py");
/** Seconds a call still running at the end of the run may take before the script cancels it. */
const GRACE_S = 5;

export interface SeedSample {
  ok: boolean;
  /** Checkpointer calls completed (get_tuple, put, put_writes each count one). */
  ops: number;
  opsPerS: number;
  p50Ms: number;
  p99Ms: number;
  /** Exceptions the application saw (retried ones included) and calls lost after retries. */
  errors: number;
  failed: number;
  /** The proxy's utime+stime during the run, ms (NaN for Postgres itself). */
  cpuMs: number;
  /** Percent of the machine's CPU time stolen by the hypervisor during the run (NaN: unknown). */
  stealPct: number;
  error: string | null;
}

/** The system Python's environment: only what it needs (no PG* defaults, no other Python's paths). */
function pythonEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: process.env.HOME, LC_ALL: "C.UTF-8" };
}

/** null when /usr/bin/python3 has psycopg 3 and psycopg_pool; otherwise why not. */
export function seedUnavailable(): string | null {
  const r = spawnSync(SYSTEM_PYTHON, ["-c", "import psycopg, psycopg_pool"], {
    env: pythonEnv(),
    encoding: "utf8",
    timeout: 20_000,
  });
  if (r.status === 0) return null;
  return `${SYSTEM_PYTHON} cannot import psycopg and psycopg_pool (apt-get install python3-psycopg python3-psycopg-pool): ${(r.stderr ?? r.error?.message ?? "").trim().split("\n").pop()}`;
}

/** Creates the checkpointer tables (demo/checkpointer-sql.ts). */
export async function createSeedSchema(c: PgCluster): Promise<void> {
  await c.query(SCHEMA);
}

export interface SeedRun {
  cluster: PgCluster;
  port: number;
  /** The proxy's processes (empty for Postgres itself). */
  pids: number[];
  seconds: number;
  tasks: number;
  thinkMs: number;
}

/** One run through one target; the tables are emptied first so every target starts alike. */
export async function runSeed(r: SeedRun): Promise<SeedSample> {
  const c = r.cluster;
  await c.query("TRUNCATE checkpoints, checkpoint_blobs, checkpoint_writes");
  const dsn = `postgresql://${encodeURIComponent(c.superuser)}:${encodeURIComponent(c.password)}@127.0.0.1:${r.port}/postgres?sslmode=disable&connect_timeout=10`;
  const cpuBefore = r.pids.length ? totalCpuMs(r.pids) : Number.NaN;
  const ticksBefore = machineTicks();
  const res = await run(
    SYSTEM_PYTHON,
    [
      ...["-u", SEED_WORKLOAD, "--dsn", dsn, "--duration", String(r.seconds)],
      ...["--concurrency", String(r.tasks), "--think-ms", String(r.thinkMs)],
      ...["--grace", String(GRACE_S)],
    ],
    { env: pythonEnv(), cwd: ROOT, timeoutMs: (r.seconds + GRACE_S + 45) * 1000 },
  );
  const cpuMs = r.pids.length ? totalCpuMs(r.pids) - cpuBefore : Number.NaN;
  const steal = stealPct(ticksBefore, machineTicks());
  let done: ProgressEvent | null = null;
  let firstError: string | null = null;
  for (const line of res.stdout.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const ev = JSON.parse(line) as { type: string; message?: string; sqlstate?: string | null };
      if (ev.type === "done") done = ev as ProgressEvent;
      else if (ev.type === "error" && firstError === null)
        firstError = `${ev.sqlstate ?? "-"} ${ev.message ?? ""}`.trim();
    } catch {
      // not one of the script's lines
    }
  }
  const failed: SeedSample = {
    ok: false,
    ops: 0,
    opsPerS: 0,
    p50Ms: Number.NaN,
    p99Ms: Number.NaN,
    errors: 0,
    failed: 0,
    cpuMs,
    stealPct: steal,
    error: null,
  };
  if (!done) {
    const why = res.timedOut
      ? "timed out"
      : `exited with ${res.code ?? res.signal}: ${res.stderr.trim().split("\n").slice(-2).join(" ")}`;
    return { ...failed, error: `checkpointer_workload.py ${why}`.slice(0, 300) };
  }
  const lost = done.failed > 0 || (done.unfinished_tasks ?? 0) > 0;
  return {
    ok: !lost && done.ops > 0,
    ops: done.ops,
    opsPerS: done.ops / r.seconds,
    p50Ms: done.p50_ms,
    p99Ms: done.p99_ms,
    errors: done.errors,
    failed: done.failed,
    cpuMs,
    stealPct: steal,
    error: lost
      ? `${done.failed} calls lost${done.unfinished_tasks ? `, ${done.unfinished_tasks} tasks unfinished` : ""}${firstError ? `; first error: ${firstError}` : ""}`
      : firstError,
  };
}
