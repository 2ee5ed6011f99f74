// The Dockerfile without Docker: no engine runs on the CI machines, so this reads the Dockerfile,
// copies the build context that .dockerignore lets through into a clean directory, runs each
// stage's RUN steps there, lays out the runtime stage as its COPY lines say, and starts its
// ENTRYPOINT + CMD with its ENV, then runs its HEALTHCHECK. The base images' Node is this
// machine's Node (the image pins the LTS line in NODE_MAJOR; the test prints both).
import { spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { python3Psycopg, run } from "../helpers/processes.js";
import { REPO, type SidecarProcess, spawnSidecar } from "./lifecycle-process.js";

// --- .dockerignore ------------------------------------------------------------------------------

interface IgnoreRule {
  re: RegExp;
  exclude: boolean;
}

/** Docker's pattern syntax: * and ? within a segment, ** across segments, ! re-includes. */
function parseDockerignore(text: string): IgnoreRule[] {
  const rules: IgnoreRule[] = [];
  for (let line of text.split("\n")) {
    line = line.trim();
    if (line === "" || line.startsWith("#")) continue;
    const exclude = !line.startsWith("!");
    let pattern = exclude ? line : line.slice(1).trim();
    pattern = pattern.replace(/^\/+/, "").replace(/\/+$/, "");
    let re = "";
    for (let i = 0; i < pattern.length; i++) {
      const ch = pattern[i];
      if (ch === "*" && pattern[i + 1] === "*") {
        i++;
        if (pattern[i + 1] === "/") {
          i++;
          re += "(?:.*/)?";
        } else re += ".*";
      } else if (ch === "*") re += "[^/]*";
      else if (ch === "?") re += "[^/]";
      else re += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
    }
    rules.push({ re: new RegExp(`^${re}$`), exclude });
  }
  return rules;
}

/** Moby's MatchesOrParentMatches: a rule applies to a path or any directory above it; last wins. */
function ignored(rules: IgnoreRule[], path: string): boolean {
  const parts = path.split("/");
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
  let out = false;
  for (const rule of rules) {
    if (prefixes.some((p) => rule.re.test(p))) out = rule.exclude;
  }
  return out;
}

// --- Dockerfile ---------------------------------------------------------------------------------

interface Instruction {
  op: string;
  args: string;
}

function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (/^\s*#/.test(line)) continue; // comments (and the syntax directive), also inside a continuation
    if (pending === "" && line.trim() === "") continue;
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = "";
    const m = /^(\S+)\s*(.*)$/s.exec(full);
    if (m) out.push({ op: m[1].toUpperCase(), args: m[2] });
  }
  return out;
}

/** Splits like a shell: whitespace separates words, quotes group them (no expansion). */
function words(s: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : (m[2] ?? m[3]));
  }
  return out;
}

/** Leading --flag=value options of COPY, RUN, HEALTHCHECK. */
function flags(args: string): { flags: Record<string, string>; rest: string } {
  const out: Record<string, string> = {};
  let rest = args.trim();
  for (
    let m = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(rest);
    m;
    m = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(rest)
  ) {
    out[m[1]] = m[2] ?? "";
    rest = rest.slice(m[0].length);
  }
  return { flags: out, rest };
}

function substitute(s: string, vars: Record<string, string>): string {
  return s.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_, a, b) => {
    const name = a ?? b;
    return vars[name] ?? "";
  });
}

interface Stage {
  name: string;
  image: string;
  root: string;
  workdir: string;
  env: Record<string, string>;
  user: string | null;
  expose: string[];
  healthcheck: string[] | null;
  entrypoint: string[];
  cmd: string[];
  runs: string[];
}

/** A path inside a stage's filesystem. */
const inStage = (stage: Stage, p: string) =>
  p.startsWith("/") ? join(stage.root, p) : join(stage.root, stage.workdir, p);

/** Runs the Dockerfile's stages in `work`, with `context` as the build context. */
function build(instructions: Instruction[], context: string, work: string): Stage[] {
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  let stage: Stage | null = null;
  for (const { op, args: raw } of instructions) {
    if (op === "ARG") {
      const [k, v = ""] = raw.split("=");
      args[k.trim()] = v.trim();
      continue;
    }
    if (op === "FROM") {
      const [image, as, name] = words(substitute(raw, args));
      const stageName = as?.toUpperCase() === "AS" ? name : String(stages.length);
      stage = {
        name: stageName,
        image,
        root: join(work, `stage-${stages.length}-${stageName}`),
        workdir: "/",
        env: {},
        user: null,
        expose: [],
        healthcheck: null,
        entrypoint: [],
        cmd: [],
        runs: [],
      };
      mkdirSync(stage.root, { recursive: true });
      stages.push(stage);
      continue;
    }
    if (stage === null) throw new Error(`${op} before FROM`);
    const s: Stage = stage;
    const vars = { ...args, ...s.env };
    switch (op) {
      case "WORKDIR": {
        const dir = substitute(raw.trim(), vars);
        s.workdir = dir.startsWith("/") ? dir : join(s.workdir, dir);
        mkdirSync(join(s.root, s.workdir), { recursive: true });
        break;
      }
      case "ENV": {
        const ws = words(raw);
        if (ws.length === 2 && !ws[0].includes("=")) s.env[ws[0]] = ws[1];
        else
          for (const w of ws) {
            const i = w.indexOf("=");
            s.env[w.slice(0, i)] = substitute(w.slice(i + 1), vars);
          }
        break;
      }
      case "COPY": {
        const f = flags(raw);
        const ws = words(substitute(f.rest, vars));
        const dest = ws.pop() as string;
        const fromStage = f.flags.from ? stages.find((x) => x.name === f.flags.from) : undefined;
        if (f.flags.from && !fromStage)
          throw new Error(`COPY --from=${f.flags.from}: no such stage`);
        const toDir = dest.endsWith("/") || ws.length > 1;
        for (const src of ws) {
          if (/[*?[]/.test(src)) throw new Error(`COPY wildcards are not emulated: ${src}`);
          const from = fromStage ? inStage(fromStage, src) : join(context, src);
          if (!existsSync(from))
            throw new Error(`COPY ${src}: not in the ${f.flags.from ?? "context"}`);
          const to = inStage(s, dest);
          if (statSync(from).isDirectory()) cpSync(from, to, { recursive: true });
          else {
            const target = toDir ? join(to, basename(src)) : to;
            mkdirSync(dirname(target), { recursive: true });
            cpSync(from, target);
          }
        }
        break;
      }
      case "RUN": {
        const cmd = flags(raw).rest;
        // Emulated on this machine's filesystem: an absolute path would leave the stage directory.
        if (/(^|[\s'"=>])\/[A-Za-z]/.test(cmd))
          throw new Error(`RUN uses an absolute path, which this emulation cannot confine: ${cmd}`);
        s.runs.push(cmd);
        const env: NodeJS.ProcessEnv = {};
        for (const [k, v] of Object.entries(process.env))
          if (!k.startsWith("PGSIDECAR_") && !k.startsWith("npm_")) env[k] = v;
        Object.assign(env, s.env, {
          // The same commands; only npm's cache policy differs (no network when the cache has it).
          npm_config_prefer_offline: "true",
          npm_config_update_notifier: "false",
        });
        const r = spawnSync("sh", ["-c", cmd], {
          cwd: join(s.root, s.workdir),
          env,
          encoding: "utf8",
          timeout: 300_000,
          maxBuffer: 64 * 1024 * 1024,
        });
        if (r.status !== 0)
          throw new Error(
            `RUN ${cmd} (stage ${s.name}) failed: ${r.status ?? r.signal}\n${r.stdout}\n${r.stderr}`,
          );
        break;
      }
      case "USER":
        s.user = raw.trim();
        break;
      case "EXPOSE":
        s.expose.push(...words(raw));
        break;
      case "HEALTHCHECK": {
        const rest = flags(raw).rest;
        s.healthcheck = rest.startsWith("CMD") ? JSON.parse(rest.slice(3).trim()) : null;
        break;
      }
      case "ENTRYPOINT":
        s.entrypoint = JSON.parse(raw);
        break;
      case "CMD":
        s.cmd = JSON.parse(raw);
        break;
      case "STOPSIGNAL":
      case "LABEL":
        break;
      default:
        throw new Error(`Dockerfile instruction not emulated: ${op}`);
    }
  }
  return stages;
}

/** The image's node binary (/nodejs/bin/node in distroless) is this machine's Node here. */
const hostPath = (stage: Stage, exe: string) =>
  exe === "node" || exe.endsWith("/bin/node") ? process.execPath : inStage(stage, exe);

/** The runtime stage's ENV, with absolute paths moved into the stage directory. */
function runtimeEnv(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(stage.env))
    env[k] = v.startsWith("/") ? inStage(stage, v) : v;
  return env;
}

// --- the test -----------------------------------------------------------------------------------

describe("Dockerfile steps, run outside Docker from a clean copy", () => {
  const dockerfile = readFileSync(join(REPO, "Dockerfile"), "utf8");
  const instructions = parseDockerfile(dockerfile);
  const rules = parseDockerignore(readFileSync(join(REPO, ".dockerignore"), "utf8"));
  let work: string;
  let stages: Stage[] = [];
  let runtime: Stage;
  let cluster: PgCluster;
  let sidecar: SidecarProcess | null = null;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "pgsidecar-docker-steps-"));
    // The build context: the repository's files (tracked, or new and not git-ignored), minus
    // .dockerignore. No node_modules and no dist: a clean copy.
    const listed = await run(
      "git",
      ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
      {
        cwd: REPO,
      },
    );
    expect(listed.code, listed.stderr).toBe(0);
    const context = join(work, "context");
    for (const file of listed.stdout.split("\0")) {
      if (file === "" || ignored(rules, file) || !existsSync(join(REPO, file))) continue;
      mkdirSync(dirname(join(context, file)), { recursive: true });
      cpSync(join(REPO, file), join(context, file));
    }
    stages = build(instructions, context, join(work, "fs"));
    runtime = stages[stages.length - 1];
    cluster = await startCluster();
  }, 900_000);
  afterAll(async () => {
    sidecar?.kill();
    await cluster?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("sends only the sources to the builder (.dockerignore)", () => {
    for (const p of [
      "node_modules/pg/package.json",
      "dist/cli.js",
      ".git/HEAD",
      "test/unit/x.ts",
      ".env",
      "tmp/ci/test.log",
      "helm/pgsidecar/values.yaml",
    ])
      expect(ignored(rules, p), p).toBe(true);
    for (const p of [
      "package.json",
      "package-lock.json",
      "tsconfig.json",
      "tsconfig.build.json",
      "src/cli.ts",
      "src/config/load.ts",
    ])
      expect(ignored(rules, p), p).toBe(false);
  });

  it("is multi-stage: builds on a slim Node LTS image, runs on distroless as a non-root user", () => {
    const nodeMajor = Number(/^ARG NODE_MAJOR=(\d+)$/m.exec(dockerfile)?.[1]);
    console.log(
      `image Node line ${nodeMajor} (NODE_MAJOR); emulated with this machine's Node ${process.version}`,
    );
    expect(nodeMajor % 2, "an LTS line is even").toBe(0);
    expect(nodeMajor).toBeGreaterThanOrEqual(24);
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages.slice(0, -1))
      expect(s.image).toMatch(new RegExp(`^node:${nodeMajor}-.*slim$`));
    expect(runtime.image).toMatch(
      new RegExp(`^gcr\\.io/distroless/nodejs${nodeMajor}-debian\\d+:nonroot$`),
    );
    expect(runtime.runs, "nothing runs in the runtime stage (no shell there)").toEqual([]);
    // `docker run image --upstream ...` and a pod's args replace CMD: they must reach the CLI.
    expect(runtime.entrypoint.at(-1)).toBe("dist/cli.js");
    expect(runtime.user).toMatch(/^[1-9]\d*(:[1-9]\d*)?$|^nonroot/);
    expect(runtime.expose).toEqual(expect.arrayContaining(["6432", "9930"]));
    expect(runtime.healthcheck).not.toBeNull();
    expect(JSON.stringify(runtime.healthcheck)).not.toMatch(/curl|wget/);
    // A dev-dependency install in the build stage; production only in what the runtime copies.
    expect(stages.some((s) => s.runs.some((r) => /^npm ci(?!.*--omit=dev)/.test(r)))).toBe(true);
    expect(stages.some((s) => s.runs.some((r) => /^npm ci .*--omit=dev/.test(r)))).toBe(true);
  });

  it("lays out production dependencies only in the runtime stage", () => {
    const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8"));
    const modules = inStage(runtime, "node_modules");
    for (const dep of Object.keys(pkg.dependencies ?? {}))
      expect(existsSync(join(modules, dep)), dep).toBe(true);
    for (const dep of Object.keys(pkg.devDependencies ?? {}))
      expect(existsSync(join(modules, dep)), `dev dependency ${dep}`).toBe(false);
    expect(existsSync(inStage(runtime, "dist/cli.js"))).toBe(true);
    expect(existsSync(inStage(runtime, "src"))).toBe(false);
  });

  it("its default config listens on the container's interfaces (check-config with the image's ENV)", async () => {
    const [exe, ...entry] = [...runtime.entrypoint, ...runtime.cmd];
    const r = await run(
      hostPath(runtime, exe),
      [...entry, "check-config", "--upstream", "postgres://app@db.internal:5432/app"],
      { cwd: inStage(runtime, "."), env: { PATH: process.env.PATH, ...runtimeEnv(runtime) } },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^listen = 0\.0\.0\.0:6432$/m);
    expect(r.stdout).toMatch(/^http_listen = 0\.0\.0\.0:9930$/m);
  });

  it("starts from ENTRYPOINT + CMD, serves the examples/connect clients, passes its HEALTHCHECK, and exits 0 on SIGTERM", async () => {
    const [exe, script, ...rest] = [...runtime.entrypoint, ...runtime.cmd];
    const cwd = inStage(runtime, ".");
    // Loopback ports chosen by the OS instead of the image's 0.0.0.0:6432 / :9930 (a shared machine).
    sidecar = await spawnSidecar(
      [
        ...rest,
        "--upstream",
        cluster.url({ database: "postgres" }),
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
      ],
      { node: hostPath(runtime, exe), script: join(cwd, script), cwd, env: runtimeEnv(runtime) },
    );
    const c = new pg.Client({
      host: "127.0.0.1",
      port: sidecar.port,
      user: cluster.superuser,
      password: cluster.password,
      database: "postgres",
    });
    await c.connect();
    expect((await c.query("SELECT $1::int + 1 AS n", [41])).rows).toEqual([{ n: 42 }]);
    await c.end();

    // The connection examples of examples/connect, pointed at this sidecar as their READMEs say.
    const url = `postgres://${cluster.superuser}@127.0.0.1:${sidecar.port}/postgres`;
    const exampleEnv = { DATABASE_URL: url, PGPASSWORD: cluster.password };
    const node = await run(
      process.execPath,
      [join(REPO, "examples", "connect", "node-postgres.mjs")],
      {
        env: { ...process.env, ...exampleEnv },
      },
    );
    expect(node.code, node.stderr).toBe(0);
    expect(node.stdout).toMatch(/node-postgres: transaction ok, sum 42/);
    const py = await python3Psycopg(
      readFileSync(join(REPO, "examples", "connect", "psycopg_example.py"), "utf8"),
      {
        ...exampleEnv,
        DATABASE_URL: `${url.replace("postgres://", "postgresql://")}?sslmode=disable`,
      },
    );
    expect(py.code, py.stderr).toBe(0);
    expect(py.stdout).toMatch(/psycopg: transaction ok, sum 42/);
    expect(py.stdout).toMatch(/psycopg pool: ok 1/);

    const [hcExe, ...hcArgs] = runtime.healthcheck as string[];
    const healthcheck = () =>
      run(hostPath(runtime, hcExe), hcArgs, {
        env: {
          PATH: process.env.PATH,
          PGSIDECAR_HEALTHCHECK_URL: `http://127.0.0.1:${sidecar?.httpPort}/healthz`,
        },
        timeoutMs: 10_000,
      });
    expect((await healthcheck()).code).toBe(0);

    sidecar.signal("SIGTERM");
    const exit = await sidecar.exited;
    expect(exit, sidecar.output()).toMatchObject({ code: 0, signal: null });
    expect((await healthcheck()).code).toBe(1);
  });
});
