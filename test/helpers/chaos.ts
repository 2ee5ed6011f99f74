// Fault-injection scenarios: a throwaway cluster, the sidecar in front of it (optionally through
// a relay), workloads through the sidecar (W1 psycopg checkpointer mix, W2 node-postgres mix with
// explicit transactions, W3 pgbench -M extended) and one fault repeated for a bounded time.
//
// Data safety is checked row by row after every scenario: each workload reports, for every row it
// wrote, how many times the client sent the statement writing it and whether the client got it
// acknowledged; every write statement counts its applications in the row (`applied`, or one
// w3_ledger row per application). Lost = acknowledged, but absent. Duplicated = applied more often
// than the client sent it (a replay by the proxy), or present though never sent.

import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { type PgCluster, pgBinDir, startCluster, startSyncStandby } from "./pg-cluster.js";
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
  /** The streaming standby (ScenarioOptions.standby), else null. */
  standby: PgCluster | null;
  /** Where the rows are checked afterwards: a failover fault points it at the promoted standby. */
  writer: PgCluster;
  /** When a failover fault's promotion completed (epoch ms). */
  promotedAt?: number;
  /** What the fault saw, by name, for the test to check (copied to ScenarioResult.observed). */
  observed: Record<string, number>;
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
  /**
   * Writes applied more times than the client sent them (a proxy replay of a write), or present
   * though never sent. Expected 0 unless the retry policy is `all` (which replays writes).
   */
  duplicatedWrites: number;
  /** Acknowledged writes looked for after the run (0 means nothing was verified). */
  checkedWrites: number;
  /** The first lost or duplicated rows, named, for the report. */
  writeProblems: string[];
  /** When each acknowledged operation was acknowledged (epoch ms; W1 only). */
  ackTimes: number[];
}

export interface ScenarioResult {
  name: string;
  retry: "off" | "safe" | "all";
  workloads: Partial<Record<Workload, WorkloadResult>>;
  replays: Record<string, number>;
  serversClosed: Record<string, number>;
  clientErrors: Record<string, number>;
  /** A failover's promotion (epoch ms) and the first acknowledgement after it, in ms. */
  promotedAt?: number;
  firstAckAfterPromotionMs?: number | null;
  observed: Record<string, number>;
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
  /**
   * A synchronous streaming standby beside the primary, and the sidecar's upstream names both
   * (`primary,standby` with target_session_attrs=read-write), as in front of a managed cluster.
   */
  standby?: boolean;
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
  /**
   * A failover: after `afterMs` the primary stops (`mode`), `downMs` later the standby is promoted;
   * with `oldPrimaryReturns`, the old primary then comes back as a standby of the new one (a
   * read-only server at the first host of the sidecar's list). Needs ScenarioOptions.standby.
   */
  failover:
    (
      mode: "fast" | "immediate",
      opts: { afterMs?: number; downMs?: number; oldPrimaryReturns?: boolean } = {},
    ): Fault =>
    (ctx) => {
      const done = (async () => {
        const standby = ctx.standby;
        if (!standby) throw new Error("faults.failover needs a scenario with a standby");
        await sleep(opts.afterMs ?? 1000);
        await ctx.cluster.stop(mode);
        await sleep(opts.downMs ?? 1000);
        await standby.promote();
        ctx.promotedAt = Date.now();
        ctx.writer = standby;
        if (opts.oldPrimaryReturns) {
          await sleep(1000);
          await ctx.cluster.startAsStandbyOf(standby);
          const deadline = Date.now() + 30_000;
          const streaming = "SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'";
          while ((await ctx.cluster.query(streaming)).length === 0 && Date.now() < deadline)
            await sleep(100);
          // The sidecar's servers on the new primary die too, so its next logins walk the host
          // list again: the first host now answers read-only.
          await standby.query(`SELECT pg_terminate_backend(pid) FROM (${appBackends}) a`);
          await sleep(1500);
          const log = ctx.cluster.log();
          const since = log.lastIndexOf("ready to accept read-only connections");
          ctx.observed.appLoginsOnOldPrimary = (
            log.slice(since).match(new RegExp(`connection authorized: user=${APP_USER}\\b`, "g")) ??
            []
          ).length;
        }
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
                                    applied int NOT NULL DEFAULT 1,
                                    PRIMARY KEY (thread_id, checkpoint_id, idx));
    -- W3's ledger: one row per application of a pgbench transaction (client, its n-th transaction).
    CREATE TABLE w3_ledger (client_id int NOT NULL, n int NOT NULL);`);
  await c.end();
  return cluster;
}

export async function runScenario(opts: ScenarioOptions): Promise<ScenarioResult> {
  const cluster = await prepareCluster(opts.clusterConf);
  let relay: Relay | null = null;
  let proxy: TestProxy | null = null;
  let standby: PgCluster | null = null;
  try {
    if (opts.standby) standby = await startSyncStandby(cluster);
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
    const hosts = standby
      ? `127.0.0.1:${upstreamPort},127.0.0.1:${standby.port}`
      : `127.0.0.1:${upstreamPort}`;
    const attrs = standby ? "?target_session_attrs=read-write" : "";
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
      `postgres://${APP_USER}:${APP_PASSWORD}@${hosts}/${APP_DB}${attrs}`,
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
    const ctx: FaultContext = { cluster, relay, proxy, standby, writer: cluster, observed: {} };
    const stopFault = opts.fault(ctx);
    const finished = await Promise.all(running);
    await stopFault();
    const result: ScenarioResult = {
      name: opts.name,
      retry: opts.retry ?? "safe",
      workloads: {},
      replays: await counterByLabel(proxy, "pgsidecar_replays_total", "outcome"),
      serversClosed: await counterByLabel(
        proxy,
        "pgsidecar_server_connections_closed_total",
        "reason",
      ),
      clientErrors: await counterByLabel(proxy, "pgsidecar_client_errors_total", "sqlstate"),
      observed: ctx.observed,
    };
    for (const [w, r] of finished) result.workloads[w] = r;
    if (ctx.promotedAt !== undefined) {
      const promotedAt = ctx.promotedAt;
      result.promotedAt = promotedAt;
      const after = result.workloads.w1?.ackTimes.filter((t) => t >= promotedAt) ?? [];
      result.firstAckAfterPromotionMs = after.length ? Math.min(...after) - promotedAt : null;
    }
    await checkWrites(ctx.writer, result);
    return result;
  } finally {
    await proxy?.stop();
    await relay?.close();
    await standby?.destroy();
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

/** Tables the workloads write, each row keyed as `${table}:${key columns joined by /}`. */
type WriteTable = "checkpoints" | "checkpoint_writes" | "w3_ledger";

/** One row a workload wrote (or tried to). */
interface RowWrite {
  key: string;
  /** How many times the client sent the statement that writes this row. */
  sent: number;
  /** The client got the row's write acknowledged (its operation completed without error). */
  acked: boolean;
}

const writesByWorkload = new WeakMap<WorkloadResult, RowWrite[]>();

const rowKey = (table: WriteTable, ...parts: Array<string | number>) =>
  `${table}:${parts.join("/")}`;

/** Which workload wrote a row: by its thread prefix (w1-, w2-), and w3_ledger is W3's. */
function rowOwner(key: string): Workload | null {
  if (key.startsWith("w3_ledger:")) return "w3";
  const m = /^checkpoint(?:s|_writes):(w[12])-/.exec(key);
  return m ? (m[1] as Workload) : null;
}

/**
 * Every acknowledged write is present, and no row was applied more often than its client sent it.
 * Rows no workload claims to have sent count as duplicated (applied, never sent).
 */
async function checkWrites(cluster: PgCluster, result: ScenarioResult): Promise<void> {
  const c = new pg.Client({
    host: cluster.host,
    port: cluster.port,
    user: APP_USER,
    password: APP_PASSWORD,
    database: APP_DB,
  });
  await c.connect();
  const applied = new Map<string, number>();
  try {
    for (const r of (await c.query("SELECT thread_id, checkpoint_id, applied FROM checkpoints"))
      .rows)
      applied.set(rowKey("checkpoints", r.thread_id, r.checkpoint_id), r.applied);
    for (const r of (
      await c.query("SELECT thread_id, checkpoint_id, idx, applied FROM checkpoint_writes")
    ).rows)
      applied.set(rowKey("checkpoint_writes", r.thread_id, r.checkpoint_id, r.idx), r.applied);
    for (const r of (
      await c.query("SELECT client_id, n, count(*)::int AS applied FROM w3_ledger GROUP BY 1, 2")
    ).rows)
      applied.set(rowKey("w3_ledger", r.client_id, r.n), r.applied);
  } finally {
    await c.end();
  }
  const note = (w: WorkloadResult, problem: string) => {
    if (w.writeProblems.length < 8) w.writeProblems.push(problem);
  };
  const sentByKey = new Map<string, number>();
  for (const w of Object.values(result.workloads)) {
    const writes = w ? writesByWorkload.get(w) : undefined;
    if (!w || !writes) continue;
    for (const row of writes) {
      sentByKey.set(row.key, (sentByKey.get(row.key) ?? 0) + row.sent);
      if (!row.acked) continue;
      w.checkedWrites++;
      if (!applied.has(row.key)) {
        w.lostWrites++;
        note(w, `lost: ${row.key} (acknowledged after ${row.sent} sends)`);
      }
    }
  }
  for (const [key, n] of applied) {
    const sent = sentByKey.get(key) ?? 0;
    const owner = rowOwner(key);
    const w = owner ? result.workloads[owner] : undefined;
    if (!w || n <= sent) continue;
    w.duplicatedWrites++;
    note(w, `applied ${n} times, sent ${sent}: ${key}`);
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
    checkedWrites: 0,
    writeProblems: [],
    ackTimes: [],
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
  // [thread, checkpoint_id, checkpoint upserts sent, write pipelines sent, acknowledged, acked at]:
  // the checkpoint row, and the two pipelined checkpoint_writes rows (idx 0 and 1).
  const writes: RowWrite[] = [];
  for (const [thread, cp, cpSent, writesSent, acked, ackedAt] of j.operations as Array<
    [string, number, number, number, boolean, number | null]
  >) {
    if (acked && ackedAt) result.ackTimes.push(ackedAt);
    writes.push({ key: rowKey("checkpoints", thread, cp), sent: cpSent, acked });
    for (const idx of [0, 1])
      writes.push({ key: rowKey("checkpoint_writes", thread, cp, idx), sent: writesSent, acked });
  }
  writesByWorkload.set(result, writes);
  return result;
}

/** W2: node-postgres Pool, the same mix, every third operation inside BEGIN ... COMMIT. */
async function runW2(proxy: TestProxy, seconds: number): Promise<WorkloadResult> {
  const result = emptyResult();
  const writes: RowWrite[] = [];
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
      const checkpoint: RowWrite = {
        key: rowKey("checkpoints", thread, cp),
        sent: 0,
        acked: false,
      };
      const write: RowWrite = {
        key: rowKey("checkpoint_writes", thread, cp, 0),
        sent: 0,
        acked: false,
      };
      writes.push(checkpoint, write);
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
          checkpoint.sent++;
          await client.query(
            "INSERT INTO checkpoints (thread_id, checkpoint_id, data) VALUES ($1, $2, $3) ON CONFLICT (thread_id, checkpoint_id) DO UPDATE SET data = EXCLUDED.data, applied = checkpoints.applied + 1",
            [thread, cp, JSON.stringify({ step: cp })],
          );
          write.sent++;
          await client.query(
            "INSERT INTO checkpoint_writes (thread_id, checkpoint_id, idx, value) VALUES ($1, $2, 0, $3) ON CONFLICT (thread_id, checkpoint_id, idx) DO UPDATE SET value = EXCLUDED.value, applied = checkpoint_writes.applied + 1",
            [thread, cp, `a${cp}`],
          );
          if (explicit) await client.query("COMMIT");
          checkpoint.acked = true;
          write.acked = true;
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
  writesByWorkload.set(result, writes);
  return result;
}

const W3_CLIENTS = 8;

/**
 * W3's script: pgbench's built-in tpcb-like transaction (-b tpcb-like), plus one w3_ledger row that
 * names the transaction: (pgbench client id, n), n counting that client's transactions from 1
 * (pgbench variables live as long as the client, and `-D n=0` starts them at 0; without
 * --max-tries a transaction is never rerun, so each n is sent at most once).
 */
const W3_SCRIPT = `\\set n :n + 1
\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
INSERT INTO w3_ledger (client_id, n) VALUES (:client_id, :n);
END;
`;

/**
 * What W3's clients sent and had acknowledged, from pgbench's per-transaction log (-l): one line
 * per finished transaction, "client_id transaction_no time ...", in order per client, with `time`
 * a latency for a committed transaction and "failed" (or the failure kind) otherwise. So a
 * client's k-th line is its transaction n = k, acknowledged when `time` is a number. A transaction
 * with no line (the client aborted on an error in it, or the run ended during it) may still have
 * been sent: each client may have sent one more n than it logged.
 */
async function w3Writes(logDir: string): Promise<RowWrite[]> {
  const lines = new Map<number, string[]>();
  for (const f of await readdir(logDir)) {
    if (!f.startsWith("tx.")) continue;
    for (const line of (await readFile(join(logDir, f), "utf8")).split("\n")) {
      const [client, , time] = line.trim().split(/\s+/);
      if (client === undefined || time === undefined) continue;
      const id = Number(client);
      const times = lines.get(id);
      if (times) times.push(time);
      else lines.set(id, [time]);
    }
  }
  const writes: RowWrite[] = [];
  for (const [client, times] of lines) {
    for (const [k, time] of times.entries())
      writes.push({ key: rowKey("w3_ledger", client, k + 1), sent: 1, acked: /^\d+$/.test(time) });
    writes.push({ key: rowKey("w3_ledger", client, times.length + 1), sent: 1, acked: false });
  }
  // Clients that logged nothing (aborted in their first transaction) may have sent n = 1.
  for (let client = 0; client < W3_CLIENTS; client++)
    if (!lines.has(client))
      writes.push({ key: rowKey("w3_ledger", client, 1), sent: 1, acked: false });
  return writes;
}

/** W3: pgbench -M extended (TPC-B-like); a failed transaction aborts a pgbench client. */
async function runW3(proxy: TestProxy, seconds: number): Promise<WorkloadResult> {
  const result = emptyResult();
  const dir = await mkdtemp(join(tmpdir(), "pgsidecar-w3-"));
  try {
    await writeFile(join(dir, "w3.sql"), W3_SCRIPT);
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
        String(W3_CLIENTS),
        "-j",
        "2",
        "-T",
        String(Math.ceil(seconds)),
        "-M",
        "extended",
        "-D",
        "n=0",
        "-f",
        join(dir, "w3.sql"),
        "-l",
        `--log-prefix=${join(dir, "tx")}`,
        APP_DB,
      ],
      {
        env: { ...process.env, PGPASSWORD: APP_PASSWORD },
        cwd: dir,
        timeoutMs: seconds * 1000 + 120_000,
      },
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
    writesByWorkload.set(result, await w3Writes(dir));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return result;
}

/** One line per workload, for the chaos report. */
export function formatScenario(r: ScenarioResult): string {
  const lines = [`### ${r.name}`];
  lines.push(
    "| workload | ops | failed ops | read errors | write errors | closed | by SQLSTATE | acked rows checked | lost | dup | p50 ms | p99 ms |",
  );
  lines.push("|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const [w, x] of Object.entries(r.workloads)) {
    if (!x) continue;
    lines.push(
      `| ${w} | ${x.ops} | ${x.failedOps} | ${x.readErrors} | ${x.writeErrors} | ${x.closedErrors} | ${JSON.stringify(x.errorsBySqlstate)} | ${x.checkedWrites} | ${x.lostWrites} | ${x.duplicatedWrites} | ${x.p50Ms ?? "-"} | ${x.p99Ms ?? "-"} |`,
    );
  }
  lines.push(
    `retry: ${r.retry}; replays: ${JSON.stringify(r.replays)}; servers closed: ${JSON.stringify(r.serversClosed)}; proxy-sent errors: ${JSON.stringify(r.clientErrors)}`,
  );
  if (r.promotedAt !== undefined)
    lines.push(
      `first acknowledged write ${r.firstAckAfterPromotionMs == null ? "never" : Math.round(r.firstAckAfterPromotionMs)} ms after the promotion; observed: ${JSON.stringify(r.observed)}`,
    );
  for (const [w, x] of Object.entries(r.workloads)) {
    for (const e of x?.firstErrors ?? []) lines.push(`  ${w} error: ${e}`);
    for (const p of x?.writeProblems ?? []) lines.push(`  ${w} data: ${p}`);
  }
  return lines.join("\n");
}
