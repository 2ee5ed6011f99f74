// `npm run bench`: a throwaway Postgres (pgbench -i -s 10); PgBouncer, pgsidecar (transaction
// mode, the same pool size) and node-relay (a 1:1 byte relay, the Node floor) in front of it;
// pgbench through each, interleaved, at 32/200 clients (throughput, CPU) and 1/4 clients (latency
// added); the seed's psycopg workload (PgBouncer in session mode); an idle-client memory test; the
// SQL prefilter's cost. Prints a Markdown report and writes bench/RESULTS.md. See bench/README.md.
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
import { type PgCluster, pgBinDir, startCluster } from "../test/helpers/pg-cluster.js";
import { run } from "../test/helpers/processes.js";
import { checks } from "./checks.js";
import { fmtSample, idleTest, log, measure, measurePrefilter } from "./measure.js";
import { type Options, parseOptions } from "./options.js";
import {
  killAllStarted,
  pgbouncerVersion,
  postgresTarget,
  startNodeRelay,
  startPgbouncer,
  startSidecar,
  type Target,
} from "./poolers.js";
import { machineTicks, stealPct } from "./procfs.js";
import { formatProfile, summarizeProfile } from "./profile.js";
import {
  type BenchReport,
  type Cell,
  cellKey,
  type IdleResult,
  type Machine,
  type Sample,
  type SeedResults,
} from "./report.js";
import { markdown } from "./report-sections.js";
import { newTally, steadyRound } from "./rounds.js";
import { SCENARIOS } from "./scenarios.js";
import { createSeedSchema, runSeed, type SeedSample, seedUnavailable } from "./seed.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PGBOUNCER = "/usr/sbin/pgbouncer";
/** The seed's psycopg pool max_size: in session mode PgBouncer needs a server per client. */
const SEED_SESSION_POOL = 30;
/** The idle test's wait before its first RSS reading, and how long it holds the clients (idleTest). */
const IDLE_SETTLE_SECONDS = 12;
const IDLE_HOLD_SECONDS = 60;

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
    stealPct: Number.NaN,
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

async function prepareCluster(seed: boolean): Promise<PgCluster> {
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
  if (seed) await createSeedSchema(c);
  await c.query("VACUUM ANALYZE");
  return c;
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
    const sample = await measure(sidecar, s, c, { ...o, logDir: join(tmpDir as string, "log") });
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

function notes(o: Options, seed: SeedResults | null): string[] {
  const out = [
    "The machine is shared (other test suites may run at the same time), and pgbench, Postgres and the pooler share its cores: single runs vary by 10–20 %. Runs are interleaved so that slow periods hit every target alike; compare ratios within this run, not with other machines.",
    "proxy CPU = utime + stime of the pooler's processes (/proc/PID/stat, all threads) over the run, divided by the transactions pgbench processed (ms per 1k transactions = µs per transaction).",
    `RSS per idle client = (VmRSS after the clients logged in and were held ${o.quick ? 3 : IDLE_HOLD_SECONDS} s − VmRSS ${o.quick ? 3 : IDLE_SETTLE_SECONDS} s after a first client logged in) / clients, on a freshly started pooler; "at the peak" uses the highest VmRSS read (every second) during the hold instead. A Node pooler keeps a burst of logins' garbage until V8's memory reducer runs, 7–30 s later: the held figure is the steady state, the peak what a memory limit must allow for. The clients are raw sockets with a SCRAM login (bench/idle-clients.ts); every 100th is then asked \`SELECT 1\` to prove it is still served. CPU while idle = the pooler's utime + stime over the next 5 s with those clients connected and silent, per second, after the hold: its timers and housekeeping (with --quick, 3 s after the logins, also the GC that follows them).`,
    "pgsidecar runs with its defaults besides the flags in bench/poolers.ts (retry = safe, so replies are held until ReadyForQuery, max_prepared_statements = 500).",
  ];
  if (o.baseline)
    out.push(
      "node-relay is not a pooler: a 1:1 Node.js TCP relay (bench/node-relay.ts) that pipes bytes with no protocol work, one Postgres connection per client. Its CPU per transaction is the floor of Node's socket I/O path (2 reads + 2 writes per transaction), which pgsidecar pays too; the issue's targets are set against it.",
    );
  if (seed && !seed.unavailable)
    out.push(
      `pgbouncer-session: a second PgBouncer in session mode with a pool of ${SEED_SESSION_POOL} (the psycopg pool's max_size), for the seed workload only: PgBouncer 1.18 in transaction mode cannot carry psycopg's named prepared statements (prepare_threshold=0).`,
    );
  if (o.workers > 1)
    out.push(
      `pgsidecar×${o.workers}: node:cluster workers, each with its own pool of ${o.workerPoolSize} (${o.workers * o.workerPoolSize} backend connections in all, against ${o.poolSize} for one process); CPU and RSS are summed over the primary and the workers.`,
    );
  if (o.compare)
    out.push(
      `pgsidecar@${o.compare.label}: another build (${o.compare.cli}) run with the same flags, interleaved with the others (--compare): a before/after in one run.`,
    );
  return out;
}

async function main(): Promise<void> {
  const t0 = performance.now();
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
  const seedWhyNot = o.seed && !o.profile ? seedUnavailable() : null;
  if (seedWhyNot) log(`seed workload skipped: ${seedWhyNot}`);
  const c = await prepareCluster(o.seed && !seedWhyNot);
  if (o.profile) {
    await profileSidecar(o, c);
    return;
  }
  const m = await machine(c);
  const ticksAtStart = machineTicks();
  const secret = (
    await c.query("SELECT rolpassword FROM pg_authid WHERE rolname = $1", [c.superuser])
  )[0].rolpassword as string;
  const maxIdle = Math.max(0, ...o.idle);
  const maxClients = Math.max(1000, maxIdle + 500);
  const dir = (name: string) => join(tmpDir as string, name);
  // Every pooler under test, by name; each call starts a fresh one.
  const poolers: Array<{ name: string; start: () => Promise<Target> }> = [
    {
      name: "pgbouncer",
      start: () =>
        startPgbouncer({
          cluster: c,
          poolSize: o.poolSize,
          maxClients,
          dir: dir("pgbouncer"),
          secret,
        }),
    },
    {
      name: "pgsidecar",
      start: () =>
        startSidecar({ cluster: c, poolSize: o.poolSize, maxClients, dir: dir("sidecar") }),
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
          dir: dir("sidecar-workers"),
          workers: o.workers,
        }),
    });
  }
  const compare = o.compare;
  if (compare) {
    const name = `pgsidecar@${compare.label}`;
    poolers.push({
      name,
      start: () =>
        startSidecar({
          cluster: c,
          poolSize: o.poolSize,
          maxClients,
          dir: dir(`sidecar-${compare.label}`),
          build: { cli: compare.cli, name },
        }),
    });
  }
  log(`starting ${poolers.map((p) => p.name).join(", ")}${o.baseline ? ", node-relay" : ""}`);
  const targets: Target[] = [postgresTarget(c)];
  for (const p of poolers) targets.push(await p.start());
  if (o.baseline) targets.push(await startNodeRelay(c));
  const runSeedToo = o.seed && !seedWhyNot;
  // The seed runs through these: PgBouncer in session mode instead of transaction mode.
  const seedTargets: Target[] = [];
  if (runSeedToo) {
    const session = await startPgbouncer({
      cluster: c,
      poolSize: SEED_SESSION_POOL,
      maxClients,
      dir: dir("pgbouncer-session"),
      secret,
      poolMode: "session",
    });
    // PgBouncer in transaction mode stays in, to show in every report why session mode is used.
    seedTargets.push(...targets.flatMap((t) => (t.name === "pgbouncer" ? [t, session] : [t])));
  }
  const total =
    o.scenarios.length * targets.length * o.reps * (o.seconds + 0.5) +
    seedTargets.length * o.reps * (o.seconds + 1) +
    o.idle.length *
      poolers.length *
      (10 + (o.quick ? 0 : IDLE_SETTLE_SECONDS + IDLE_HOLD_SECONDS)) +
    (poolers.length * o.idle.reduce((a, b) => a + b, 0)) / 500 +
    (o.prefilterCalls > 0 ? 20 : 0);
  log(`about ${total < 120 ? `${Math.ceil(total)} s` : `${Math.ceil(total / 60)} min`} ahead`);
  const watchdog = setTimeout(
    () => {
      log("watchdog: the benchmark overran its time budget; stopping");
      void cleanup().finally(() => process.exit(1));
    },
    (total * 2 + 900) * 1000,
  );
  watchdog.unref();

  const pgbench = { threads: o.threads, logDir: dir("pgbench-log") };
  // Warm-up: every pooler opens its pool and every process reaches a steady state.
  for (const t of targets) {
    const s = await measure(t, SCENARIOS[0], c, { ...pgbench, seconds: o.warmupSeconds });
    log(`warm-up ${t.name}: ${fmtSample(s)}`);
  }

  const cells = new Map<string, Cell>();
  const retakes = newTally(o.maxStealPct, o.stealRetakes);
  for (const s of o.scenarios) {
    for (let rep = 1; rep <= o.reps; rep++) {
      const round = await steadyRound(
        async () => {
          const samples: Sample[] = [];
          for (const t of targets) {
            const sample = await measure(t, s, c, { ...pgbench, seconds: o.seconds });
            samples.push(sample);
            log(`${s.id} #${rep} ${t.name}: ${fmtSample(sample)}`);
          }
          return samples;
        },
        retakes,
        (line) => log(`${s.id} #${rep}: ${line}`),
      );
      targets.forEach((t, i) => {
        const key = cellKey(s.id, t.name);
        if (!cells.has(key)) cells.set(key, { samples: [] });
        cells.get(key)?.samples.push(round[i]);
      });
    }
  }

  let seed: SeedResults | null = null;
  if (o.seed) {
    seed = {
      targets: seedTargets.map((t) => t.name),
      tasks: o.seedTasks,
      thinkMs: o.seedThinkMs,
      samples: new Map(),
      unavailable: seedWhyNot,
    };
    const seedRun = (t: Target, seconds: number) =>
      runSeed({
        cluster: c,
        port: t.port,
        pids: t.pids(),
        seconds,
        tasks: o.seedTasks,
        thinkMs: o.seedThinkMs,
      });
    // Warm-up, as for pgbench: Postgres's caches for the checkpointer tables, and each pooler's
    // servers (statements pgsidecar prepares on them). Transaction-mode PgBouncer only fails.
    for (const t of seedTargets.filter((x) => x.name !== "pgbouncer")) {
      const warm = await seedRun(t, o.warmupSeconds);
      log(`seed warm-up ${t.name}: ${warm.ok ? `${warm.opsPerS.toFixed(0)} ops/s` : warm.error}`);
    }
    for (let rep = 1; rep <= o.reps; rep++) {
      const round = await steadyRound(
        async () => {
          const samples: SeedSample[] = [];
          for (const t of seedTargets) {
            const sample = await seedRun(t, o.seconds);
            samples.push(sample);
            log(
              `seed #${rep} ${t.name}: ${sample.ok ? `${sample.opsPerS.toFixed(0)} ops/s, p50 ${sample.p50Ms} ms, p99 ${sample.p99Ms} ms, ${sample.errors} errors, steal ${sample.stealPct.toFixed(0)}%` : `FAILED: ${sample.error}`}`,
            );
          }
          return samples;
        },
        retakes,
        (line) => log(`seed #${rep}: ${line}`),
      );
      seedTargets.forEach((t, i) => {
        if (!seed?.samples.has(t.name)) seed?.samples.set(t.name, []);
        seed?.samples.get(t.name)?.push(round[i]);
      });
    }
  }
  for (const t of new Set([...targets, ...seedTargets])) await t.stop();

  const idle: IdleResult[] = [];
  for (const count of o.idle) {
    for (const p of poolers) {
      const t = await p.start();
      try {
        idle.push(
          await idleTest(t, count, c, {
            settleSeconds: o.quick ? 3 : IDLE_SETTLE_SECONDS,
            holdSeconds: o.quick ? 3 : IDLE_HOLD_SECONDS,
          }),
        );
      } finally {
        await t.stop();
      }
    }
  }
  let prefilter: BenchReport["prefilter"] = null;
  if (o.prefilterCalls > 0) {
    log(`SQL prefilter: ${o.prefilterCalls} calls per statement`);
    prefilter = await measurePrefilter(o.prefilterCalls);
  }
  m.loadAfter = loadavg();
  m.stealPct = stealPct(ticksAtStart, machineTicks());

  const report: BenchReport = {
    machine: m,
    quick: o.quick,
    seconds: o.seconds,
    reps: o.reps,
    poolSize: o.poolSize,
    targets: targets.map((t) => t.name),
    scenarios: o.scenarios,
    cells,
    idle,
    seed,
    prefilter,
    retakes,
    notes: notes(o, seed),
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
  log(
    `done in ${((performance.now() - t0) / 1000).toFixed(0)} s; ${failed.length} target(s) not met (a benchmark, not a test: the exit code stays 0)`,
  );
}

main()
  .catch((e) => {
    log(`error: ${(e as Error).stack ?? e}`);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
