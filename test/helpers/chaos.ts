// Fault-injection scenarios: a throwaway cluster, the sidecar in front of it (optionally through
// a relay), workloads through the sidecar (W1 psycopg checkpointer mix, W2 node-postgres mix with
// explicit transactions, W3 pgbench -M extended) and one fault repeated for a bounded time.

import { fileURLToPath } from "node:url";
import pg from "pg";
import { type PgCluster, pgBinDir, startCluster } from "./pg-cluster.js";
import { run, SYSTEM_PYTHON } from "./processes.js";
import { startProxy, type TestProxy } from "./proxy.js";
import { type Relay, startRelay } from "./relay.js";

export const APP_USER = "app";
export const APP_PASSWORD = "app-secret-pw-17";
export const APP_DB = "appdb";

export type Workload = "w1" | "w2" | "w3";

export interface FaultContext {
  cluster: PgCluster;
  relay: Relay | null;
  proxy: TestProxy;
}

/** A fault: starts when called, stops (and heals) when the returned function is awaited. */
export type Fault = (ctx: FaultContext) => () => Promise<void>;

export interface WorkloadResult {
  ops: number;
  failedOps: number;
  readErrors: number;
  writeErrors: number;
  /** Errors meaning the client's connection itself broke (the seed's symptom). Expected 0. */
  closedErrors: number;
  errorsBySqlstate: Record<string, number>;
  firstErrors: string[];
  p50Ms: number | null;
  p99Ms: number | null;
  /** Acknowledged writes that are not in the database afterwards. Expected 0. */
  lostWrites: number;
  /** Writes applied more times than the client attempted them (a proxy replay of a write). */
  duplicatedWrites: number;
}

export interface ScenarioResult {
  name: string;
  workloads: Partial<Record<Workload, WorkloadResult>>;
  replays: Record<string, number>;
  serversClosed: Record<string, number>;
  clientErrors: Record<string, number>;
}

export interface ScenarioOptions {
  name: string;
  fault: Fault;
  durationMs: number;
  workloads: Workload[];
  retry?: "off" | "safe" | "all";
  settings?: Record<string, unknown>;
  clusterConf?: Record<string, string | number>;
  relay?: boolean;
}

const W1_SCRIPT = fileURLToPath(new URL("../clients/checkpointer_workload.py", import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Repeats `action` every `intervalMs` until stopped; failures of the action are ignored. */
function every(intervalMs: number, action: () => Promise<unknown>): () => Promise<void> {
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await sleep(intervalMs);
      if (stopped) break;
      await action().catch(() => {});
    }
  })();
  return async () => {
    stopped = true;
    await loop;
  };
}

const appBackends = `SELECT pid FROM pg_stat_activity WHERE usename = '${APP_USER}' AND backend_type = 'client backend'`;

export const faults = {
  none: (): Fault => () => async () => {},
  /**
   * Terminates the servers idle in the sidecar's pool. pg_terminate_backend() is a SIGTERM to the
   * backend process; sending it directly, in the same tick as reading the pool's idle list, makes
   * "idle" exact. (A pg_terminate_backend query takes milliseconds to connect and run, enough for
   * the pool to hand that server out: that is the busy-kill scenario, tested separately.)
   */
  terminateIdle:
    (intervalMs = 500): Fault =>
    ({ proxy }) =>
      every(intervalMs, async () => {
        for (const pool of proxy.proxy.pools.values()) {
          for (const conn of pool.idle) if (conn.pid > 0) process.kill(conn.pid, "SIGTERM");
        }
      }),
  terminateAll:
    (intervalMs = 700): Fault =>
    ({ cluster }) =>
      every(intervalMs, () =>
        cluster.query(`SELECT pg_terminate_backend(pid) FROM (${appBackends}) a`),
      ),
  restart:
    (mode: "fast" | "immediate", intervalMs = 5000): Fault =>
    ({ cluster }) =>
      every(intervalMs, () => cluster.restart(mode)),
  killBackend:
    (intervalMs = 3000): Fault =>
    ({ cluster }) =>
      every(intervalMs, async () => {
        const rows = await cluster.query(appBackends);
        if (rows.length === 0) return;
        process.kill(rows[Math.floor(Math.random() * rows.length)].pid, "SIGKILL");
        // Crash recovery restarts the whole server; wait for it before the next kill.
        await sleep(1000);
      }),
  outage:
    (downMs: number, afterMs = 1000): Fault =>
    ({ cluster }) => {
      const done = (async () => {
        await sleep(afterMs);
        await cluster.stop("fast");
        await sleep(downMs);
        await cluster.start();
      })();
      return async () => {
        await done;
      };
    },
  blackhole:
    (holdMs: number, afterMs = 1000): Fault =>
    ({ relay }) => {
      const done = (async () => {
        await sleep(afterMs);
        relay?.blackhole();
        await sleep(holdMs);
        relay?.restore();
      })();
      return async () => {
        await done;
      };
    },
};

export async function prepareCluster(conf?: Record<string, string | number>): Promise<PgCluster> {
  // Commits must survive an immediate shutdown (a crash of the server, not of the OS): the test
  // clusters' synchronous_commit=off would lose acknowledged writes by itself.
  const cluster = await startCluster({ conf: { synchronous_commit: "on", ...conf } });
  await cluster.createUser(APP_USER, APP_PASSWORD);
  await cluster.createDatabase(APP_DB, APP_USER);
  const c = new pg.Client({
    host: cluster.host,
    port: cluster.port,
    user: APP_USER,
    password: APP_PASSWORD,
    database: APP_DB,
  });
  await c.connect();
  await c.query(`
    CREATE TABLE checkpoints (thread_id text, checkpoint_id int, data jsonb, applied int NOT NULL DEFAULT 1,
                              PRIMARY KEY (thread_id, checkpoint_id));
    CREATE TABLE checkpoint_writes (thread_id text, checkpoint_id int, idx int, value text,
                                    PRIMARY KEY (thread_id, checkpoint_id, idx));`);
  await c.end();
  return cluster;
}

export async function runScenario(opts: ScenarioOptions): Promise<ScenarioResult> {
  const cluster = await prepareCluster(opts.clusterConf);
  let relay: Relay | null = null;
  let proxy: TestProxy | null = null;
  try {
    if (opts.workloads.includes("w3")) {
      const init = await run(
        `${pgBinDir()}/pgbench`,
        [
          "-h",
          cluster.host,
          "-p",
          String(cluster.port),
          "-U",
          APP_USER,
          "-i",
          "-s",
          "1",
          "-q",
          APP_DB,
        ],
        { env: { ...process.env, PGPASSWORD: APP_PASSWORD } },
      );
      if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);
    }
    if (opts.relay) relay = await startRelay({ host: cluster.host, port: cluster.port });
    const upstreamPort = relay ? relay.port : cluster.port;
    proxy = await startProxy(
      cluster,
      {
        pool_size: 5,
        retry: opts.retry ?? "safe",
        query_wait_timeout: "20s",
        server_login_retry: "100ms",
        server_login_retry_max: "1s",
        ...opts.settings,
      },
      `postgres://${APP_USER}:${APP_PASSWORD}@127.0.0.1:${upstreamPort}/${APP_DB}`,
    );
    const url = proxy.url({ user: APP_USER, password: APP_PASSWORD, database: APP_DB });
    const seconds = opts.durationMs / 1000;
    const running: Array<Promise<[Workload, WorkloadResult]>> = [];
    for (const w of opts.workloads) {
      if (w === "w1") running.push(runW1(url, seconds).then((r) => ["w1", r]));
      if (w === "w2") running.push(runW2(proxy, seconds).then((r) => ["w2", r]));
      if (w === "w3") running.push(runW3(proxy, seconds).then((r) => ["w3", r]));
    }
    // Let the workloads warm up before the fault starts.
    await sleep(Math.min(1500, opts.durationMs / 4));
    const stopFault = opts.fault({ cluster, relay, proxy });
    const finished = await Promise.all(running);
    await stopFault();
    const result: ScenarioResult = {
      name: opts.name,
      workloads: {},
      replays: await counterByLabel(proxy, "pgsidecar_replays_total", "outcome"),
      serversClosed: await counterByLabel(
        proxy,
        "pgsidecar_server_connections_closed_total",
        "reason",
      ),
      clientErrors: await counterByLabel(proxy, "pgsidecar_client_errors_total", "sqlstate"),
    };
    for (const [w, r] of finished) result.workloads[w] = r;
    await checkWrites(cluster, result);
    return result;
  } finally {
    await proxy?.stop();
    await relay?.close();
    await cluster.destroy();
  }
}

async function counterByLabel(
  proxy: TestProxy,
  name: string,
  label: string,
): Promise<Record<string, number>> {
  const metric = proxy.proxy.metrics.registry.getSingleMetric(name);
  const out: Record<string, number> = {};
  if (!metric) return out;
  for (const v of (await metric.get()).values) {
    if (v.value === 0) continue;
    const key = String(v.labels[label]);
    out[key] = (out[key] ?? 0) + v.value;
  }
  return out;
}

interface Acked {
  thread: string;
  cp: number;
  attempts: number;
}

const ackedByWorkload = new WeakMap<WorkloadResult, Acked[]>();

/** Every acknowledged write is present, and none was applied more often than attempted. */
async function checkWrites(cluster: PgCluster, result: ScenarioResult): Promise<void> {
  const c = new pg.Client({
    host: cluster.host,
    port: cluster.port,
    user: APP_USER,
    password: APP_PASSWORD,
    database: APP_DB,
  });
  await c.connect();
  const { rows } = await c.query("SELECT thread_id, checkpoint_id, applied FROM checkpoints");
  await c.end();
  const applied = new Map<string, number>();
  for (const r of rows) applied.set(`${r.thread_id}/${r.checkpoint_id}`, r.applied);
  for (const w of Object.values(result.workloads)) {
    const acked = w ? ackedByWorkload.get(w) : undefined;
    if (!w || !acked) continue;
    for (const a of acked) {
      const n = applied.get(`${a.thread}/${a.cp}`);
      if (n === undefined) w.lostWrites++;
      else if (n > a.attempts) w.duplicatedWrites++;
    }
  }
}

function emptyResult(): WorkloadResult {
  return {
    ops: 0,
    failedOps: 0,
    readErrors: 0,
    writeErrors: 0,
    closedErrors: 0,
    errorsBySqlstate: {},
    firstErrors: [],
    p50Ms: null,
    p99Ms: null,
    lostWrites: 0,
    duplicatedWrites: 0,
  };
}

async function runW1(url: string, seconds: number): Promise<WorkloadResult> {
  const r = await run(SYSTEM_PYTHON, [W1_SCRIPT], {
    env: { ...process.env, DSN: url, DURATION: String(seconds), TASKS: "10", WORKER: "w1" },
    timeoutMs: seconds * 1000 + 120_000,
  });
  if (r.code !== 0) throw new Error(`W1 failed (${r.code}): ${r.stderr.slice(-3000)}`);
  const j = JSON.parse(r.stdout.trim().split("\n").pop() as string);
  const result: WorkloadResult = {
    ...emptyResult(),
    ops: j.ops,
    failedOps: j.failed_ops,
    readErrors: j.read_errors,
    writeErrors: j.write_errors,
    closedErrors: j.closed_errors,
    errorsBySqlstate: j.errors_by_sqlstate,
    firstErrors: j.first_errors,
    p50Ms: j.p50_ms,
    p99Ms: j.p99_ms,
  };
  ackedByWorkload.set(
    result,
    (j.acked as Array<[string, number, number]>).map(([thread, cp, attempts]) => ({
      thread,
      cp,
      attempts,
    })),
  );
  return result;
}

/** W2: node-postgres Pool, the same mix, every third operation inside BEGIN ... COMMIT. */
async function runW2(proxy: TestProxy, seconds: number): Promise<WorkloadResult> {
  const result = emptyResult();
  const acked: Acked[] = [];
  const latencies: number[] = [];
  const pool = new pg.Pool({
    ...proxy.pgConfig({ user: APP_USER, password: APP_PASSWORD, database: APP_DB }),
    max: 8,
  });
  // An 'error' on an idle pooled client is exactly what crashes LangGraph JS apps: count it.
  pool.on("error", (e) => {
    result.closedErrors++;
    if (result.firstErrors.length < 8) result.firstErrors.push(`idle client error: ${e.message}`);
  });
  const deadline = Date.now() + seconds * 1000;
  const record = (e: Error & { code?: string }, during: "read" | "write") => {
    const key = e.code ?? e.message;
    result.errorsBySqlstate[key] = (result.errorsBySqlstate[key] ?? 0) + 1;
    if (during === "read") result.readErrors++;
    else result.writeErrors++;
    if (!e.code) result.closedErrors++;
    if (result.firstErrors.length < 8) result.firstErrors.push(`${during}: ${key}: ${e.message}`);
  };
  const task = async (n: number) => {
    const thread = `w2-t${n}`;
    for (let cp = 1; Date.now() < deadline; cp++) {
      const started = performance.now();
      let done = false;
      for (let attempt = 1; attempt <= 3 && !done; attempt++) {
        const client = await pool.connect().catch((e: Error) => {
          record(e, "read");
          return null;
        });
        if (!client) continue;
        let during: "read" | "write" = "read";
        const explicit = cp % 3 === 0;
        try {
          await client.query(
            "SELECT checkpoint_id FROM checkpoints WHERE thread_id = $1 ORDER BY checkpoint_id DESC LIMIT 1",
            [thread],
          );
          during = "write";
          if (explicit) await client.query("BEGIN");
          await client.query(
            "INSERT INTO checkpoints (thread_id, checkpoint_id, data) VALUES ($1, $2, $3) ON CONFLICT (thread_id, checkpoint_id) DO UPDATE SET data = EXCLUDED.data, applied = checkpoints.applied + 1",
            [thread, cp, JSON.stringify({ step: cp })],
          );
          await client.query(
            "INSERT INTO checkpoint_writes (thread_id, checkpoint_id, idx, value) VALUES ($1, $2, 0, $3) ON CONFLICT (thread_id, checkpoint_id, idx) DO UPDATE SET value = EXCLUDED.value",
            [thread, cp, `a${cp}`],
          );
          if (explicit) await client.query("COMMIT");
          acked.push({ thread, cp, attempts: attempt });
          result.ops++;
          latencies.push(performance.now() - started);
          done = true;
          client.release();
        } catch (e) {
          record(e as Error, during);
          if (explicit) {
            // After 08006 inside a transaction, ROLLBACK must bring the connection back.
            await client.query("ROLLBACK").catch((err: Error) => record(err, "write"));
          }
          client.release();
          await sleep(50 * attempt);
        }
      }
      if (!done) result.failedOps++;
    }
  };
  await Promise.all(Array.from({ length: 8 }, (_, n) => task(n)));
  await pool.end();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies.length
      ? Math.round(
          latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] * 100,
        ) / 100
      : null;
  result.p50Ms = pct(0.5);
  result.p99Ms = pct(0.99);
  ackedByWorkload.set(result, acked);
  return result;
}

/** W3: pgbench -M extended (TPC-B-like); a failed transaction aborts a pgbench client. */
async function runW3(proxy: TestProxy, seconds: number): Promise<WorkloadResult> {
  const result = emptyResult();
  const r = await run(
    `${pgBinDir()}/pgbench`,
    [
      "-h",
      "127.0.0.1",
      "-p",
      String(proxy.port),
      "-U",
      APP_USER,
      "-c",
      "8",
      "-j",
      "2",
      "-T",
      String(Math.ceil(seconds)),
      "-M",
      "extended",
      APP_DB,
    ],
    { env: { ...process.env, PGPASSWORD: APP_PASSWORD }, timeoutMs: seconds * 1000 + 120_000 },
  );
  const processed = /number of transactions actually processed: (\d+)/.exec(r.stdout);
  result.ops = Number(processed?.[1] ?? 0);
  const failed = /number of failed transactions: (\d+)/.exec(r.stdout);
  result.failedOps = Number(failed?.[1] ?? 0);
  const aborted = r.stderr.split("\n").filter((l) => /aborted|error|FATAL/i.test(l));
  result.writeErrors = aborted.length;
  result.firstErrors = aborted.slice(0, 8);
  if (r.code !== 0 && aborted.length === 0)
    result.firstErrors.push(`pgbench exit ${r.code}: ${r.stderr.slice(-500)}`);
  if (r.code !== 0) result.failedOps = Math.max(result.failedOps, 1);
  const lat = /latency average = ([\d.]+) ms/.exec(r.stdout);
  result.p50Ms = lat ? Number(lat[1]) : null;
  return result;
}

/** One line per workload, for the chaos report. */
export function formatScenario(r: ScenarioResult): string {
  const lines = [`### ${r.name}`];
  lines.push(
    "| workload | ops | failed ops | read errors | write errors | closed | by SQLSTATE | lost | dup | p50 ms | p99 ms |",
  );
  lines.push("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const [w, x] of Object.entries(r.workloads)) {
    if (!x) continue;
    lines.push(
      `| ${w} | ${x.ops} | ${x.failedOps} | ${x.readErrors} | ${x.writeErrors} | ${x.closedErrors} | ${JSON.stringify(x.errorsBySqlstate)} | ${x.lostWrites} | ${x.duplicatedWrites} | ${x.p50Ms ?? "-"} | ${x.p99Ms ?? "-"} |`,
    );
  }
  lines.push(
    `replays: ${JSON.stringify(r.replays)}; servers closed: ${JSON.stringify(r.serversClosed)}; proxy-sent errors: ${JSON.stringify(r.clientErrors)}`,
  );
  for (const [w, x] of Object.entries(r.workloads)) {
    for (const e of x?.firstErrors ?? []) lines.push(`  ${w} error: ${e}`);
  }
  return lines.join("\n");
}
