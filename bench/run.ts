// `npm run bench`: a throwaway Postgres (pgbench -i -s 10), PgBouncer and pgsidecar in front of it
// (transaction mode, the same pool size), then pgbench through each, interleaved, and an idle-client
// memory test. Prints a Markdown table and writes bench/RESULTS.md. See bench/README.md.
// Everything listens on 127.0.0.1 only, is bounded in time, and is killed by PID on exit.

import { execFileSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type PgCluster, pgBinDir, startCluster } from "../test/helpers/pg-cluster.js";
import { run } from "../test/helpers/processes.js";
import { openIdleClients } from "./idle-clients.js";
import { runPgbench } from "./pgbench.js";
import {
  killAllStarted,
  pgbouncerVersion,
  postgresTarget,
  startNodeRelay,
  startPgbouncer,
  startSidecar,
  type Target,
} from "./poolers.js";
import { totalCpuMs, totalRssKiB } from "./procfs.js";
import { formatProfile, summarizeProfile } from "./profile.js";
import {
  type BenchReport,
  type Cell,
  cellKey,
  checks,
  type IdleResult,
  type Machine,
  markdown,
  type Sample,
  type Scenario,
} from "./report.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PGBOUNCER = "/usr/sbin/pgbouncer";

const HELP = `npm run bench -- [options]

Starts a throwaway Postgres (pgbench -i -s 10), PgBouncer and pgsidecar (transaction mode, the same
pool size), runs pgbench through Postgres, PgBouncer and pgsidecar interleaved, then opens idle
clients through each pooler. Prints a Markdown table and writes bench/RESULTS.md.

Options:
  --seconds <s>       Length of each pgbench run (default 10)
  --reps <n>          Interleaved repetitions of every (scenario, target) (default 3)
  --quick             Smoke run: 3 s, 1 repetition, 200 idle clients, RESULTS.md not written
  --idle <list>       Idle clients opened through each pooler, comma-separated counts, each on a
                      freshly started pooler (default 1000; 0 skips the test)
  --scenarios <list>  Comma-separated scenario ids (default all; see below)
  --workers <n>       Also run pgsidecar as a node:cluster of n workers (target "pgsidecar×n")
  --baseline          Also run a trivial 1:1 Node.js TCP relay (target "node-relay"): the floor of
                      Node's socket I/O cost per transaction
  --worker-pool-size <n>  Pool size of each worker (default: pool size / workers, rounded up)
  --pool-size <n>     Server connections per pooler (default 20)
  --threads <n>       pgbench -j (default 2)
  --profile           Only profile pgsidecar (node --cpu-prof) on select-only simple and extended
  --profile-out <f>   Also write the profile summary to this file (and keep the .cpuprofile beside it)
  --out <file>        Where to write the report (default bench/RESULTS.md)
  --no-write          Print the report only
  -h, --help          This text

Scenarios:`;

const SCENARIOS: Scenario[] = [
  {
    id: "select-simple-32",
    label: "select-only, -M simple, 32 clients",
    selectOnly: true,
    mode: "simple",
    clients: 32,
  },
  {
    id: "select-extended-32",
    label: "select-only, -M extended, 32 clients",
    selectOnly: true,
    mode: "extended",
    clients: 32,
  },
  {
    id: "select-prepared-32",
    label: "select-only, -M prepared, 32 clients",
    selectOnly: true,
    mode: "prepared",
    clients: 32,
  },
  {
    id: "tpcb-32",
    label: "TPC-B-like, -M simple, 32 clients",
    selectOnly: false,
    mode: "simple",
    clients: 32,
  },
  {
    // Every client SETs search_path: before settings travelled, each SET pinned its client to a
    // server (32 clients, 10 servers: the rest waited); now they share the pool.
    id: "select-set-32",
    label: "select-only with a session SET per transaction, -M simple, 32 clients",
    selectOnly: true,
    script:
      "\\set aid random(1, 100000 * :scale)\nSET search_path = public;\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n",
    mode: "simple",
    clients: 32,
  },
  {
    id: "select-simple-200",
    label: "select-only, -M simple, 200 clients",
    selectOnly: true,
    mode: "simple",
    clients: 200,
  },
  {
    id: "tpcb-200",
    label: "TPC-B-like, -M simple, 200 clients",
    selectOnly: false,
    mode: "simple",
    clients: 200,
  },
];

interface Options {
  seconds: number;
  reps: number;
  idle: number[];
  baseline: boolean;
  scenarios: Scenario[];
  workers: number;
  workerPoolSize: number;
  poolSize: number;
  threads: number;
  profile: boolean;
  profileOut: string | null;
  out: string | null;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      seconds: { type: "string" },
      reps: { type: "string" },
      quick: { type: "boolean" },
      idle: { type: "string" },
      scenarios: { type: "string" },
      workers: { type: "string" },
      baseline: { type: "boolean" },
      "worker-pool-size": { type: "string" },
      "pool-size": { type: "string" },
      threads: { type: "string" },
      profile: { type: "boolean" },
      "profile-out": { type: "string" },
      out: { type: "string" },
      "no-write": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(
      `${HELP}${SCENARIOS.map((s) => `\n  ${s.id.padEnd(20)}${s.label}`).join("")}\n`,
    );
    process.exit(0);
  }
  const int = (v: string | undefined, d: number, name: string, min = 0): number => {
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min)
      throw new Error(`--${name}: expected an integer ≥ ${min}, got ${v}`);
    return n;
  };
  const quick = values.quick === true;
  const ids = values.scenarios?.split(",").map((s) => s.trim());
  const scenarios = ids ? SCENARIOS.filter((s) => ids.includes(s.id)) : SCENARIOS;
  if (ids && scenarios.length !== ids.length)
    throw new Error(
      `--scenarios: unknown id in ${values.scenarios} (known: ${SCENARIOS.map((s) => s.id).join(", ")})`,
    );
  const poolSize = int(values["pool-size"], 20, "pool-size", 1);
  const workers = int(values.workers, 1, "workers", 1);
  return {
    seconds: int(values.seconds, quick ? 3 : 10, "seconds", 1),
    reps: int(values.reps, quick ? 1 : 3, "reps", 1),
    idle: (values.idle ?? (quick ? "200" : "1000"))
      .split(",")
      .map((v) => int(v.trim(), 0, "idle"))
      .filter((n) => n > 0),
    baseline: values.baseline === true,
    scenarios,
    workers,
    workerPoolSize: int(
      values["worker-pool-size"],
      Math.ceil(poolSize / workers),
      "worker-pool-size",
      1,
    ),
    poolSize,
    threads: int(values.threads, 2, "threads", 1),
    profile: values.profile === true,
    profileOut: values["profile-out"] ?? null,
    out:
      values["no-write"] || (quick && values.out === undefined)
        ? null
        : (values.out ?? join(ROOT, "bench", "RESULTS.md")),
  };
}

function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
  } catch {
    return "unknown";
  }
}

function loadavg(): string {
  return os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
}

async function machine(cluster: PgCluster): Promise<Machine> {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const version = (await cluster.query("SELECT version() AS v"))[0].v as string;
  return {
    date: `${new Date().toISOString().replace("T", " ").slice(0, 16)} UTC`,
    cpus: Number(sh("nproc", [])) || os.cpus().length,
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1].trim() ?? "unknown",
    kernel: os.release(),
    node: process.version,
    postgres: version.split(",")[0],
    pgbench: sh(join(pgBinDir(), "pgbench"), ["--version"]),
    pgbouncer: pgbouncerVersion(PGBOUNCER),
    loadBefore: loadavg(),
    loadAfter: "",
  };
}

let tmpDir: string | null = null;
let cluster: PgCluster | null = null;

async function cleanup(): Promise<void> {
  killAllStarted();
  if (cluster) {
    const c = cluster;
    cluster = null;
    await c.destroy().catch(() => {});
  }
  if (tmpDir) {
    rmSync(tmpDir, { recursive: true, force: true });
    tmpDir = null;
  }
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    log(`${sig}: stopping`);
    void cleanup().finally(() => process.exit(130));
  });
}

async function prepareCluster(): Promise<PgCluster> {
  log("starting a throwaway Postgres");
  const c = await startCluster({ conf: { max_connections: 400 } });
  cluster = c;
  log(`pgbench -i -s 10 on 127.0.0.1:${c.port}`);
  const init = await run(
    join(pgBinDir(), "pgbench"),
    ["-i", "-s", "10", "-q", "-h", c.host, "-p", String(c.port), "-U", c.superuser, "postgres"],
    { env: { PATH: process.env.PATH, PGPASSWORD: c.password, LC_ALL: "C" }, timeoutMs: 300_000 },
  );
  if (init.code !== 0) throw new Error(`pgbench -i failed:\n${init.stdout}\n${init.stderr}`);
  await c.query("VACUUM ANALYZE");
  return c;
}

async function measure(
  target: Target,
  scenario: Scenario,
  o: Options,
  c: PgCluster,
  seconds: number,
): Promise<Sample> {
  const pids = target.pids();
  const cpuBefore = pids.length ? totalCpuMs(pids) : Number.NaN;
  const r = await runPgbench({
    port: target.port,
    user: c.superuser,
    password: c.password,
    database: "postgres",
    selectOnly: scenario.selectOnly,
    script: scenario.script,
    mode: scenario.mode,
    clients: scenario.clients,
    threads: o.threads,
    seconds,
    logDir: join(tmpDir as string, "pgbench-log"),
    pgbench: join(pgBinDir(), "pgbench"),
  });
  const cpuMs = pids.length ? totalCpuMs(pids) - cpuBefore : Number.NaN;
  return { ...r, cpuMs };
}

/**
 * Opens `count` idle clients through a freshly started pooler and reads its RSS before and after.
 * One client logs in first and stays (not counted), so the pool's first server login and the
 * pooler's lazily initialised code are in the "before" figure.
 */
async function idleTest(target: Target, count: number, c: PgCluster): Promise<IdleResult> {
  const pids = target.pids();
  const login = {
    port: target.port,
    user: c.superuser,
    password: c.password,
    database: "postgres",
  };
  const first = await openIdleClients(login, 1);
  await first.probe(1, 10_000);
  await new Promise((r) => setTimeout(r, 2000));
  const before = totalRssKiB(pids);
  const started = performance.now();
  const clients = await openIdleClients(login, count);
  log(
    `${target.name}: ${clients.opened}/${count} idle clients logged in in ${((performance.now() - started) / 1000).toFixed(1)} s` +
      (clients.failed ? ` (${clients.failed} failed: ${clients.firstError})` : ""),
  );
  // Let the pooler settle (timers, lazily freed login state), holding the clients a while.
  await new Promise((r) => setTimeout(r, 3000));
  const after = totalRssKiB(pids);
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
  };
  clients.close();
  first.close();
  return result;
}

function fmtSample(s: Sample): string {
  if (!s.ok) return `FAILED: ${s.error}`;
  const cpu = Number.isFinite(s.cpuMs)
    ? `, CPU ${((s.cpuMs / s.transactions) * 1000).toFixed(0)} ms/1k tx (${((100 * s.cpuMs) / s.wallMs).toFixed(0)}% of a core)`
    : "";
  return `${s.tps.toFixed(0)} tps, avg ${s.latencyAvgMs.toFixed(2)} ms, p99 ${s.latencyP99Ms.toFixed(2)} ms${cpu}`;
}

async function profileSidecar(o: Options, c: PgCluster): Promise<void> {
  const dir = join(tmpDir as string, "cpu-prof");
  mkdirSync(dir, { recursive: true });
  const sidecar = await startSidecar({
    cluster: c,
    poolSize: o.poolSize,
    maxClients: 1000,
    dir: join(tmpDir as string, "sidecar"),
    cpuProfDir: dir,
  });
  const scenarios = SCENARIOS.filter(
    (s) => s.id === "select-simple-32" || s.id === "select-extended-32",
  );
  for (const s of scenarios) {
    const sample = await measure(sidecar, s, o, c, o.seconds);
    log(`profile ${s.id}: ${fmtSample(sample)}`);
  }
  await sidecar.stop();
  const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
  if (files.length === 0) throw new Error("no .cpuprofile written");
  for (const f of files) {
    const text = formatProfile(summarizeProfile(join(dir, f), ROOT), 35);
    process.stdout.write(`\n## ${f}\n${text}\n`);
    if (o.profileOut) {
      writeFileSync(o.profileOut, `${text}\n`);
      writeFileSync(o.profileOut.replace(/(\.\w+)?$/, ".cpuprofile"), readFileSync(join(dir, f)));
    }
  }
}

async function main(): Promise<void> {
  const o = parseOptions();
  if (!existsSync(join(ROOT, "dist", "cli.js")))
    throw new Error("dist/cli.js missing: npm run build");
  if (!o.profile && !existsSync(PGBOUNCER))
    throw new Error(`${PGBOUNCER} missing (apt-get install pgbouncer)`);
  const nofile = Number(sh("sh", ["-c", "ulimit -n"]));
  const most = Math.max(0, ...o.idle);
  if (Number.isFinite(nofile) && nofile < most + 500)
    throw new Error(
      `ulimit -n is ${nofile}: ${most} idle clients need more (raise it or lower --idle)`,
    );
  tmpDir = mkdtempSync(join(os.tmpdir(), "pgsidecar-bench-"));
  // PgBouncer runs as the postgres OS user when we are root: it must reach its own subdirectory.
  chmodSync(tmpDir, 0o711);
  const c = await prepareCluster();
  if (o.profile) {
    await profileSidecar(o, c);
    return;
  }
  const m = await machine(c);
  const secret = (
    await c.query("SELECT rolpassword FROM pg_authid WHERE rolname = $1", [c.superuser])
  )[0].rolpassword as string;
  const maxIdle = Math.max(0, ...o.idle);
  const maxClients = Math.max(1000, maxIdle + 500);
  // Every pooler under test, by name; each call starts a fresh one.
  const poolers: Array<{ name: string; start: () => Promise<Target> }> = [
    {
      name: "pgbouncer",
      start: () =>
        startPgbouncer({
          cluster: c,
          poolSize: o.poolSize,
          maxClients,
          dir: join(tmpDir as string, "pgbouncer"),
          secret,
        }),
    },
    {
      name: "pgsidecar",
      start: () =>
        startSidecar({
          cluster: c,
          poolSize: o.poolSize,
          maxClients,
          dir: join(tmpDir as string, "sidecar"),
        }),
    },
  ];
  if (o.workers > 1) {
    poolers.push({
      name: `pgsidecar×${o.workers}`,
      start: () =>
        startSidecar({
          cluster: c,
          poolSize: o.workerPoolSize,
          maxClients,
          dir: join(tmpDir as string, "sidecar-workers"),
          workers: o.workers,
        }),
    });
  }
  log(`starting ${poolers.map((p) => p.name).join(", ")}`);
  const targets: Target[] = [postgresTarget(c)];
  for (const p of poolers) targets.push(await p.start());
  if (o.baseline) targets.push(await startNodeRelay(c));
  const total =
    o.scenarios.length * targets.length * o.reps * (o.seconds + 3) +
    o.idle.length * poolers.length * 60;
  log(`about ${Math.ceil(total / 60)} min ahead`);
  const watchdog = setTimeout(
    () => {
      log("watchdog: the benchmark overran its time budget; stopping");
      void cleanup().finally(() => process.exit(1));
    },
    (total * 2 + 900) * 1000,
  );
  watchdog.unref();

  // Warm-up: every pooler opens its pool and every process reaches a steady state.
  for (const t of targets) {
    const s = await measure(t, SCENARIOS[0], o, c, 2);
    log(`warm-up ${t.name}: ${fmtSample(s)}`);
  }

  const cells = new Map<string, Cell>();
  for (const s of o.scenarios) {
    for (let rep = 1; rep <= o.reps; rep++) {
      for (const t of targets) {
        const sample = await measure(t, s, o, c, o.seconds);
        const key = cellKey(s.id, t.name);
        if (!cells.has(key)) cells.set(key, { samples: [] });
        cells.get(key)?.samples.push(sample);
        log(`${s.id} #${rep} ${t.name}: ${fmtSample(sample)}`);
      }
    }
  }
  for (const t of targets) await t.stop();

  const idle: IdleResult[] = [];
  for (const count of o.idle) {
    for (const p of poolers) {
      const t = await p.start();
      try {
        idle.push(await idleTest(t, count, c));
      } finally {
        await t.stop();
      }
    }
  }
  m.loadAfter = loadavg();

  const notes = [
    "The machine is shared (other test suites ran at the same time), and pgbench, Postgres and the pooler share its cores: single runs vary by 10–20 %. Runs are interleaved so that slow periods hit every target alike; compare ratios within this run, not with other machines.",
    "proxy CPU = utime + stime of the pooler's processes (/proc/PID/stat, all threads) over the run, divided by the transactions pgbench processed.",
    "RSS per idle client = (VmRSS with the clients logged in and idle 3 s − VmRSS before) / clients, on a freshly started pooler that has logged in one client first. The clients are raw sockets with a SCRAM login (bench/idle-clients.ts); every 100th is then asked `SELECT 1` to prove it is still served.",
    `pgsidecar runs with its defaults besides the flags in bench/poolers.ts (retry = safe, so replies are held until ReadyForQuery, max_prepared_statements = 500).`,
  ];
  if (o.baseline)
    notes.push(
      "node-relay is not a pooler: a 1:1 Node.js TCP relay (bench/node-relay.ts) that pipes bytes with no protocol work, one Postgres connection per client. Its CPU per transaction is the floor of Node's socket I/O path (2 reads + 2 writes per transaction), which pgsidecar pays too.",
    );
  if (o.workers > 1)
    notes.push(
      `pgsidecar×${o.workers}: node:cluster workers, each with its own pool of ${o.workerPoolSize} (${o.workers * o.workerPoolSize} backend connections in all, against ${o.poolSize} for one process); CPU and RSS are summed over the primary and the workers.`,
    );
  const report: BenchReport = {
    machine: m,
    seconds: o.seconds,
    reps: o.reps,
    poolSize: o.poolSize,
    targets: targets.map((t) => t.name),
    scenarios: o.scenarios,
    cells,
    idle,
    notes,
  };
  const md = markdown(report);
  process.stdout.write(`\n${md}\n`);
  if (o.out) {
    writeFileSync(o.out, md);
    log(`wrote ${o.out}`);
  }
  const failed = targets
    .filter((t) => t.name.startsWith("pgsidecar"))
    .flatMap((t) => checks(report, t.name))
    .filter((x) => x.pass === false);
  if (failed.length > 0)
    log(`${failed.length} target(s) not met (a benchmark, not a test: exit code stays 0)`);
}

main()
  .catch((e) => {
    log(`error: ${(e as Error).stack ?? e}`);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
