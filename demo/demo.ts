// `npm run demo`: a throwaway Postgres 15, pgsidecar in front of it (a child process, as in
// production), and a LangGraph-checkpointer workload on psycopg configured as in seed/, while the
// demo kills Postgres backends and restarts the server. It prints a live line each second and a
// summary; with --compare, the same workload straight to Postgres under the same faults.
// Everything stays on 127.0.0.1, is bounded in time, and is cleaned up on exit and on Ctrl-C.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createWriteStream, existsSync, mkdtempSync, rmSync, type WriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import {
  findFreePort,
  type PgCluster,
  pgBinDir,
  startCluster,
  startSyncStandby,
} from "../test/helpers/pg-cluster.js";
import { SCHEMA } from "./checkpointer-sql.js";
import { type Ack, type FailoverTimeline, failover, failoverReport } from "./failover.js";
import { httpGet, parseMetrics, type Sample, sumBy } from "./prom.js";
import {
  type ErrorEvent,
  MAX_RETRIES,
  type PoolWarningEvent,
  type ProgressEvent,
  type WorkloadEvent,
} from "./workload-events.js";

// dist-tools/demo/demo.js -> the repository root.
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = join(ROOT, "dist", "cli.js");
const PY_WORKLOAD = join(ROOT, "demo", "checkpointer_workload.py");
const NODE_WORKLOAD = fileURLToPath(new URL("./node-workload.js", import.meta.url));
const SYSTEM_PYTHON = "/usr/bin/python3";
const HOST = "127.0.0.1";
const APP_USER = "app";
const APP_PASSWORD = "demo-app-password";
const APP_DB = "app";
const POOL_SIZE = 5;
/** The live line and the fault schedule tick once a second. */
const TICK_MS = 1000;
/** Errors up to this long after a fault ended are put down to it. */
const ATTRIBUTION_MS = 5000;
/** "Idle" backends for the kill-idle fault: idle at least this long (as a NAT or LB reaper sees them). */
const IDLE_MS = 250;
/** Seconds a call may run past the end of the run before the workload cancels it. */
const GRACE_S = 15;

const HELP = `npm run demo -- [options]

A throwaway PostgreSQL 15 cluster, pgsidecar in front of it, and a LangGraph-checkpointer-like
workload (psycopg AsyncConnectionPool(max_size=30, min_size=2, autocommit=True,
prepare_threshold=0, row_factory=dict_row)) through it, while backends are killed and the server
restarted. Prints a live line each second and a summary.

Options:
  --duration <s>      How long the workload runs through pgsidecar (default 60)
  --workload <w>      psycopg | node | auto (default auto: psycopg when /usr/bin/python3 has it)
  --concurrency <n>   Concurrent tasks (graph runs) in the workload (default 20)
  --think-ms <ms>     Mean pause between a task's calls (default 50; an agent's LLM call, shortened)
  --retry <mode>      pgsidecar's retry policy: off | safe | all (default safe, pgsidecar's default)
  --compare           Afterwards, run the same workload straight to Postgres with the same faults
  --compare-duration <s>  Length of that run (default 15, at most --duration)
  --no-faults         Run the workload without injecting faults
  --failover          Instead of those faults: a primary with a synchronous streaming standby behind
                      pgsidecar (two hosts, target_session_attrs=read-write); at --failover-at s
                      the primary stops, the standby is promoted, the old primary comes back as a
                      read-only standby; acknowledged checkpoints are checked on the new primary
  --failover-at <s>   When the failover starts (default 10)
  --log-level <l>     pgsidecar's log level (default info)
  --sidecar-log <f>   Keep pgsidecar's log in this file (default: a temp file, deleted at the end)
  -h, --help          This text
`;

interface Options {
  durationS: number;
  workload: "psycopg" | "node";
  concurrency: number;
  thinkMs: number;
  retry: "off" | "safe" | "all";
  compare: boolean;
  compareDurationS: number;
  faults: boolean;
  failoverAtS: number | null;
  logLevel: string;
  sidecarLog: string | null;
}

// ---------- processes and clean-up ----------

const children = new Set<ChildProcess>();
const tempDirs: string[] = [];
let cluster: PgCluster | null = null;
/** --failover: the primary's synchronous standby, promoted mid-run. */
let standby: PgCluster | null = null;
/** The failover's steps as they happened (--failover). */
let failoverTimeline: FailoverTimeline | null = null;
const stop = new AbortController();
let interrupted: string | null = null;

function killChild(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(child.pid, signal);
  } catch {
    // already gone
  }
}

/** Last resort on exit: nothing we started may outlive us. The cluster has its own exit hook. */
function cleanupSync(): void {
  for (const c of children) killChild(c, "SIGKILL");
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

function interrupt(reason: string): void {
  if (interrupted !== null) return;
  interrupted = reason;
  stop.abort();
}

function installSignalHandlers(): void {
  process.on("exit", cleanupSync);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(sig, () => {
      if (interrupted !== null) {
        process.stderr.write(`\n${sig} again: stopping now\n`);
        cleanupSync();
        process.exit(130);
      }
      process.stderr.write(`\n${sig}: stopping the workload and cleaning up...\n`);
      interrupt(sig);
    });
  }
}

function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  killChild(child, "SIGTERM");
  if (!(await waitExit(child, graceMs))) {
    killChild(child, "SIGKILL");
    await waitExit(child, 2000);
  }
}

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** The environment without variables that would steer a child elsewhere (PG*, PGSIDECAR_*, Python's). */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (
      k.startsWith("PG") ||
      ["PYTHONPATH", "PYTHONHOME", "PYENV_VERSION", "VIRTUAL_ENV"].includes(k)
    )
      continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** Resolves after ms, or at once when the demo is stopped. */
const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    if (stop.signal.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(
      () => {
        stop.signal.removeEventListener("abort", onAbort);
        resolve();
      },
      Math.max(0, ms),
    );
    stop.signal.addEventListener("abort", onAbort, { once: true });
  });

// ---------- formatting ----------

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const pad = (s: string | number, n: number) => String(s).padStart(n);
const padEnd = (s: string | number, n: number) => String(s).padEnd(n);
const entries = (o: Record<string, number>) =>
  Object.entries(o)
    .filter(([, v]) => v > 0)
    .sort((a, b) => b[1] - a[1]);
const list = (o: Record<string, number>) =>
  entries(o)
    .map(([k, v]) => `${k} ${fmt(v)}`)
    .join(", ");
const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);

// ---------- options and prerequisites ----------

function parseOptions(): Options {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      duration: { type: "string", default: "60" },
      workload: { type: "string", default: "auto" },
      concurrency: { type: "string", default: "20" },
      "think-ms": { type: "string", default: "50" },
      retry: { type: "string", default: "safe" },
      compare: { type: "boolean", default: false },
      "compare-duration": { type: "string", default: "15" },
      "no-faults": { type: "boolean", default: false },
      failover: { type: "boolean", default: false },
      "failover-at": { type: "string", default: "10" },
      "log-level": { type: "string", default: "info" },
      "sidecar-log": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const num = (name: string, v: string, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max)
      die(`--${name} ${v}: expected a number from ${min} to ${max}`);
    return n;
  };
  const durationS = num("duration", values.duration, 5, 3600);
  const retry = values.retry;
  if (retry !== "off" && retry !== "safe" && retry !== "all")
    die(`--retry ${retry}: expected off, safe or all`);
  let workload = values.workload;
  if (workload !== "psycopg" && workload !== "node" && workload !== "auto")
    die(`--workload ${workload}: expected psycopg, node or auto`);
  if (workload === "auto") {
    workload = havePsycopg() ? "psycopg" : "node";
    if (workload === "node")
      note(
        "psycopg 3 is not available to /usr/bin/python3, so the workload runs on node-postgres.\n" +
          "  For the psycopg workload of the report: apt-get install python3-psycopg python3-psycopg-pool",
      );
  } else if (workload === "psycopg" && !havePsycopg()) {
    die(
      "--workload psycopg needs /usr/bin/python3 with psycopg 3 and psycopg_pool:\n" +
        "  apt-get install python3-psycopg python3-psycopg-pool   (or use --workload node)",
    );
  }
  return {
    durationS,
    workload: workload as "psycopg" | "node",
    concurrency: num("concurrency", values.concurrency, 1, 200),
    thinkMs: num("think-ms", values["think-ms"], 0, 10_000),
    retry,
    compare: values.compare,
    compareDurationS: Math.min(
      durationS,
      num("compare-duration", values["compare-duration"], 5, 600),
    ),
    faults: !values["no-faults"],
    failoverAtS: values.failover
      ? num("failover-at", values["failover-at"], 1, durationS - 1)
      : null,
    logLevel: values["log-level"],
    sidecarLog: values["sidecar-log"] ?? null,
  };
}

function havePsycopg(): boolean {
  const r = spawnSync(SYSTEM_PYTHON, ["-c", "import psycopg, psycopg_pool"], {
    env: cleanEnv(),
    stdio: "ignore",
    timeout: 20_000,
  });
  return r.status === 0;
}

function die(message: string): never {
  process.stderr.write(`demo: ${message}\n`);
  process.exit(2);
}

function note(message: string): void {
  process.stdout.write(`note: ${message}\n`);
}

function checkPrerequisites(): void {
  if (!existsSync(CLI)) die(`${CLI} is missing: run \`npm run build\` (npm run demo does).`);
  const initdb = join(pgBinDir(), "initdb");
  if (!existsSync(initdb))
    die(
      `no PostgreSQL server binaries at ${pgBinDir()} (set PG_BIN, or: apt-get install postgresql-15)`,
    );
}

// ---------- the sidecar ----------

interface Sidecar {
  child: ChildProcess;
  port: number;
  httpPort: number;
  logPath: string;
  /** "replaying unit on another server" lines in its log. */
  replaysLogged: number;
  /** "server lost while serving client" lines in its log. */
  lostLogged: number;
  /** WARN / ERROR lines of its log (the first few). */
  problems: string[];
  problemCount: number;
}

/** `hosts`: host:port[,host:port...] as libpq's multi-host URL has them. */
async function startSidecar(hosts: string, opts: Options, logDir: string): Promise<Sidecar> {
  const port = await findFreePort();
  const httpPort = await findFreePort();
  const logPath = opts.sidecarLog ?? join(logDir, "pgsidecar.log");
  const log: WriteStream = createWriteStream(logPath);
  const args = [
    CLI,
    ...["--listen", `${HOST}:${port}`, "--http-listen", `${HOST}:${httpPort}`],
    ...["--pool-mode", "transaction", "--pool-size", String(POOL_SIZE)],
    ...["--retry", opts.retry, "--admin-users", APP_USER, "--shutdown-timeout", "5s"],
    ...["--log-level", opts.logLevel, "--log-format", "json"],
  ];
  // The password goes in through the environment, not argv (where `ps` would show it).
  const attrs = opts.failoverAtS === null ? "" : "?target_session_attrs=read-write";
  const upstream = `postgres://${APP_USER}:${APP_PASSWORD}@${hosts}/${APP_DB}${attrs}`;
  const child = track(
    spawn(process.execPath, args, {
      cwd: ROOT,
      env: cleanEnv({ PGSIDECAR_UPSTREAM: upstream }),
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  const sc: Sidecar = {
    child,
    port,
    httpPort,
    logPath,
    replaysLogged: 0,
    lostLogged: 0,
    problems: [],
    problemCount: 0,
  };
  const onLine = (line: string) => {
    log.write(`${line}\n`);
    if (line.includes("replaying unit on another server")) sc.replaysLogged++;
    if (line.includes("server lost while serving client")) sc.lostLogged++;
    if (/"level":(40|50|60)\b/.test(line)) {
      sc.problemCount++;
      if (sc.problems.length < 8) sc.problems.push(line.slice(0, 400));
    }
  };
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", onLine);
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", onLine);
  child.once("exit", () => log.end());

  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && !stop.signal.aborted) {
    if (child.exitCode !== null) break;
    try {
      const r = await httpGet(`http://${HOST}:${httpPort}/readyz`, 1000);
      if (r.status === 200) return sc;
    } catch {
      // not listening yet
    }
    await sleep(200);
  }
  throw new Error(
    `pgsidecar did not become ready (exit code ${child.exitCode}); its log:\n${sc.problems.join("\n")}`,
  );
}

async function scrape(sc: Sidecar): Promise<Sample[] | null> {
  try {
    const r = await httpGet(`http://${HOST}:${sc.httpPort}/metrics`, 1500);
    return r.status === 200 ? parseMetrics(r.body) : null;
  } catch {
    return null;
  }
}

interface SidecarNumbers {
  closedByReason: Record<string, number>;
  opened: number;
  replaysByOutcome: Record<string, number>;
  clientErrorsBySqlstate: Record<string, number>;
  units: number;
  connectFailures: Record<string, number>;
}

function sidecarNumbers(samples: Sample[]): SidecarNumbers {
  return {
    closedByReason: sumBy(samples, "pgsidecar_server_connections_closed_total", "reason"),
    opened: sum(sumBy(samples, "pgsidecar_server_connections_opened_total")),
    replaysByOutcome: sumBy(samples, "pgsidecar_replays_total", "outcome"),
    clientErrorsBySqlstate: sumBy(samples, "pgsidecar_client_errors_total", "sqlstate"),
    units: sum(sumBy(samples, "pgsidecar_queries_total")),
    connectFailures: sumBy(samples, "pgsidecar_upstream_connect_failures_total", "reason"),
  };
}

// ---------- faults ----------

type FaultKind = "kill-idle" | "kill-all" | "restart" | "failover";

const FAULT_LABEL: Record<FaultKind, string> = {
  "kill-idle": `pg_terminate_backend(idle >= ${IDLE_MS} ms)`,
  "kill-all": "pg_terminate_backend(all backends)",
  restart: "pg_ctl restart -m fast",
  failover: "primary stopped, standby promoted, old primary back as a standby",
};

interface FaultPlan {
  idleEveryS: number;
  allEveryS: number;
  /** First restart at this second, then every restartEveryS. */
  restartAtS: number;
  restartEveryS: number;
  /** Only a failover, at this second (--failover). */
  failoverAtS?: number;
}

interface Fault {
  kind: FaultKind;
  start: number;
  end: number;
  /** Backends terminated (for kill-*), or those connected as the restart began. */
  backends: number;
  error?: string;
}

/** A failover's steps go to the live line as they complete. */
type StepListener = (what: string) => void;

/** The fault due at second `k` of a run (a restart wins over a kill-all over a kill-idle). */
function faultAt(k: number, plan: FaultPlan): FaultKind | null {
  if (plan.failoverAtS !== undefined) return k === plan.failoverAtS ? "failover" : null;
  if (k >= plan.restartAtS && (k - plan.restartAtS) % plan.restartEveryS === 0) return "restart";
  if (k > 0 && k % plan.allEveryS === 0) return "kill-all";
  if (k > 0 && k % plan.idleEveryS === 0) return "kill-idle";
  return null;
}

async function terminate(c: PgCluster, onlyIdle: boolean): Promise<number> {
  const rows = await c.query(
    `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
      WHERE usename = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()
        ${onlyIdle ? `AND state = 'idle' AND state_change < now() - interval '${IDLE_MS} ms'` : ""}`,
    [APP_USER],
  );
  return rows[0]?.n ?? 0;
}

async function inject(c: PgCluster, kind: FaultKind, step: StepListener): Promise<Fault> {
  const fault: Fault = { kind, start: Date.now(), end: 0, backends: 0 };
  try {
    if (kind === "failover" && standby) {
      fault.backends = (await c.backendPids(APP_USER)).length;
      failoverTimeline = await failover(c, standby, step);
    } else if (kind === "restart") {
      fault.backends = (await c.backendPids(APP_USER)).length;
      await c.restart("fast");
    } else {
      fault.backends = await terminate(c, kind === "kill-idle");
    }
  } catch (err) {
    fault.error = (err as Error).message.split("\n")[0];
  }
  fault.end = Date.now();
  return fault;
}

// ---------- one run of the workload ----------

interface RunResult {
  label: string;
  durationS: number;
  final: ProgressEvent | null;
  errors: ErrorEvent[];
  poolWarnings: PoolWarningEvent[];
  faults: Fault[];
  sidecar: SidecarNumbers | null;
  stderr: string;
  exitCode: number | null;
  /** pgsidecar's /status, taken while calls were still unfinished after the end of the run. */
  statusWhileStuck: unknown;
  /** Checkpoints the application saw acknowledged (--failover, psycopg workload). */
  acks: Ack[];
}

function startWorkload(opts: Options, dsn: string, durationS: number): ChildProcess {
  const common = [
    ...["--dsn", dsn, "--duration", String(durationS)],
    ...["--concurrency", String(opts.concurrency), "--think-ms", String(opts.thinkMs)],
    ...["--grace", String(GRACE_S)],
  ];
  // With a failover, the psycopg workload names each acknowledged checkpoint, to look for later.
  const acks = opts.failoverAtS === null ? [] : ["--acks"];
  const [cmd, args] =
    opts.workload === "psycopg"
      ? [SYSTEM_PYTHON, ["-u", PY_WORKLOAD, ...common, ...acks]]
      : [process.execPath, [NODE_WORKLOAD, ...common]];
  return track(spawn(cmd, args, { cwd: ROOT, env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] }));
}

async function runWorkload(
  label: string,
  opts: Options,
  dsn: string,
  durationS: number,
  plan: FaultPlan | null,
  sc: Sidecar | null,
): Promise<RunResult> {
  const c = cluster as PgCluster;
  const child = startWorkload(opts, dsn, durationS);
  const result: RunResult = {
    label,
    durationS,
    final: null,
    errors: [],
    poolWarnings: [],
    faults: [],
    sidecar: null,
    stderr: "",
    exitCode: null,
    statusWhileStuck: null,
    acks: [],
  };
  // Written by the line reader; an object so that TypeScript does not narrow it to null.
  const latest: { progress: ProgressEvent | null } = { progress: null };
  let readyAt = 0;
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
    let ev: WorkloadEvent;
    try {
      ev = JSON.parse(line);
    } catch {
      result.stderr += `${line}\n`;
      return;
    }
    if (ev.type === "ready") readyAt = Date.now();
    else if (ev.type === "progress") latest.progress = ev;
    else if (ev.type === "done") result.final = ev;
    else if (ev.type === "error") result.errors.push(ev);
    else if (ev.type === "pool_warning") result.poolWarnings.push(ev);
    else if (ev.type === "ack") result.acks.push(ev);
  });
  (child.stderr as NodeJS.ReadableStream).on("data", (b: Buffer) => {
    if (result.stderr.length < 20_000) result.stderr += b.toString("utf8");
  });
  const exited = new Promise<void>((resolve) =>
    child.once("exit", (code) => {
      result.exitCode = code;
      resolve();
    }),
  );

  // Wait for the pool to open (min_size=2 connections).
  const readyDeadline = Date.now() + 30_000;
  while (readyAt === 0 && child.exitCode === null && !stop.signal.aborted) {
    if (Date.now() > readyDeadline) {
      result.stderr += "the workload did not open its pool within 30 s\n";
      break;
    }
    await sleep(50);
  }
  if (readyAt === 0) {
    await stopChild(child, 3000);
    await exited;
    return result;
  }

  let busy: Promise<void> | null = null;
  let lastFault = "";
  let lastOps = 0;
  const start = readyAt;
  // Past the end of its duration the workload finishes the calls in flight, for GRACE_S at most.
  const hardEnd = start + (durationS + GRACE_S + 10) * 1000;
  for (let k = 1; ; k++) {
    await Promise.race([sleep(start + k * TICK_MS - Date.now()), exited]);
    if (child.exitCode !== null || child.signalCode !== null || stop.signal.aborted) break;
    if (Date.now() > hardEnd) {
      result.stderr += "the workload overran its time; stopped\n";
      break;
    }
    const kind = plan && k < durationS ? faultAt(k, plan) : null;
    if (kind && busy === null) {
      const step = (what: string) => {
        lastFault = lastFault ? `${lastFault}; ${what}` : what;
      };
      busy = inject(c, kind, step).then((f) => {
        result.faults.push(f);
        if (f.error) step(`${f.kind} failed: ${f.error}`);
        else if (f.kind === "restart") step(`restart (${((f.end - f.start) / 1000).toFixed(1)} s)`);
        else if (f.kind !== "failover")
          step(`${f.kind}: ${f.backends} backend${f.backends === 1 ? "" : "s"}`);
        busy = null;
      });
    } else if (kind) {
      lastFault = `${kind} skipped (previous fault still running)`;
    }
    const p = latest.progress;
    const ops = p?.ops ?? 0;
    const opsBefore = lastOps;
    let line = `${pad(k, 4)}s  calls ${pad(fmt(ops), 7)} (+${pad(fmt(ops - lastOps), 4)}/s)  errors ${pad(p?.errors ?? 0, 3)}  broken ${pad(p?.broken ?? 0, 3)}  lost runs ${pad(p?.failed ?? 0, 2)}`;
    lastOps = ops;
    if (p?.slow_calls) line += `  slow ${p.slow_calls}`;
    if (k > durationS) {
      line += "  (finishing)";
      if (sc && p?.slow_calls) {
        const r = await httpGet(`http://${HOST}:${sc.httpPort}/status`).catch(() => null);
        if (r?.status === 200) result.statusWhileStuck = JSON.parse(r.body);
      }
    }
    if (sc) {
      const samples = await scrape(sc);
      if (samples) {
        const n = sidecarNumbers(samples);
        const replaced = n.closedByReason;
        line += `  | backends replaced ${pad(sum(replaced), 3)}`;
        const replays = Math.max(n.replaysByOutcome.succeeded ?? 0, sc.replaysLogged);
        line += `  replays ${pad(replays, 3)}`;
        const notReplayed =
          (n.replaysByOutcome.not_retryable ?? 0) + (n.replaysByOutcome.gave_up ?? 0);
        if (notReplayed > 0) line += ` (not replayed ${notReplayed})`;
      } else {
        line += "  | /metrics unavailable";
      }
    }
    if (lastFault) line += `  | ${lastFault}`;
    lastFault = "";
    // While the last calls finish, a line every 5 s is enough once nothing moves.
    const quiet = k > durationS + 1 && ops === opsBefore && k % 5 !== 0;
    if (!quiet) process.stdout.write(`${line}\n`);
  }
  if (child.exitCode === null) await stopChild(child, 5000);
  await exited;
  if (busy) await busy;
  if (sc) {
    const samples = await scrape(sc);
    if (samples) result.sidecar = sidecarNumbers(samples);
  }
  result.final ??= latest.progress;
  return result;
}

// ---------- reporting ----------

function attribute(r: RunResult): Map<string, { errors: number; broken: number }> {
  const out = new Map<string, { errors: number; broken: number }>();
  const faults = [...r.faults].sort((a, b) => a.start - b.start);
  for (const e of r.errors) {
    let key = "no fault nearby";
    for (const f of faults) {
      if (f.start > e.t) break;
      key = e.t - f.end <= ATTRIBUTION_MS ? f.kind : "no fault nearby";
    }
    const slot = out.get(key) ?? { errors: 0, broken: 0 };
    slot.errors++;
    if (e.broken) slot.broken++;
    out.set(key, slot);
  }
  return out;
}

function printRun(r: RunResult, sc: Sidecar | null): void {
  const f = r.final;
  const row = (k: string, v: string) => process.stdout.write(`  ${padEnd(k, 38)}${v}\n`);
  process.stdout.write(`\n${r.label}\n`);
  if (!f) {
    row("workload", `no result (exit code ${r.exitCode})`);
    if (r.stderr) process.stdout.write(`  workload stderr:\n${indent(r.stderr.slice(-3000))}\n`);
    return;
  }
  row(
    "checkpointer calls completed",
    `${fmt(f.ops)}  (${fmt(f.ops / r.durationS)}/s; latency p50 ${f.p50_ms} ms, p99 ${f.p99_ms} ms, max ${fmt(f.max_ms)} ms)`,
  );
  row(`runs lost (a call failed ${MAX_RETRIES + 1} times)`, fmt(f.failed));
  row("errors the application saw", fmt(f.errors));
  row("  of which broke the connection", fmt(f.broken));
  for (const [kind, n] of entries(f.by_kind)) row(`    ${fmt(n)} x`, kind);
  if (f.pool_warnings > 0) {
    row("client pool warnings", fmt(f.pool_warnings));
    const seen = new Map<string, number>();
    for (const w of r.poolWarnings) {
      // One line per kind: without object addresses and connection details.
      const m = w.message
        .split("\n")[0]
        .replace(/ at 0x[0-9a-f]+/g, "")
        .replace(/ \(host=[^)]*\)/g, "")
        .slice(0, 90);
      seen.set(m, (seen.get(m) ?? 0) + 1);
    }
    for (const [m, n] of [...seen].sort((a, b) => b[1] - a[1]).slice(0, 4))
      row(`    ${fmt(n)} x`, m);
  }
  if (f.stuck?.length) {
    row(
      `calls unfinished ${GRACE_S} s after the end`,
      `${f.stuck.length}: ${f.stuck.map((x) => `${x.op} (attempt ${x.attempt}, ${x.phase}, ${x.seconds} s)`).join(", ")}`,
    );
    const status = r.statusWhileStuck as {
      clients?: Array<Record<string, unknown>>;
      servers?: Array<Record<string, unknown>>;
    } | null;
    if (status?.clients) {
      const count = (rows: Array<Record<string, unknown>>) => {
        const by: Record<string, number> = {};
        for (const c of rows) by[String(c.state)] = (by[String(c.state)] ?? 0) + 1;
        return list(by) || "none";
      };
      row(
        "  pgsidecar's /status meanwhile",
        `clients: ${count(status.clients)}; servers: ${count(status.servers ?? [])}`,
      );
    }
  }
  if (r.sidecar && sc) {
    const n = r.sidecar;
    row(
      "backends replaced by pgsidecar",
      `${fmt(sum(n.closedByReason))}  (${list(n.closedByReason) || "none"}); opened ${fmt(n.opened)}`,
    );
    row(
      "replays on a new backend",
      `${fmt(sc.replaysLogged)} attempts in pgsidecar's log; pgsidecar_replays_total by unit: ${list(n.replaysByOutcome) || "none"}`,
    );
    row("errors pgsidecar sent to clients", list(n.clientErrorsBySqlstate) || "none");
    if (sum(n.connectFailures) > 0)
      row("failed backend connects (retried)", list(n.connectFailures));
    row("units relayed", fmt(n.units));
  }
  if (r.faults.length > 0) {
    const attributed = attribute(r);
    process.stdout.write(
      `\n  ${padEnd("fault", 40)}${pad("times", 6)}${pad("backends", 10)}${pad("app errors", 12)}${pad("broken", 8)}\n`,
    );
    for (const kind of ["kill-idle", "kill-all", "restart"] as const) {
      const fs = r.faults.filter((x) => x.kind === kind);
      if (fs.length === 0) continue;
      const a = attributed.get(kind) ?? { errors: 0, broken: 0 };
      const failed = fs.filter((x) => x.error).length;
      process.stdout.write(
        `  ${padEnd(FAULT_LABEL[kind], 40)}${pad(fs.length, 6)}${pad(
          fs.reduce((n, x) => n + x.backends, 0),
          10,
        )}${pad(a.errors, 12)}${pad(a.broken, 8)}${failed ? `  (${failed} failed to run)` : ""}\n`,
      );
    }
    const other = attributed.get("no fault nearby");
    if (other)
      process.stdout.write(
        `  ${padEnd("(no fault in the 5 s before)", 40)}${pad("", 16)}${pad(other.errors, 12)}${pad(other.broken, 8)}\n`,
      );
  }
}

function indent(s: string): string {
  return s
    .trimEnd()
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");
}

async function showPools(sc: Sidecar): Promise<string> {
  const client = new pg.Client({
    host: HOST,
    port: sc.port,
    user: APP_USER,
    password: APP_PASSWORD,
    database: "pgsidecar",
    connectionTimeoutMillis: 5000,
  });
  client.on("error", () => {});
  try {
    await client.connect();
    const r = await client.query("SHOW POOLS");
    return r.rows
      .map((row) =>
        Object.entries(row)
          .map(([k, v]) => `${k}=${v}`)
          .join(" "),
      )
      .join("\n");
  } finally {
    await client.end().catch(() => {});
  }
}

// ---------- main ----------

async function main(): Promise<void> {
  const opts = parseOptions();
  checkPrerequisites();
  installSignalHandlers();
  const started = Date.now();
  // Bound the whole demo: set-up, the runs, and clean-up time.
  const budgetMs = (opts.durationS + (opts.compare ? opts.compareDurationS : 0) + 240) * 1000;
  const budget = setTimeout(() => {
    process.stderr.write("\ndemo: time budget exceeded; stopping\n");
    interrupt("time budget exceeded");
    setTimeout(() => {
      cleanupSync();
      process.exit(1);
    }, 60_000).unref();
  }, budgetMs);
  budget.unref();

  const failoverAtS = opts.failoverAtS;
  const plan: FaultPlan | null =
    failoverAtS !== null
      ? { idleEveryS: 0, allEveryS: 0, restartAtS: 0, restartEveryS: 0, failoverAtS }
      : opts.faults
        ? { idleEveryS: 3, allEveryS: 7, restartAtS: 10, restartEveryS: 20 }
        : null;
  if (failoverAtS !== null && opts.compare) {
    note("--compare is skipped with --failover (the failover changes which server is the primary)");
    opts.compare = false;
  }
  const tmp = mkdtempSync(join(tmpdir(), "pgsidecar-demo-"));
  tempDirs.push(tmp);
  let sc: Sidecar | null = null;
  const results: Array<{ r: RunResult; sc: Sidecar | null }> = [];
  try {
    const workloadDesc =
      opts.workload === "psycopg"
        ? "psycopg 3 AsyncConnectionPool(max_size=30, min_size=2, autocommit=True, prepare_threshold=0, row_factory=dict_row)"
        : "node-postgres pg.Pool(max=30), named prepared statements";
    process.stdout.write("pgsidecar demo\n");
    process.stdout.write("  starting a throwaway PostgreSQL cluster (SCRAM)...\n");
    // A failover must not lose acknowledged commits: they wait for the synchronous standby.
    cluster = await startCluster(
      failoverAtS === null ? {} : { conf: { synchronous_commit: "on" } },
    );
    await cluster.createUser(APP_USER, APP_PASSWORD);
    await cluster.createDatabase(APP_DB, APP_USER);
    const setup = new pg.Client({
      host: HOST,
      port: cluster.port,
      user: APP_USER,
      password: APP_PASSWORD,
      database: APP_DB,
    });
    await setup.connect();
    await setup.query(SCHEMA);
    await setup.end();

    let hosts = `${HOST}:${cluster.port}`;
    if (failoverAtS !== null) {
      process.stdout.write("  starting its synchronous streaming standby (pg_basebackup -R)...\n");
      standby = await startSyncStandby(cluster);
      hosts += `,${HOST}:${standby.port}`;
    }
    sc = await startSidecar(hosts, opts, tmp);
    const viaSidecar = `postgresql://${APP_USER}:${APP_PASSWORD}@${HOST}:${sc.port}/${APP_DB}`;
    const row = (k: string, v: string) => process.stdout.write(`  ${padEnd(k, 11)}${v}\n`);
    row(
      "postgres",
      `${HOST}:${cluster.port}, PostgreSQL from ${pgBinDir()}, data in ${cluster.dataDir}`,
    );
    row(
      "pgsidecar",
      `${HOST}:${sc.port} (pid ${sc.child.pid}): transaction pooling, pool_size ${POOL_SIZE}, retry ${opts.retry}; http://${HOST}:${sc.httpPort}/metrics`,
    );
    row("workload", `${workloadDesc}`);
    row(
      "",
      `${opts.concurrency} tasks, each a loop of graph-run calls: get_tuple (SELECT), put (pipelined upserts), put_writes (upserts); a failed call is retried up to ${MAX_RETRIES} times, as LangGraph retries a run`,
    );
    row("connects to", viaSidecar.replace(APP_PASSWORD, "****"));
    if (standby)
      row(
        "standby",
        `${HOST}:${standby.port}, synchronous streaming standby; pgsidecar's upstream: ${hosts} with target_session_attrs=read-write`,
      );
    if (plan?.failoverAtS !== undefined)
      row(
        "fault",
        `at ${plan.failoverAtS} s the primary stops (pg_ctl stop -m fast), 2 s later the standby is promoted, 3 s after that the old primary comes back as a read-only standby of the new one`,
      );
    else if (plan)
      row(
        "faults",
        `every ${plan.idleEveryS} s pg_terminate_backend() of the backends idle for ${IDLE_MS} ms or more, every ${plan.allEveryS} s of all of them (busy ones too), at ${plan.restartAtS} s and then every ${plan.restartEveryS} s pg_ctl restart -m fast`,
      );
    row(
      "retry",
      opts.retry === "safe"
        ? "safe: a unit whose backend dies is replayed only if it was never sent or is read-only; an interrupted upsert gets a non-fatal ERROR 08006 on a connection that stays open (--retry all replays idempotent upserts too)"
        : opts.retry === "all"
          ? "all: a unit whose backend dies before any reply is replayed, writes included (LangGraph upserts are idempotent)"
          : "off: a unit whose backend dies gets a non-fatal ERROR 08006; nothing is replayed",
    );
    process.stdout.write(
      `\nRunning for ${opts.durationS} s. Per second: calls done, errors the application saw, errors that broke its connection, runs lost after ${MAX_RETRIES} retries | pgsidecar's backends replaced and units replayed | the fault injected.\n`,
    );

    const main = await runWorkload(
      `Through pgsidecar (${opts.durationS} s, ${opts.workload}, retry ${opts.retry})`,
      opts,
      viaSidecar,
      opts.durationS,
      plan,
      sc,
    );
    results.push({ r: main, sc });

    let pools = "";
    if (!stop.signal.aborted) {
      pools = await showPools(sc).catch((e: Error) => `SHOW POOLS failed: ${e.message}`);
    }
    await stopChild(sc.child, 8000);

    if (opts.compare && !stop.signal.aborted) {
      const direct = `postgresql://${APP_USER}:${APP_PASSWORD}@${HOST}:${cluster.port}/${APP_DB}`;
      process.stdout.write(
        `\nFor contrast: the same workload straight to Postgres (${HOST}:${cluster.port}) for ${opts.compareDurationS} s${plan ? ", same faults" : ""}.\n`,
      );
      const r = await runWorkload(
        `Straight to Postgres, no pgsidecar (${opts.compareDurationS} s)`,
        opts,
        direct,
        opts.compareDurationS,
        plan,
        null,
      );
      results.push({ r, sc: null });
    }

    process.stdout.write(`\n================ Summary ================\n`);
    for (const { r, sc: s } of results) printRun(r, s);
    if (failoverTimeline && standby) {
      const lines = await failoverReport(failoverTimeline, main.acks, standby, {
        user: APP_USER,
        password: APP_PASSWORD,
        database: APP_DB,
      }).catch((e: Error) => [`could not check the new primary: ${e.message}`]);
      process.stdout.write(`\n  failover:\n${indent(lines.join("\n"))}\n`);
    }
    if (pools) process.stdout.write(`\n  admin console, SHOW POOLS:\n${indent(pools)}\n`);
    if (sc.problemCount > 0) {
      process.stdout.write(
        `\n  pgsidecar logged ${sc.problemCount} warning/error line(s); the first:\n${indent(sc.problems.join("\n"))}\n`,
      );
    }
    verdict(results, opts);
    if (opts.sidecarLog) process.stdout.write(`\n  pgsidecar's log: ${opts.sidecarLog}\n`);
    if (interrupted)
      process.stdout.write(
        `\n  (interrupted: ${interrupted}; the numbers cover the time until then)\n`,
      );
    process.stdout.write(`\n  total time ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  } catch (err) {
    const log = cluster?.log();
    if (log) process.stderr.write(`--- postgres log (tail) ---\n${log.slice(-3000)}\n`);
    throw err;
  } finally {
    clearTimeout(budget);
    for (const c of [...children]) await stopChild(c, 3000);
    await standby?.destroy();
    await cluster?.destroy();
    for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
  }
}

function verdict(results: Array<{ r: RunResult; sc: Sidecar | null }>, opts: Options): void {
  const through = results[0]?.r.final;
  const direct = results[1]?.r.final;
  process.stdout.write("\n");
  if (!through) return;
  const say = (text: string) => process.stdout.write(`  ${text}\n`);
  const hung = through.stuck?.length ?? 0;
  if (through.errors === 0) {
    say("Through pgsidecar the application saw no error at all.");
  } else if (through.broken === 0) {
    say(
      `Through pgsidecar the application saw ${through.errors} error(s), none of which closed its connection` +
        (through.failed === 0
          ? `; its ${MAX_RETRIES} retries absorbed them all (no run lost).`
          : `; ${through.failed} call(s) still failed after ${MAX_RETRIES} retries.`),
    );
    const onlyLost = Object.keys(through.by_kind).every((k) => k.startsWith("08006 "));
    if (onlyLost && opts.retry !== "all")
      say(
        'They are 08006 "server connection was lost": units that were not read-only whose backend died after\n' +
          "  they were sent, which retry=safe does not replay. The checkpointer's upserts are idempotent, so\n" +
          "  `--retry all` replays them as well (README, Retry policy).",
      );
  } else {
    say(
      `Through pgsidecar the application saw ${through.errors} error(s), ${through.broken} of which broke its connection.`,
    );
    say(
      "That is not what pgsidecar promises (DESIGN.md section 1): see the error kinds above and pgsidecar's log.",
    );
  }
  if (hung > 0)
    say(
      `${hung} call(s) never got an answer (still waiting ${GRACE_S} s after the end): pgsidecar left those clients hanging.\n` +
        "  That is a pgsidecar bug; the summary above shows what its /status said about them.",
    );
  if (direct) {
    say(
      `Straight to Postgres: ${direct.errors} error(s), ${direct.broken} of them with a broken connection, ${direct.failed} run(s) lost` +
        `${direct.pool_warnings ? `, ${direct.pool_warnings} pool warning(s)` : ""}.`,
    );
    if (direct.broken > 0)
      say(
        'Those are the errors of the report: "server closed the connection unexpectedly" on pooled connections\n' +
          "  whose backend had gone away.",
      );
  }
}

main().then(
  () => process.exit(interrupted ? 130 : 0),
  (err: Error) => {
    process.stderr.write(`demo failed: ${err.stack ?? err.message}\n`);
    cleanupSync();
    process.exit(1);
  },
);
