// The things pgbench is pointed at: Postgres itself, PgBouncer (Debian's package, its own ini) and
// pgsidecar (`node dist/cli.js`, one process or a node:cluster of workers). Each pooler is a child
// process whose PIDs are known, so its CPU and RSS can be read from /proc and it can be killed by PID.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chownSync, createWriteStream, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { findFreePort, type PgCluster } from "../test/helpers/pg-cluster.js";
import { childPids } from "./procfs.js";

// dist-tools/bench/poolers.js -> the repository root.
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const SIDECAR_CLI = join(ROOT, "dist", "cli.js");
const CLUSTER_LAUNCHER = fileURLToPath(new URL("./sidecar-cluster.js", import.meta.url));
const NODE_RELAY = fileURLToPath(new URL("./node-relay.js", import.meta.url));
const HOST = "127.0.0.1";

export interface Target {
  /**
   * Column label: "postgres", "pgbouncer", "pgbouncer-session" (the seed workload only),
   * "pgsidecar", "pgsidecar×2", "node-relay".
   */
  name: string;
  port: number;
  /** Processes whose CPU and RSS count as the proxy's (empty for Postgres itself). */
  pids(): number[];
  /** Backend connections it may open (pool size × processes); null for Postgres. */
  backends: number | null;
  stop(): Promise<void>;
}

const asRoot = typeof process.getuid === "function" && process.getuid() === 0;

/** Every child we started, so an interrupted run still kills them (by PID). */
const started = new Set<ChildProcess>();

export function killAllStarted(): void {
  for (const child of started) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        // gone
      }
    }
  }
  started.clear();
}

function waitForExit(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      resolve();
    }, ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals, ms: number): Promise<void> {
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(child.pid, signal);
    } catch {
      // gone
    }
  }
  await waitForExit(child, ms);
  started.delete(child);
}

/** Resolves once something accepts TCP connections on the port; rejects after `ms`. */
export async function waitForPort(port: number, ms: number, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (child && (child.exitCode !== null || child.signalCode !== null))
      throw new Error(`process exited (${child.exitCode ?? child.signalCode}) before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: HOST, port });
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline)
      throw new Error(`nothing listening on ${HOST}:${port} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function postgresTarget(cluster: PgCluster): Target {
  return {
    name: "postgres",
    port: cluster.port,
    pids: () => [],
    backends: null,
    stop: async () => {},
  };
}

export interface PoolerOptions {
  cluster: PgCluster;
  poolSize: number;
  /** Most client connections it must accept (the idle-client test plus headroom). */
  maxClients: number;
  /** A directory of its own for config and logs. */
  dir: string;
}

export function pgbouncerVersion(bin = "/usr/sbin/pgbouncer"): string {
  try {
    return execFileSync(bin, ["--version"], { encoding: "utf8" }).split("\n")[0].trim();
  } catch {
    return "unknown";
  }
}

/**
 * PgBouncer in transaction mode (or session mode, target "pgbouncer-session") on a free port. Its
 * auth_file holds the superuser's SCRAM secret as Postgres stores it, so clients log in with SCRAM
 * and PgBouncer logs in to Postgres with the client's proof (SCRAM pass-through), as pgsidecar
 * does with its configured password.
 */
export async function startPgbouncer(
  o: PoolerOptions & { bin?: string; secret: string; poolMode?: "transaction" | "session" },
): Promise<Target> {
  const poolMode = o.poolMode ?? "transaction";
  const bin = o.bin ?? "/usr/sbin/pgbouncer";
  mkdirSync(o.dir, { recursive: true });
  const port = await findFreePort();
  const ini = join(o.dir, "pgbouncer.ini");
  const userlist = join(o.dir, "userlist.txt");
  const logfile = join(o.dir, "pgbouncer.log");
  writeFileSync(userlist, `"${o.cluster.superuser}" "${o.secret}"\n`, { mode: 0o600 });
  writeFileSync(
    ini,
    [
      "[databases]",
      `postgres = host=${HOST} port=${o.cluster.port} dbname=postgres`,
      "",
      "[pgbouncer]",
      `listen_addr = ${HOST}`,
      `listen_port = ${port}`,
      "unix_socket_dir =",
      "auth_type = scram-sha-256",
      `auth_file = ${userlist}`,
      `pool_mode = ${poolMode}`,
      `default_pool_size = ${o.poolSize}`,
      "min_pool_size = 0",
      "reserve_pool_size = 0",
      `max_client_conn = ${o.maxClients}`,
      // pgsidecar logs at warn in the benchmark; PgBouncer logs every connection unless told not to.
      "log_connections = 0",
      "log_disconnections = 0",
      "log_pooler_errors = 1",
      "stats_period = 60",
      `logfile = ${logfile}`,
      "",
    ].join("\n"),
  );
  let cmd = bin;
  let args = [ini];
  if (asRoot) {
    // PgBouncer refuses to run as root.
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    for (const f of [o.dir, ini, userlist]) chownSync(f, uid, gid);
    writeFileSync(logfile, "");
    chownSync(logfile, uid, gid);
    cmd = "setpriv";
    args = ["--reuid=postgres", "--regid=postgres", "--init-groups", bin, ini];
  }
  // setpriv execs PgBouncer: the child's PID is PgBouncer's.
  const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  started.add(child);
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  try {
    await waitForPort(port, 10_000, child);
  } catch (e) {
    await stopChild(child, "SIGKILL", 2000);
    let log = "";
    try {
      log = readFileSync(logfile, "utf8");
    } catch {}
    throw new Error(`PgBouncer did not start: ${(e as Error).message}\n${stderr}\n${log}`);
  }
  const pid = child.pid as number;
  return {
    name: poolMode === "session" ? "pgbouncer-session" : "pgbouncer",
    port,
    pids: () => [pid],
    backends: o.poolSize,
    // SIGINT: PgBouncer's immediate shutdown.
    stop: () => stopChild(child, "SIGINT", 5000),
  };
}

export interface SidecarOptions extends PoolerOptions {
  /** node:cluster workers (each with its own pool of poolSize); 1 runs dist/cli.js directly. */
  workers?: number;
  /** Directory for --cpu-prof output (a profile is written when the process exits). */
  cpuProfDir?: string;
  /** Extra pgsidecar flags. */
  extraArgs?: string[];
  /** Another build's cli.js (bench --compare) and the target name it runs under. */
  build?: { cli: string; name: string };
}

/** pgsidecar as a child process (`node dist/cli.js`), transaction mode, on a free port. */
export async function startSidecar(o: SidecarOptions): Promise<Target> {
  mkdirSync(o.dir, { recursive: true });
  const workers = o.workers ?? 1;
  const port = await findFreePort();
  const upstream = o.cluster.url({ database: "postgres" });
  const cliArgs = [
    ...["--listen", `${HOST}:${port}`, "--upstream", upstream],
    ...["--pool-mode", "transaction", "--pool-size", String(o.poolSize)],
    ...["--max-client-conn", String(o.maxClients)],
    ...["--http-listen", "off", "--log-level", "warn"],
    ...(o.extraArgs ?? []),
  ];
  const nodeFlags = o.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${o.cpuProfDir}`] : [];
  const args =
    workers === 1
      ? [...nodeFlags, o.build?.cli ?? SIDECAR_CLI, ...cliArgs]
      : [CLUSTER_LAUNCHER, String(workers), nodeFlags.join(" "), SIDECAR_CLI, ...cliArgs];
  const log = createWriteStream(join(o.dir, "pgsidecar.log"));
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  started.add(child);
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  try {
    await waitForPort(port, 10_000, child);
  } catch (e) {
    await stopChild(child, "SIGKILL", 2000);
    throw new Error(`pgsidecar did not start: ${(e as Error).message}`);
  }
  const pid = child.pid as number;
  let workerPids: number[] = [];
  if (workers > 1) {
    // Workers listen through the primary; wait until all of them are up.
    const deadline = Date.now() + 10_000;
    for (;;) {
      workerPids = childPids(pid);
      if (workerPids.length >= workers || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    name: o.build?.name ?? (workers === 1 ? "pgsidecar" : `pgsidecar×${workers}`),
    port,
    pids: () => [pid, ...workerPids],
    backends: o.poolSize * workers,
    // SIGINT: stop at once (SIGTERM would drain). The profile is written as the process exits.
    stop: async () => {
      await stopChild(child, "SIGINT", 10_000);
      for (const w of workerPids) {
        try {
          process.kill(w, "SIGKILL");
        } catch {
          // exited with the primary
        }
      }
      log.end();
    },
  };
}

/** The trivial Node relay (bench/node-relay.ts): one upstream connection per client, no pooling. */
export async function startNodeRelay(cluster: PgCluster): Promise<Target> {
  const port = await findFreePort();
  const child = spawn(process.execPath, [NODE_RELAY, String(port), String(cluster.port)], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  started.add(child);
  try {
    await waitForPort(port, 10_000, child);
  } catch (e) {
    await stopChild(child, "SIGKILL", 2000);
    throw new Error(`node relay did not start: ${(e as Error).message}`);
  }
  const pid = child.pid as number;
  return {
    name: "node-relay",
    port,
    pids: () => [pid],
    backends: null,
    stop: () => stopChild(child, "SIGINT", 5000),
  };
}
