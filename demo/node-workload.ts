// The demo's checkpointer workload on node-postgres, for machines without psycopg: the same calls
// as demo/checkpointer_workload.py, on a pg.Pool of 30 with named (prepared) statements, each
// call retried up to MAX_RETRIES times. Prints the JSON lines of demo/workload-events.ts.
//   node dist-tools/demo/node-workload.js --dsn postgres://... --duration 60 --concurrency 20

import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import pg from "pg";
import {
  SELECT_LATEST,
  UPSERT_BLOBS,
  UPSERT_CHECKPOINT,
  UPSERT_WRITES,
} from "./checkpointer-sql.js";
import {
  type ErrorEvent,
  MAX_RETRIES,
  type StuckCall,
  type WorkloadEvent,
} from "./workload-events.js";

const MAX_ERROR_EVENTS = 300;

function emit(event: WorkloadEvent | (WorkloadEvent & Record<string, unknown>)): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

class Stats {
  ops = 0;
  errors = 0;
  broken = 0;
  failed = 0;
  poolWarnings = 0;
  errorEvents = 0;
  byKind: Record<string, number> = {};
  latencies: number[] = [];
  /** Task number -> the call in progress (name, attempt, start in performance.now() ms). */
  inCall = new Map<
    number,
    { op: string; attempt: number; since: number; phase: StuckCall["phase"] }
  >();

  stuck(): StuckCall[] {
    const now = performance.now();
    return [...this.inCall].map(([task, c]) => ({
      task,
      op: c.op,
      attempt: c.attempt,
      seconds: Math.round((now - c.since) / 100) / 10,
      phase: c.phase,
    }));
  }

  progress(type: "progress" | "done") {
    const lat = [...this.latencies].sort((a, b) => a - b);
    const pct = (p: number) =>
      lat.length
        ? Math.round(lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] * 10) / 10
        : 0;
    const now = performance.now();
    let slow = 0;
    for (const c of this.inCall.values()) if (now - c.since > 5000) slow++;
    return {
      type,
      slow_calls: slow,
      ops: this.ops,
      errors: this.errors,
      broken: this.broken,
      failed: this.failed,
      pool_warnings: this.poolWarnings,
      by_kind: this.byKind,
      p50_ms: pct(0.5),
      p99_ms: pct(0.99),
      max_ms: lat.length ? Math.round(lat[lat.length - 1] * 10) / 10 : 0,
    } as const;
  }
}

/** A SQLSTATE from the server (or the proxy) leaves the connection usable unless it is FATAL. */
function isBroken(err: Error & { code?: string; severity?: string }): boolean {
  const sqlstate = typeof err.code === "string" && /^[0-9A-Z]{5}$/.test(err.code);
  return !sqlstate || err.severity === "FATAL" || err.severity === "PANIC";
}

async function call(
  pool: pg.Pool,
  stats: Stats,
  task: number,
  op: string,
  fn: (c: pg.PoolClient) => Promise<void>,
): Promise<void> {
  try {
    await callWithRetries(pool, stats, task, op, fn);
  } finally {
    stats.inCall.delete(task);
  }
}

async function callWithRetries(
  pool: pg.Pool,
  stats: Stats,
  task: number,
  op: string,
  fn: (c: pg.PoolClient) => Promise<void>,
): Promise<void> {
  const started = performance.now();
  for (let attempt = 0; attempt <= MAX_RETRIES; attempt++) {
    const current = {
      op,
      attempt: attempt + 1,
      since: performance.now(),
      phase: "getconn" as StuckCall["phase"],
    };
    stats.inCall.set(task, current);
    let client: pg.PoolClient | null = null;
    try {
      client = await pool.connect();
      current.phase = "execute";
      await fn(client);
      client.release();
      stats.ops++;
      stats.latencies.push(performance.now() - started);
      return;
    } catch (e) {
      const err = e as Error & { code?: string; severity?: string };
      const broken = client !== null && isBroken(err);
      // A broken client is destroyed instead of going back to the pool.
      client?.release(broken ? err : undefined);
      stats.errors++;
      if (broken) stats.broken++;
      const sqlstate =
        typeof err.code === "string" && /^[0-9A-Z]{5}$/.test(err.code) ? err.code : null;
      const message = (err.message ?? String(err)).split("\n")[0];
      const kind = `${sqlstate ?? "-"} ${err.name}: ${message.slice(0, 90)}`;
      stats.byKind[kind] = (stats.byKind[kind] ?? 0) + 1;
      if (stats.errorEvents < MAX_ERROR_EVENTS) {
        stats.errorEvents++;
        const ev: ErrorEvent = {
          type: "error",
          t: Date.now(),
          op,
          attempt: attempt + 1,
          sqlstate,
          message,
          broken,
        };
        emit(ev);
      }
      if (attempt < MAX_RETRIES) await sleep(50 * (attempt + 1));
    }
  }
  stats.failed++;
}

async function runTask(
  pool: pg.Pool,
  stats: Stats,
  deadline: number,
  thinkMs: number,
  taskNo: number,
): Promise<void> {
  const ns = "";
  while (Date.now() < deadline) {
    const threadId = `thread-${Math.floor(Math.random() * 50)}`;
    const checkpointId = `${String(process.hrtime.bigint()).padStart(20, "0")}-${taskNo}`;
    const versions = { messages: checkpointId, __start__: checkpointId };
    const calls: Array<[string, (c: pg.PoolClient) => Promise<void>]> = [
      [
        "get_tuple",
        async (c) => {
          await c.query({ name: "get_tuple", text: SELECT_LATEST, values: [threadId, ns] });
        },
      ],
      [
        "put",
        async (c) => {
          for (const [channel, version] of Object.entries(versions)) {
            await c.query({
              name: "upsert_blobs",
              text: UPSERT_BLOBS,
              values: [threadId, ns, channel, version, "msgpack", randomBytes(200)],
            });
          }
          await c.query({
            name: "upsert_checkpoint",
            text: UPSERT_CHECKPOINT,
            values: [
              threadId,
              ns,
              checkpointId,
              null,
              JSON.stringify({ v: 1, id: checkpointId, channel_versions: versions }),
              JSON.stringify({ source: "loop", step: taskNo }),
            ],
          });
        },
      ],
      [
        "put_writes",
        async (c) => {
          for (let i = 0; i < 2; i++) {
            await c.query({
              name: "upsert_writes",
              text: UPSERT_WRITES,
              values: [
                threadId,
                ns,
                checkpointId,
                `task-${taskNo}`,
                i,
                "messages",
                "msgpack",
                randomBytes(100),
              ],
            });
          }
        },
      ],
    ];
    for (const [op, fn] of calls) {
      if (Date.now() >= deadline) break;
      await call(pool, stats, taskNo, op, fn);
      if (thinkMs > 0) await sleep(thinkMs * (0.5 + Math.random()));
    }
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dsn: { type: "string" },
      duration: { type: "string", default: "60" },
      concurrency: { type: "string", default: "20" },
      "think-ms": { type: "string", default: "20" },
      grace: { type: "string", default: "15" },
    },
  });
  if (!values.dsn) throw new Error("--dsn is required");
  const durationMs = Number(values.duration) * 1000;
  const concurrency = Number(values.concurrency);
  const stats = new Stats();
  const pool = new pg.Pool({
    connectionString: values.dsn,
    max: 30,
    connectionTimeoutMillis: 30_000,
  });
  // An idle pooled client whose server went away: pg.Pool drops it and reports it here.
  pool.on("error", (err) => {
    stats.poolWarnings++;
    if (stats.errorEvents < MAX_ERROR_EVENTS) {
      stats.errorEvents++;
      emit({ type: "pool_warning", t: Date.now(), message: err.message });
    }
  });
  // Two connections up front, as psycopg's min_size=2 does.
  const first = await Promise.all([pool.connect(), pool.connect()]);
  for (const c of first) c.release();
  emit({ type: "ready", t: Date.now() });

  const deadline = Date.now() + durationMs;
  const tasks = Array.from({ length: concurrency }, (_, i) =>
    runTask(pool, stats, deadline, Number(values["think-ms"]), i),
  );
  const reporter = setInterval(() => emit(stats.progress("progress")), 500);
  let unfinished = tasks.length;
  for (const t of tasks)
    t.then(
      () => unfinished--,
      () => unfinished--,
    );
  // A call still running at the deadline gets --grace seconds more.
  await Promise.race([Promise.allSettled(tasks), sleep(durationMs + Number(values.grace) * 1000)]);
  clearInterval(reporter);
  emit({ ...stats.progress("done"), unfinished_tasks: unfinished, stuck: stats.stuck() });
  await Promise.race([pool.end(), sleep(5000)]);
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`node workload: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
