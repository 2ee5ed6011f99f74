// Logs: the CLI at --log-level debug, driven through logins, a failed client login, a failed server
// login, an unreachable upstream, a killed backend, the admin console, a reload and a drain, prints
// JSON lines whose connect/disconnect/failure events name the pool and the reason, and never a
// password. --log-format pretty prints one readable line per event, also without secrets.
// Needs the built CLI (`npm run build`; `npm test` builds first).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scrubSecrets } from "../../src/log.js";
import { findFreePort } from "../helpers/pg-cluster.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { until } from "../helpers/until.js";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CLI = join(REPO, "dist", "cli.js");

const APP = { user: "logs_app", password: "app-pw-Quokka-7731" };
const ADMIN = { user: "boss", password: "boss-pw-Wombat-2290" };
/** Known to the sidecar with this password; Postgres has another one, so the server login fails. */
const STALE = {
  user: "logs_stale",
  password: "stale-pw-Numbat-5512",
  real: "stale-real-Dingo-8803",
};
const WRONG = "wrong-pw-Platypus-4417";

interface Running {
  child: ChildProcess;
  port: number;
  output(): string;
  exited: Promise<number | null>;
}

async function startCli(args: string[]): Promise<Running> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PGSIDECAR_")) env[k] = v;
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: REPO,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout?.on("data", (b: Buffer) => {
    out += b.toString("utf8");
  });
  child.stderr?.on("data", (b: Buffer) => {
    err += b.toString("utf8");
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  let port = 0;
  const listeningOrExited = () => {
    const m = /"listen":"127\.0\.0\.1:(\d+)"|listen=127\.0\.0\.1:(\d+)/.exec(out);
    if (m) port = Number(m[1] ?? m[2]);
    return port !== 0 || child.exitCode !== null;
  };
  const notStarted = () => `pgsidecar did not start:\n${out}\n${err}`;
  await until(notStarted, listeningOrExited, 20_000, 50);
  if (port === 0) throw new Error(notStarted());
  return { child, port, output: () => `${out}\n${err}`, exited };
}

function stop(r: Running | null, signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
  if (!r || r.child.pid === undefined || r.child.exitCode !== null) return Promise.resolve(null);
  process.kill(r.child.pid, signal);
  return Promise.race([
    r.exited,
    new Promise<null>((resolve) =>
      setTimeout(() => {
        if (r.child.exitCode === null && r.child.pid !== undefined)
          process.kill(r.child.pid, "SIGKILL");
        resolve(null);
      }, 15_000),
    ),
  ]);
}

const connectError = async (c: pg.Client) =>
  (await c.connect().then(
    () => null,
    (e: unknown) => e,
  )) as { code?: string; message?: string } | null;

describe("logs", () => {
  let cluster: SharedCluster;
  let dir: string;
  let running: Running | null = null;
  let secrets: string[];
  let args: string[];

  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.createUser(APP.user, APP.password);
    await cluster.createUser(STALE.user, STALE.real);
    dir = mkdtempSync(join(tmpdir(), "pgsidecar-logs-"));
    const closedPort = await findFreePort();
    writeFileSync(
      join(dir, "pgsidecar.yaml"),
      [
        "users:",
        `  - { name: ${APP.user}, password: "${APP.password}" }`,
        `  - { name: ${ADMIN.user}, password: "${ADMIN.password}", admin: true }`,
        `  - { name: ${STALE.user}, password: "${STALE.password}" }`,
        "databases:",
        "  nowhere:",
        `    upstream: "postgres://postgres:${encodeURIComponent(cluster.password)}@127.0.0.1:${closedPort}/postgres"`,
        "server_login_retry: 100ms",
        "",
      ].join("\n"),
    );
    secrets = [
      cluster.password,
      encodeURIComponent(cluster.password),
      APP.password,
      ADMIN.password,
      STALE.password,
      STALE.real,
      WRONG,
    ];
    args = [
      "--config",
      join(dir, "pgsidecar.yaml"),
      "--upstream",
      cluster.url({ database: "postgres" }),
      "--listen",
      "127.0.0.1:0",
      "--http-listen",
      "127.0.0.1:0",
      "--query-wait-timeout",
      "2s",
      "--log-level",
      "debug",
    ];
  });

  afterAll(async () => {
    await stop(running, "SIGKILL");
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("masks credentials in free text", () => {
    expect(scrubSecrets("dial postgres://u:s3cr%40t@db:5432/app failed")).toBe(
      "dial postgres://u:****@db:5432/app failed",
    );
    expect(scrubSecrets("host=db password='a b\\'c' user=u")).toBe("host=db password=**** user=u");
    expect(scrubSecrets("host=db password=xyz")).toBe("host=db password=****");
    expect(scrubSecrets("postgres://u@db/app and user@example.com")).toBe(
      "postgres://u@db/app and user@example.com",
    );
  });

  it("logs connects, failures and disconnects with pool and reason, and no password, at debug", async () => {
    running = await startCli(args);
    const cfg = (user: string, password: string, database = "postgres") => ({
      host: "127.0.0.1",
      port: (running as Running).port,
      user,
      password,
      database,
    });

    // A client logs in and runs work; a server is opened for it.
    const app = new pg.Client(cfg(APP.user, APP.password));
    await app.connect();
    await app.query("SELECT 1");
    await app.query({ name: "q", text: "SELECT $1::text AS v", values: ["x"] });

    // A client with a wrong password.
    expect((await connectError(new pg.Client(cfg(APP.user, WRONG))))?.code).toBe("28P01");
    // A client whose server login fails (the sidecar's password for it is stale).
    const stale = new pg.Client(cfg(STALE.user, STALE.password));
    const staleErr = await stale
      .connect()
      .then(() => stale.query("SELECT 1"))
      .then(
        () => null,
        (e: { code?: string }) => e,
      );
    expect(staleErr?.code).toBe("28P01");
    await stale.end().catch(() => {});
    // A database whose upstream refuses connections.
    const nowhere = new pg.Client(cfg(APP.user, APP.password, "nowhere"));
    const nowhereErr = await nowhere
      .connect()
      .then(() => nowhere.query("SELECT 1"))
      .then(
        () => null,
        (e: { code?: string }) => e,
      );
    expect(nowhereErr).not.toBeNull();
    await nowhere.end().catch(() => {});
    // The admin console, and a non-admin refused.
    const admin = new pg.Client(cfg(ADMIN.user, ADMIN.password, "pgsidecar"));
    await admin.connect();
    await admin.query("SHOW CONFIG");
    await admin.query("SHOW SERVERS");
    await admin.end();
    expect(
      (await connectError(new pg.Client(cfg(APP.user, APP.password, "pgsidecar"))))?.code,
    ).toBe("28000");
    // The backend is killed while idle in the pool.
    await cluster.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '${APP.user}' AND backend_type = 'client backend'`,
    );
    await new Promise((r) => setTimeout(r, 300));
    await app.query("SELECT 2");
    await app.end();
    // Reload, then drain and exit.
    process.kill(running.child.pid as number, "SIGHUP");
    await new Promise((r) => setTimeout(r, 300));
    expect(await stop(running)).toBe(0);

    const output = running.output();
    for (const secret of secrets) expect(output, `"${secret}" leaked`).not.toContain(secret);
    expect(output).not.toMatch(/:\/\/[^\s/@:"]+:[^\s@"*]+@/);

    const lines = output
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => {
        try {
          return JSON.parse(l) as { level: number; msg: string; [k: string]: unknown };
        } catch {
          throw new Error(`not a JSON log line: ${l}`);
        }
      });
    for (const l of lines) {
      expect(typeof l.level).toBe("number");
      expect(typeof l.msg).toBe("string");
    }
    expect(lines.some((l) => l.level === 20)).toBe(true); // debug lines are there
    const find = (msg: string, pred: (l: Record<string, unknown>) => boolean = () => true) =>
      lines.filter((l) => l.msg === msg && pred(l));

    expect(find("server connection opened", (l) => l.pool === `postgres/${APP.user}`).length).toBe(
      2,
    );
    expect(
      find(
        "server connection closed",
        (l) => l.pool === `postgres/${APP.user}` && l.reason === "terminated",
      ),
    ).toHaveLength(1);
    expect(
      find("server connection failed", (l) => l.pool === `postgres/${STALE.user}`).length,
    ).toBeGreaterThan(0);
    expect(
      find("server connection failed", (l) => l.pool === `nowhere/${APP.user}`).length,
    ).toBeGreaterThan(0);
    expect(
      find("client authentication failed", (l) => l.user === APP.user && l.sqlstate === "28P01"),
    ).toHaveLength(1);
    // Every client that came (app, wrong password, stale, nowhere, admin, refused non-admin) left
    // with a reason.
    const closed = find("client closed");
    expect(closed.length).toBe(6);
    for (const l of closed) expect(typeof l.reason).toBe("string");
    expect(find("configuration reloaded")).toHaveLength(1);
    // The masked upstream of "nowhere" may be shown, but only masked.
    for (const l of lines.filter((x) => JSON.stringify(x).includes("://")))
      expect(JSON.stringify(l)).not.toMatch(/:\/\/postgres:[^*]/);
  });

  it("--log-format pretty prints readable lines, without secrets either", async () => {
    running = await startCli([...args, "--log-format", "pretty"]);
    const bad = new pg.Client({
      host: "127.0.0.1",
      port: running.port,
      user: APP.user,
      password: WRONG,
      database: "postgres",
    });
    expect((await connectError(bad))?.code).toBe("28P01");
    expect(await stop(running)).toBe(0);
    const lines = running
      .output()
      .split("\n")
      .filter((l) => l.trim() !== "");
    expect(lines.length).toBeGreaterThan(2);
    for (const l of lines)
      expect(l).toMatch(/^\d{4}-\d\d-\d\dT\S+Z (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) /);
    expect(lines.some((l) => / INFO pgsidecar listening /.test(l))).toBe(true);
    expect(lines.some((l) => / client authentication failed /.test(l))).toBe(true);
    for (const secret of secrets) expect(running.output()).not.toContain(secret);
  });
});
