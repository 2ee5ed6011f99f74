// Throwaway PostgreSQL clusters for integration tests: initdb into a temp dir, a free port, SCRAM on TCP.
// Model: PgBouncer test/utils.py `Postgres`. Running as root, every server-side command runs as the
// `postgres` OS user, because postgres refuses to run as root.
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { run } from "./processes.js";

export interface ClusterOptions {
  /** Extra postgresql.conf settings; strings are quoted for you. */
  conf?: Record<string, string | number>;
  /** Generate a CA and a server certificate (CN localhost, SAN localhost and 127.0.0.1); ssl=on. */
  ssl?: boolean;
  /**
   * A streaming standby of this cluster instead of a fresh one: `pg_basebackup -R` over the
   * primary's socket, its own port and socket dir. `conf` does not apply (the primary's is copied).
   */
  standbyOf?: PgCluster;
}

export interface UrlOptions {
  user?: string;
  password?: string;
  database?: string;
  params?: Record<string, string>;
}

export interface PgCluster {
  /** Always "127.0.0.1". */
  host: string;
  port: number;
  /** "postgres". */
  superuser: string;
  /** The superuser's password, stored as SCRAM. */
  password: string;
  socketDir: string;
  dataDir: string;
  /** PEM file of the CA that signed the server certificate (only with `ssl: true`). */
  caFile?: string;
  /** postgres://user:password@127.0.0.1:port/database?params; defaults: superuser, its password, "postgres". */
  url(opts?: UrlOptions): string;
  /** Runs one statement as the superuser over TCP on a fresh pg.Client, closed afterwards. */
  // biome-ignore lint/suspicious/noExplicitAny: rows are whatever the test selects
  query(sql: string, params?: unknown[]): Promise<any[]>;
  /**
   * CREATE ROLE name LOGIN PASSWORD. With `md5`, the password is stored as md5 and pg_hba lets the
   * user log in with md5 (so does a name starting with `md5_`).
   */
  createUser(
    name: string,
    password: string,
    opts?: { md5?: boolean; superuser?: boolean },
  ): Promise<void>;
  createDatabase(name: string, owner?: string): Promise<void>;
  /** pg_ctl restart -w -m mode (default fast); the port stays the same. */
  restart(mode?: "fast" | "immediate"): Promise<void>;
  /**
   * pg_ctl stop -w -m mode (default fast); files stay, so start() works again. `smart` resolves
   * only when the last session has ended; meanwhile new connections get 57P03.
   */
  stop(mode?: "smart" | "fast" | "immediate"): Promise<void>;
  start(): Promise<void>;
  /** PIDs of client backends (of `user` if given), not counting the connection that asks. */
  backendPids(user?: string): Promise<number[]>;
  /** Immediate stop, then the temp dir is deleted. Safe to call twice. */
  destroy(): Promise<void>;
  /** The server log so far (for failure messages). */
  log(): string;
  /** pg_ctl promote -w: a standby becomes a primary on a new timeline. */
  promote(): Promise<void>;
  /**
   * A stopped cluster comes back as a streaming standby of `primary` (standby.signal and a
   * primary_conninfo over its socket), as an old primary does after a failover; then started.
   */
  startAsStandbyOf(primary: PgCluster): Promise<void>;
}

const HOST = "127.0.0.1";
const SUPERUSER = "postgres";
/** Members of this role may log in with md5 (pg_hba before the scram-sha-256 line). */
const MD5_GROUP = "pgsidecar_md5_login";
const START_TIMEOUT_S = 60;

let binDirCache: string | undefined;

/** PG_BIN, else `pg_config --bindir`, else Debian's PostgreSQL 15. */
export function pgBinDir(): string {
  if (binDirCache !== undefined) return binDirCache;
  let dir = process.env.PG_BIN;
  if (!dir) {
    try {
      const out = execFileSync("pg_config", ["--bindir"], {
        encoding: "utf8",
        stdio: "pipe",
      }).trim();
      if (out && existsSync(join(out, "initdb"))) dir = out;
    } catch {
      // no pg_config on PATH
    }
  }
  binDirCache = dir || "/usr/lib/postgresql/15/bin";
  return binDirCache;
}

const asRoot = typeof process.getuid === "function" && process.getuid() === 0;
let postgresIds: { uid: number; gid: number } | undefined;

function postgresOsUser(): { uid: number; gid: number } {
  if (postgresIds) return postgresIds;
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
  postgresIds = { uid, gid };
  return postgresIds;
}

/** The argv that runs a PostgreSQL binary, as the postgres OS user when we are root. */
function serverCommand(bin: string, args: string[]): [string, string[]] {
  const path = join(pgBinDir(), bin);
  if (!asRoot) return [path, args];
  return ["setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", path, ...args]];
}

/** The environment for server-side commands: no PG* variables of ours leak into initdb/pg_ctl. */
function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PG")) env[k] = v;
  env.LC_ALL = "C";
  return env;
}

/** Binds port 0 on 127.0.0.1, reads the port, closes. Someone may take it before we use it. */
export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, HOST, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("no port from listen(0)"))));
    });
  });
}

function quoteIdent(s: string): string {
  return `"${s.replaceAll('"', '""')}"`;
}

function quoteLiteral(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

function confValue(v: string | number): string {
  return typeof v === "number" ? String(v) : quoteLiteral(v);
}

// Clusters not yet destroyed: the 'exit' handler stops them so a dying test run leaks no postgres.
const live = new Map<string, { dataDir: string; baseDir: string }>();
let exitHookInstalled = false;

function stopAllSync(): void {
  for (const [key, c] of live) {
    live.delete(key);
    const [cmd, args] = serverCommand("pg_ctl", ["-D", c.dataDir, "-m", "immediate", "-w", "stop"]);
    spawnSync(cmd, args, { stdio: "ignore", timeout: 15_000, cwd: c.baseDir, env: serverEnv() });
    rmSync(c.baseDir, { recursive: true, force: true });
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", stopAllSync);
  // A signal skips 'exit'. Clean up, then die of the same signal unless someone else handles it.
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = () => {
      stopAllSync();
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, onSignal);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, onSignal);
  }
}

function makeCerts(dir: string): { ca: string; cert: string; key: string } {
  const ca = join(dir, "ca.crt");
  const caKey = join(dir, "ca.key");
  const cert = join(dir, "server.crt");
  const key = join(dir, "server.key");
  const csr = join(dir, "server.csr");
  const ext = join(dir, "server.ext");
  const openssl = (args: string[]) => execFileSync("openssl", args, { stdio: "pipe", cwd: dir });
  const ecKey = (out: string) =>
    openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", out]);
  ecKey(caKey);
  openssl([
    ...["req", "-x509", "-new", "-key", caKey, "-days", "2", "-subj", "/CN=pgsidecar test CA"],
    ...["-addext", "basicConstraints=critical,CA:TRUE"],
    ...["-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", ca],
  ]);
  ecKey(key);
  openssl(["req", "-new", "-key", key, "-subj", "/CN=localhost", "-out", csr]);
  writeFileSync(
    ext,
    [
      "basicConstraints=CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "",
    ].join("\n"),
  );
  openssl([
    ...["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial"],
    ...["-days", "2", "-extfile", ext, "-out", cert],
  ]);
  // postgres wants the key private to its owner (0600) before it will load it.
  chmodSync(key, 0o600);
  return { ca, cert, key };
}

class Cluster implements PgCluster {
  readonly host = HOST;
  readonly superuser = SUPERUSER;
  /** A standby has its primary's roles, so its superuser's password too. */
  readonly password: string;
  readonly baseDir: string;
  readonly socketDir: string;
  readonly dataDir: string;
  readonly logFile: string;
  caFile?: string;
  port = 0;
  private destroyed = false;

  constructor(
    baseDir: string,
    private readonly opts: ClusterOptions,
  ) {
    this.baseDir = baseDir;
    this.password = opts.standbyOf?.password ?? randomBytes(18).toString("base64url");
    this.socketDir = join(baseDir, "sock");
    this.dataDir = join(baseDir, "data");
    this.logFile = join(baseDir, "server.log");
  }

  private async pg(bin: string, args: string[], timeoutMs = 90_000) {
    const [cmd, argv] = serverCommand(bin, args);
    return run(cmd, argv, { env: serverEnv(), cwd: this.baseDir, timeoutMs });
  }

  async init(): Promise<void> {
    if (this.opts.standbyOf) return this.initStandby(this.opts.standbyOf);
    const pwfile = join(this.baseDir, "pwfile");
    writeFileSync(pwfile, `${this.password}\n`, { mode: 0o600 });
    writeFileSync(this.logFile, "");
    let sslConf: string[] = [];
    if (this.opts.ssl) {
      const sslDir = join(this.baseDir, "ssl");
      mkdirSync(sslDir);
      const { ca, cert, key } = makeCerts(sslDir);
      this.caFile = ca;
      sslConf = [
        "ssl = on",
        `ssl_cert_file = ${quoteLiteral(cert)}`,
        `ssl_key_file = ${quoteLiteral(key)}`,
      ];
    }
    mkdirSync(this.socketDir);
    if (asRoot) {
      const { uid, gid } = postgresOsUser();
      execFileSync("chown", ["-R", `${uid}:${gid}`, this.baseDir]);
    }
    const r = await this.pg("initdb", [
      ...["--nosync", "-A", "scram-sha-256", "--auth-local=trust", "-U", SUPERUSER],
      ...[`--pwfile=${pwfile}`, "--encoding=UTF8", "--locale=C", "-D", this.dataDir],
    ]);
    rmSync(pwfile, { force: true });
    if (r.code !== 0) throw new Error(`initdb failed (${r.code}):\n${r.stdout}\n${r.stderr}`);

    const extra = Object.entries(this.opts.conf ?? {}).map(([k, v]) => `${k} = ${confValue(v)}`);
    // Our settings live in an included file so the port can be rewritten if it was taken.
    writeFileSync(
      join(this.dataDir, "pgsidecar-base.conf"),
      [
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = ${quoteLiteral(this.socketDir)}`,
        "fsync = off",
        "synchronous_commit = off",
        "full_page_writes = off",
        "log_connections = on",
        "max_connections = 300",
        "shared_buffers = '64MB'",
        ...sslConf,
        ...extra,
        "",
      ].join("\n"),
    );
    const conf = join(this.dataDir, "postgresql.conf");
    writeFileSync(
      conf,
      `${readFileSync(conf, "utf8")}\ninclude 'pgsidecar-base.conf'\ninclude 'pgsidecar-port.conf'\n`,
    );
    // pg_hba is read top to bottom, first match wins. `md5` accepts md5- and scram-stored passwords;
    // `scram-sha-256` refuses md5-stored ones, so md5 users need their line first.
    writeFileSync(
      join(this.dataDir, "pg_hba.conf"),
      [
        "local all all trust",
        "local replication all trust",
        `host all +${MD5_GROUP} 127.0.0.1/32 md5`,
        "host all all 127.0.0.1/32 scram-sha-256",
        "",
      ].join("\n"),
    );
    if (asRoot) {
      const { uid, gid } = postgresOsUser();
      for (const f of [
        "pgsidecar-base.conf",
        "pgsidecar-port.conf",
        "pg_hba.conf",
        "postgresql.conf",
      ]) {
        const p = join(this.dataDir, f);
        if (!existsSync(p)) writeFileSync(p, "");
        chownSync(p, uid, gid);
      }
    }
  }

  /** pg_basebackup -R from the primary's socket; then our own socket dir (the port comes later). */
  private async initStandby(primary: PgCluster): Promise<void> {
    mkdirSync(this.socketDir);
    writeFileSync(this.logFile, "");
    if (asRoot) {
      const { uid, gid } = postgresOsUser();
      execFileSync("chown", ["-R", `${uid}:${gid}`, this.baseDir]);
    }
    const r = await this.pg("pg_basebackup", [
      ...["-D", this.dataDir, "-h", primary.socketDir, "-p", String(primary.port)],
      ...["-U", SUPERUSER, "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"],
    ]);
    if (r.code !== 0)
      throw new Error(`pg_basebackup failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
    const base = join(this.dataDir, "pgsidecar-base.conf");
    this.writeOwned(
      base,
      readFileSync(base, "utf8").replace(
        /^unix_socket_directories = .*$/m,
        `unix_socket_directories = ${quoteLiteral(this.socketDir)}`,
      ),
    );
  }

  /** Writes a file in the data dir, owned by the postgres OS user when we are root. */
  private writeOwned(path: string, text: string): void {
    writeFileSync(path, text);
    if (asRoot) {
      const { uid, gid } = postgresOsUser();
      chownSync(path, uid, gid);
    }
  }

  async promote(): Promise<void> {
    const r = await this.pg("pg_ctl", ["-D", this.dataDir, "-w", "-t", "60", "promote"]);
    if (r.code !== 0) throw new Error(`pg_ctl promote failed:\n${r.stdout}${r.stderr}`);
  }

  async startAsStandbyOf(primary: PgCluster): Promise<void> {
    this.writeOwned(join(this.dataDir, "standby.signal"), "");
    // postgresql.auto.conf is read last: only the primary_conninfo, nothing ALTER SYSTEM left.
    this.writeOwned(
      join(this.dataDir, "postgresql.auto.conf"),
      `primary_conninfo = 'host=${primary.socketDir} port=${primary.port} user=${SUPERUSER}'\n`,
    );
    await this.start();
  }

  private setPort(port: number): void {
    this.port = port;
    const p = join(this.dataDir, "pgsidecar-port.conf");
    this.writeOwned(p, `port = ${port}\n`);
  }

  /** First start: on a free port, and once more on another if that one was taken meanwhile. */
  async firstStart(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.setPort(await findFreePort());
      const r = await this.pgCtlStart();
      if (r.ok) break;
      if (attempt < 2 && /Address already in use|could not bind/i.test(this.log())) continue;
      throw new Error(
        `pg_ctl start failed on port ${this.port}:\n${r.output}\n--- server log ---\n${this.log()}`,
      );
    }
    // A standby has the primary's roles (and cannot create any).
    if (!this.opts.standbyOf) await this.query(`CREATE ROLE ${quoteIdent(MD5_GROUP)} NOLOGIN`);
  }

  private async pgCtlStart(): Promise<{ ok: boolean; output: string }> {
    const r = await this.pg("pg_ctl", [
      ...["-D", this.dataDir, "-l", this.logFile, "-w", "-t", String(START_TIMEOUT_S), "start"],
    ]);
    return { ok: r.code === 0, output: r.stdout + r.stderr };
  }

  url(opts: UrlOptions = {}): string {
    const user = encodeURIComponent(opts.user ?? SUPERUSER);
    const pw =
      opts.password ??
      (opts.user === undefined || opts.user === SUPERUSER ? this.password : undefined);
    const auth = pw === undefined ? user : `${user}:${encodeURIComponent(pw)}`;
    const db = encodeURIComponent(opts.database ?? "postgres");
    const qs = opts.params ? new URLSearchParams(opts.params).toString() : "";
    return `postgres://${auth}@${HOST}:${this.port}/${db}${qs ? `?${qs}` : ""}`;
  }

  private client(): pg.Client {
    return new pg.Client({
      host: HOST,
      port: this.port,
      user: SUPERUSER,
      password: this.password,
      database: "postgres",
      connectionTimeoutMillis: 10_000,
      ssl: this.caFile ? { ca: readFileSync(this.caFile, "utf8"), servername: "localhost" } : false,
    });
  }

  // biome-ignore lint/suspicious/noExplicitAny: rows are whatever the test selects
  async query(sql: string, params?: unknown[]): Promise<any[]> {
    const c = this.client();
    // An error from a dead connection must not become an uncaught 'error' event.
    c.on("error", () => {});
    await c.connect();
    try {
      const r = await c.query(sql, params);
      // A multi-statement simple query returns one result per statement; give the last one's rows.
      return Array.isArray(r) ? (r.at(-1)?.rows ?? []) : r.rows;
    } finally {
      await c.end().catch(() => {});
    }
  }

  async createUser(
    name: string,
    password: string,
    opts: { md5?: boolean; superuser?: boolean } = {},
  ): Promise<void> {
    const md5Login = opts.md5 === true || name.startsWith("md5_");
    const attrs = [
      "LOGIN",
      opts.superuser ? "SUPERUSER" : "",
      md5Login ? `IN ROLE ${quoteIdent(MD5_GROUP)}` : "",
    ];
    const create = `CREATE ROLE ${quoteIdent(name)} ${attrs.filter(Boolean).join(" ")} PASSWORD ${quoteLiteral(password)}`;
    // SET and CREATE must share a session; one simple-protocol query string does that.
    const sql = opts.md5 ? `SET password_encryption = 'md5'; ${create}` : create;
    await this.query(sql);
  }

  async createDatabase(name: string, owner?: string): Promise<void> {
    await this.query(
      `CREATE DATABASE ${quoteIdent(name)}${owner ? ` OWNER ${quoteIdent(owner)}` : ""}`,
    );
  }

  async restart(mode: "fast" | "immediate" = "fast"): Promise<void> {
    const r = await this.pg("pg_ctl", [
      ...["-D", this.dataDir, "-l", this.logFile, "-m", mode, "-w", "-t", String(START_TIMEOUT_S)],
      "restart",
    ]);
    if (r.code !== 0) {
      throw new Error(
        `pg_ctl restart failed:\n${r.stdout}${r.stderr}\n--- server log ---\n${this.log()}`,
      );
    }
  }

  async stop(mode: "smart" | "fast" | "immediate" = "fast"): Promise<void> {
    const r = await this.pg("pg_ctl", [
      ...["-D", this.dataDir, "-m", mode, "-w", "-t", String(START_TIMEOUT_S), "stop"],
    ]);
    if (r.code !== 0) throw new Error(`pg_ctl stop failed:\n${r.stdout}${r.stderr}`);
  }

  async start(): Promise<void> {
    const r = await this.pgCtlStart();
    if (!r.ok)
      throw new Error(`pg_ctl start failed:\n${r.output}\n--- server log ---\n${this.log()}`);
  }

  async backendPids(user?: string): Promise<number[]> {
    const rows = await this.query(
      `SELECT pid FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
          AND ($1::text IS NULL OR usename = $1::text)
        ORDER BY pid`,
      [user ?? null],
    );
    return rows.map((r: { pid: number }) => r.pid);
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this.baseDir);
    await this.pg("pg_ctl", ["-D", this.dataDir, "-m", "immediate", "-w", "stop"], 30_000).catch(
      () => {},
    );
    rmSync(this.baseDir, { recursive: true, force: true });
  }

  log(): string {
    try {
      return readFileSync(this.logFile, "utf8");
    } catch {
      return "";
    }
  }
}

/** initdb + pg_ctl start into a fresh temp dir (os.tmpdir()/pgsidecar-test-*). Call destroy() after. */
export async function startCluster(opts: ClusterOptions = {}): Promise<PgCluster> {
  installExitHook();
  const baseDir = mkdtempSync(join(tmpdir(), "pgsidecar-test-"));
  const cluster = new Cluster(baseDir, opts);
  live.set(baseDir, { dataDir: cluster.dataDir, baseDir });
  try {
    await cluster.init();
    await cluster.firstStart();
  } catch (e) {
    await cluster.destroy();
    throw e;
  }
  return cluster;
}

/**
 * A streaming standby of `primary` (pg_basebackup -R), made synchronous: an acknowledged commit is
 * on both, so none is lost when the primary dies. Needs synchronous_commit on at the primary (the
 * test clusters default to off). The promoted standby waits for no standby itself: the setting is
 * made on the primary after the base backup.
 */
export async function startSyncStandby(primary: PgCluster): Promise<PgCluster> {
  const standby = await startCluster({ standbyOf: primary });
  try {
    await primary.query("ALTER SYSTEM SET synchronous_standby_names = '*'");
    await primary.query("SELECT pg_reload_conf()");
    const inSync = "SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'";
    const deadline = Date.now() + 30_000;
    while ((await primary.query(inSync)).length === 0) {
      if (Date.now() > deadline)
        throw new Error(`standby not in sync after 30 s:\n${standby.log()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (e) {
    await standby.destroy();
    throw e;
  }
  return standby;
}
