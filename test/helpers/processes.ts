// Child processes for tests: run a command to completion under a deadline, and psycopg scripts.
import { spawn } from "node:child_process";

export interface RunOptions {
  /** Replaces the environment when given (merge with process.env yourself if you want it). */
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed. stdin is empty otherwise. */
  input?: string | Buffer;
  /** The child is killed (SIGKILL, by PID) after this many ms; default 60 000. */
  timeoutMs?: number;
  cwd?: string;
}

export interface RunResult {
  /** Exit code; null when the child died of a signal (then `signal` says which). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Runs `cmd args` and resolves when it exits (never rejects on a non-zero exit: check `code`).
 * Rejects only if the command cannot be spawned at all (ENOENT...).
 */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let settled = false;
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    // A child that exits before reading its input makes stdin emit EPIPE; that is not our error.
    child.stdin.on("error", () => {});
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }, timeoutMs);
    child.on("error", (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(e);
    });
    // 'close' waits for stdout/stderr to end too, so nothing printed last is lost.
    child.on("close", (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        timedOut,
      });
    });
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

/** Debian's interpreter, which has python3-psycopg and python3-psycopg-pool (a pyenv one does not). */
export const SYSTEM_PYTHON = "/usr/bin/python3";

/**
 * Runs `/usr/bin/python3 -c script` with `env` added to the current environment. Variables that
 * would point the system interpreter at another Python's packages (PYTHONPATH, PYTHONHOME, pyenv's)
 * are dropped unless `env` sets them.
 */
export function python3Psycopg(
  script: string,
  env: Record<string, string> = {},
  opts: Omit<RunOptions, "env"> = {},
): Promise<RunResult> {
  const base: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ["PYTHONPATH", "PYTHONHOME", "PYENV_VERSION", "VIRTUAL_ENV"]) delete base[k];
  return run(SYSTEM_PYTHON, ["-c", script], { ...opts, env: { ...base, ...env } });
}
