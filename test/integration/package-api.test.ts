// The npm package as an application uses it: `npm pack`, installed into a scratch ESM project, its
// type declarations checked by a strict consumer, `startSidecar` run in front of a real Postgres
// (a query survives pg_terminate_backend), and its `pgsidecar` bin run.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  cleanEnv,
  installScratchProject,
  type PackedPackage,
  packPackage,
  REPO,
  TSC,
} from "../helpers/packed-package.js";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { run } from "../helpers/processes.js";

// A typed consumer: every part of the API used with the types a user would write.
const CONSUMER_TS = `import {
  type Config,
  type RunningSidecar,
  type SidecarSettings,
  type StartSidecarOptions,
  startSidecar,
} from "pgsidecar";

const settings: SidecarSettings = {
  upstream: "postgres://app:secret@127.0.0.1:5432/app",
  pool_mode: "transaction",
  pool_size: 4,
  query_wait_timeout: "5s",
  shutdown_timeout: 2000,
  any_database: false,
  tls_cert_file: null,
  track_extra_parameters: ["search_path"],
  databases: { other: "postgres://app:secret@127.0.0.1:5432/other" },
};
const options: StartSidecarOptions = { ...settings, log: (line: string) => void line };

export async function use(): Promise<number> {
  const sidecar: RunningSidecar = await startSidecar(options);
  const config: Config = sidecar.config;
  const poolSize: number = config.pool_size;
  const url: string = sidecar.url({ database: "other" });
  const http: number | null = sidecar.httpPort;
  const text: string = await sidecar.metrics();
  const result: "drained" | "timeout" = await sidecar.stop();
  return poolSize + url.length + (http ?? 0) + text.length + result.length + sidecar.port;
}
`;

// Three deliberate mistakes, one per marked line: each must be a type error.
const BAD_TS = `import { startSidecar } from "pgsidecar";
export const a = startSidecar({ pool_mode: "statement" }); // BAD: not a pool mode
export const b = startSidecar({ pool_sise: 4 }); // BAD: a typo of pool_size
export const c: Promise<string> = startSidecar().then((s) => s.port); // BAD: port is a number
`;

const tsconfig = (file: string, resolution: "node16" | "bundler") =>
  JSON.stringify({
    compilerOptions: {
      strict: true,
      target: "ES2022",
      module: resolution === "node16" ? "node16" : "esnext",
      moduleResolution: resolution,
      noEmit: true,
      // Declaration files are checked too: a type that leaks a dev-only dependency fails here.
      skipLibCheck: false,
      types: [],
    },
    files: [file],
  });

// Runs in the scratch project with its own node_modules: pg and pgsidecar as an app has them.
const CONSUMER_MJS = `import pg from "pg";
import { startSidecar } from "pgsidecar";

const upstream = process.env.UPSTREAM_URL;
const out = {};

try {
  await startSidecar({ upstream, pool_sise: 4 });
  out.typo = null;
} catch (err) {
  out.typo = { name: err.name, code: err.code, message: err.message };
}

const lines = [];
const sidecar = await startSidecar({
  upstream,
  pool_size: 2,
  shutdown_timeout: "5s",
  log_level: "info",
  log: (line) => lines.push(line),
});
out.port = sidecar.port;
out.httpPort = sidecar.httpPort;
out.url = sidecar.url().replace(/:[^:@/]*@/, ":****@");

const client = new pg.Client({ connectionString: sidecar.url() });
await client.connect();
out.first = (await client.query("SELECT 1 AS one")).rows[0].one;
const pid = async () => (await client.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
const before = await pid();

const direct = new pg.Client({ connectionString: upstream });
await direct.connect();
out.terminated = (await direct.query("SELECT pg_terminate_backend($1) AS ok", [before])).rows[0].ok;
for (let i = 0; ; i++) {
  const left = await direct.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", [before]);
  if (left.rowCount === 0) break;
  if (i > 200) throw new Error("the terminated backend is still there");
  await new Promise((r) => setTimeout(r, 25));
}
await direct.end();

out.after = (await client.query("SELECT 1 AS one")).rows[0].one;
out.pids = [before, await pid()];
out.metrics = (await sidecar.metrics()).includes("pgsidecar_");
out.status = Array.isArray(sidecar.status().pools);
await client.end();
const stopping = sidecar.stop();
out.stopSamePromise = sidecar.stop() === stopping;
out.stop = await stopping;
out.logLines = lines.length;
out.passwordLogged = lines.some((l) => l.includes(process.env.UPSTREAM_PASSWORD));
console.log(JSON.stringify(out));
`;

describe("the npm package", () => {
  let work = "";
  let app = "";
  let packed: PackedPackage;
  let cluster: PgCluster | undefined;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "pgsidecar-package-"));
    app = join(work, "app");
    const t0 = performance.now();
    packed = await packPackage(work);
    const t1 = performance.now();
    // pg at the repo's own version: in the npm cache already, and what the other tests use.
    const pgVersion = JSON.parse(readFileSync(join(REPO, "node_modules/pg/package.json"), "utf8"))
      .version as string;
    await installScratchProject(app, [packed.tarball, `pg@${pgVersion}`]);
    const t2 = performance.now();
    console.log(
      `packed ${packed.files.length} files, ${packed.size} bytes (${packed.unpackedSize} unpacked) in ${Math.round(t1 - t0)} ms; installed in ${Math.round(t2 - t1)} ms`,
    );
    writeFileSync(join(app, "consumer.ts"), CONSUMER_TS);
    writeFileSync(join(app, "bad.ts"), BAD_TS);
    writeFileSync(join(app, "consumer.mjs"), CONSUMER_MJS);
    for (const resolution of ["node16", "bundler"] as const) {
      writeFileSync(join(app, `tsconfig.${resolution}.json`), tsconfig("consumer.ts", resolution));
      writeFileSync(join(app, `tsconfig.bad-${resolution}.json`), tsconfig("bad.ts", resolution));
    }
    cluster = await startCluster();
  }, 600_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("ships the compiled code with its declarations, and no sources, tests or source maps", () => {
    const files = packed.files;
    for (const f of ["dist/index.js", "dist/index.d.ts", "dist/cli.js", "dist/proxy.js"])
      expect(files, f).toContain(f);
    expect(files).toContain("config/pgsidecar.yaml");
    expect(files.filter((f) => f.endsWith(".d.ts")).length).toBeGreaterThan(10);
    const unwanted = files.filter(
      (f) =>
        /\.map$|^(src|test|bench|demo|helm)\//.test(f) || /\.ts$/.test(f.replace(/\.d\.ts$/, "")),
    );
    expect(unwanted).toEqual([]);
    const pkg = JSON.parse(readFileSync(join(app, "node_modules/pgsidecar/package.json"), "utf8"));
    expect(pkg.exports["."]).toEqual({ types: "./dist/index.d.ts", import: "./dist/index.js" });
  });

  it.each(["node16", "bundler"] as const)(
    "type-checks a strict consumer against the installed declarations (moduleResolution %s); a wrong use fails",
    async (resolution) => {
      const good = await run(TSC, ["-p", `tsconfig.${resolution}.json`, "--pretty", "false"], {
        cwd: app,
        env: cleanEnv(),
        timeoutMs: 120_000,
      });
      expect(good.timedOut).toBe(false);
      expect(good.stdout + good.stderr).toBe("");
      expect(good.code).toBe(0);

      const bad = await run(TSC, ["-p", `tsconfig.bad-${resolution}.json`, "--pretty", "false"], {
        cwd: app,
        env: cleanEnv(),
        timeoutMs: 120_000,
      });
      expect(bad.timedOut).toBe(false);
      expect(bad.code).not.toBe(0);
      const errors = bad.stdout.split("\n").filter((l) => /error TS\d+/.test(l));
      // One error on each marked line (2, 3, 4), nothing else.
      expect(errors.map((l) => /^bad\.ts\((\d+),/.exec(l)?.[1])).toEqual(["2", "3", "4"]);
      expect(errors[0]).toMatch(/"statement"/);
      expect(errors[1]).toMatch(/pool_sise/);
    },
    180_000,
  );

  it("starts a sidecar in-process, whose client survives pg_terminate_backend, and stops it", async () => {
    const c = cluster as PgCluster;
    const r = await run(process.execPath, ["consumer.mjs"], {
      cwd: app,
      env: cleanEnv({
        UPSTREAM_URL: c.url({ database: "postgres" }),
        UPSTREAM_PASSWORD: c.password,
      }),
      timeoutMs: 60_000,
    });
    // It exits by itself once stopped: nothing the sidecar opened keeps the process alive.
    expect(r.timedOut, r.stderr).toBe(false);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1) as string);
    expect(out.typo).toMatchObject({ name: "ConfigError", code: "config_invalid" });
    // The CLI's message, naming the option rather than a flag.
    expect(out.typo.message).toBe(
      "invalid config: unknown setting pool_sise (startSidecar option): did you mean pool_size?",
    );
    expect(out.port).toBeGreaterThan(0);
    expect(out.httpPort).toBeNull();
    expect(out.url).toBe(`postgres://${c.superuser}:****@127.0.0.1:${out.port}/postgres`);
    expect(out.first).toBe(1);
    expect(out.terminated).toBe(true);
    expect(out.after).toBe(1);
    expect(out.pids[1]).not.toBe(out.pids[0]);
    expect(out.metrics).toBe(true);
    expect(out.status).toBe(true);
    expect(out.stopSamePromise).toBe(true);
    expect(out.stop).toBe("drained");
    expect(out.logLines).toBeGreaterThan(0);
    expect(out.passwordLogged).toBe(false);
  }, 120_000);

  it("installs a working pgsidecar bin (npx -- pgsidecar --help)", async () => {
    const r = await run("npx", ["--no", "--", "pgsidecar", "--help"], {
      cwd: app,
      env: cleanEnv(),
      timeoutMs: 60_000,
    });
    expect(r.timedOut).toBe(false);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/--upstream/);
    expect(r.stdout).toMatch(/check-config/);
  }, 120_000);
});
