// The built CLI as a child process, for tests of what signals do: start it on free ports, read its
// JSON log lines, send it signals, wait for its exit. Shared by the lifecycle and docker-steps tests.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const BUILT_CLI = join(REPO, "dist", "cli.js");

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Date.now() when the process exited. */
  at: number;
}

export interface SidecarProcess {
  readonly pid: number;
  /** The client port and the HTTP port, from the "pgsidecar listening" log line. */
  readonly port: number;
  readonly httpPort: number;
  /** Everything printed so far (stdout, then stderr). */
  output(): string;
  /** Log lines (JSON on stdout) so far. */
  lines(): LogLine[];
  /** Resolves with the first log line (already printed or to come) whose msg matches. */
  waitForLog(msg: RegExp, timeoutMs?: number): Promise<LogLine>;
  signal(sig: NodeJS.Signals): void;
  readonly exited: Promise<Exit>;
  /** SIGKILL by PID if it still runs (test cleanup). */
  kill(): void;
}

export interface SpawnOptions {
  /** Script to run; defaults to the repo's dist/cli.js. */
  script?: string;
  cwd?: string;
  /** Added to the environment; PGSIDECAR_* of the test's own environment are dropped. */
  env?: Record<string, string>;
  /** Executable; defaults to this Node. */
  node?: string;
  /** Extra arguments before the script (ENTRYPOINT-like). */
  nodeArgs?: string[];
  startTimeoutMs?: number;
}

/**
 * Starts the CLI with `args` (give `--listen 127.0.0.1:0 --http-listen 127.0.0.1:0` for free
 * ports) and resolves once it logs "pgsidecar listening".
 */
export async function spawnSidecar(
  args: string[],
  opts: SpawnOptions = {},
): Promise<SidecarProcess> {
  const script = opts.script ?? BUILT_CLI;
  if (!existsSync(script)) throw new Error(`${script} is missing: run \`npm run build\` first`);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PGSIDECAR_")) env[k] = v;
  Object.assign(env, opts.env ?? {});
  const child: ChildProcess = spawn(
    opts.node ?? process.execPath,
    [...(opts.nodeArgs ?? []), script, ...args],
    { cwd: opts.cwd ?? REPO, env, stdio: ["ignore", "pipe", "pipe"] },
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error("could not spawn the sidecar");
  let stdout = "";
  let stderr = "";
  const parsed: LogLine[] = [];
  const watchers: Array<{ re: RegExp; resolve: (l: LogLine) => void }> = [];
  let partial = "";
  child.stdout?.on("data", (b: Buffer) => {
    const text = b.toString("utf8");
    stdout += text;
    partial += text;
    const parts = partial.split("\n");
    partial = parts.pop() ?? "";
    for (const raw of parts) {
      let line: LogLine;
      try {
        line = JSON.parse(raw) as LogLine;
      } catch {
        continue;
      }
      parsed.push(line);
      for (let i = watchers.length - 1; i >= 0; i--) {
        if (watchers[i].re.test(line.msg)) {
          watchers[i].resolve(line);
          watchers.splice(i, 1);
        }
      }
    }
  });
  child.stderr?.on("data", (b: Buffer) => {
    stderr += b.toString("utf8");
  });
  const exited = new Promise<Exit>((resolve) => {
    child.on("exit", (code, signal) => resolve({ code, signal, at: Date.now() }));
  });
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const output = () => `${stdout}${stderr ? `\n--- stderr ---\n${stderr}` : ""}`;

  const waitForLog = (re: RegExp, timeoutMs = 10_000): Promise<LogLine> => {
    const seen = parsed.find((l) => re.test(l.msg));
    if (seen) return Promise.resolve(seen);
    return new Promise<LogLine>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`no log line matching ${re} within ${timeoutMs} ms:\n${output()}`));
      }, timeoutMs);
      watchers.push({
        re,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void exited.then((e) => {
        clearTimeout(timer);
        reject(new Error(`sidecar exited (${e.code ?? e.signal}) before ${re}:\n${output()}`));
      });
    });
  };
  const kill = () => {
    if (gone) return;
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  };

  let listening: LogLine;
  try {
    listening = await waitForLog(/^pgsidecar listening$/, opts.startTimeoutMs ?? 20_000);
  } catch (err) {
    kill();
    throw err;
  }
  const portOf = (addr: unknown) => Number(String(addr).split(":").pop());
  return {
    pid,
    port: portOf(listening.listen),
    httpPort: listening.http === null ? 0 : portOf(listening.http),
    output,
    lines: () => [...parsed],
    waitForLog,
    signal: (sig) => {
      process.kill(pid, sig);
    },
    exited,
    kill,
  };
}

/** GET http://127.0.0.1:port/path; the status code, or 0 when nothing answers. */
export async function httpStatus(port: number, path: string): Promise<number> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

/** The sum of a metric's samples (matching `labels`) on a sidecar's /metrics; 0 when absent. */
export async function sidecarMetric(
  p: SidecarProcess,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${p.httpPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}
