// Runs test/clients/psycopg_workload.py with Debian's python3-psycopg and returns its counts.
import { fileURLToPath } from "node:url";
import { run, SYSTEM_PYTHON } from "./processes.js";

const script = fileURLToPath(new URL("../clients/psycopg_workload.py", import.meta.url));

interface WorkloadResult {
  done: number;
  wrong: number;
  errors: number;
  first_errors: string[];
}

export async function runPsycopg(
  dsn: string,
  env: Record<string, string>,
): Promise<WorkloadResult> {
  const r = await run(SYSTEM_PYTHON, [script], {
    env: { ...process.env, DSN: dsn, ...env },
    timeoutMs: 240_000,
  });
  if (r.code !== 0)
    throw new Error(`psycopg workload failed (${r.code}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split("\n").pop() as string);
}
