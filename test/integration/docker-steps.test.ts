// The Dockerfile without Docker: no engine runs on the CI machines, so this parses the Dockerfile
// (dockerfile-ast), copies the build context that .dockerignore lets through (@balena/dockerignore)
// into a clean directory, runs each stage's RUN steps there, lays out the runtime stage as its
// COPY lines say (test/helpers/dockerfile.ts), starts its ENTRYPOINT + CMD with its ENV, then runs
// its HEALTHCHECK. The base images' Node is this machine's Node (the image pins the LTS line in
// NODE_MAJOR; the test prints both).
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildStages,
  dockerignore,
  globalArg,
  hostPath,
  inStage,
  parseDockerfile,
  type Stage,
  stageEnv,
} from "../helpers/dockerfile.js";
import { REPO, type SidecarProcess, spawnSidecar } from "../helpers/lifecycle-process.js";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { python3Psycopg, run } from "../helpers/processes.js";

// --- the test -----------------------------------------------------------------------------------

describe("the Dockerfile reader (test/helpers/dockerfile.ts)", () => {
  const build = (text: string) => {
    const work = mkdtempSync(join(tmpdir(), "pgsidecar-dockerfile-"));
    try {
      return buildStages(parseDockerfile(text), work, join(work, "fs"));
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  };

  it("expands build arguments, keeps exec-form words whole, joins continuations, copies between stages", () => {
    const work = mkdtempSync(join(tmpdir(), "pgsidecar-dockerfile-"));
    try {
      const text = [
        "ARG BASE=alpine",
        "FROM $BASE:3 AS one",
        "WORKDIR /w",
        'ENV GREETING="hello  world"',
        `RUN ["sh", "-c", "printf '%s' \\"$GREETING\\" > out.txt"]`,
        "RUN printf '%s\\n' a \\",
        "      b > lines.txt",
        "FROM scratch",
        "COPY --from=one /w/out.txt /w/lines.txt ./",
        'CMD ["cat", "out.txt"]',
      ].join("\n");
      const [one, two] = buildStages(parseDockerfile(text), work, join(work, "fs"));
      expect(one.image).toBe("alpine:3");
      expect(one.env).toEqual({ GREETING: "hello  world" });
      expect(readFileSync(inStage(one, "out.txt"), "utf8")).toBe("hello  world");
      expect(readFileSync(inStage(two, "lines.txt"), "utf8")).toBe("a\nb\n");
      expect(readFileSync(inStage(two, "out.txt"), "utf8")).toBe("hello  world");
      expect(two.cmd).toEqual(["cat", "out.txt"]);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it("refuses what it cannot carry out as Docker would", () => {
    const refusals: Array<[string, RegExp]> = [
      ["FROM a\nCOPY --from=nope x ./", /no stage nope/],
      ["FROM a\nRUN --mount=type=bind,target=/x true", /RUN --mount/],
      ["FROM a\nRUN <<EOF\ntrue\nEOF", /heredocs/],
      ["FROM a\nENV B=$A", /variables in ENV/],
      ["FROM a\nADD x y", /ADD is not carried out/],
      ["FROM a\nRUN cat /etc/hostname", /absolute path/],
      ["FROM a\nRUN false", /failed: 1/],
    ];
    for (const [text, error] of refusals) expect(() => build(text), text).toThrow(error);
  });
});

describe("Dockerfile steps, run outside Docker from a clean copy", () => {
  const dockerfile = parseDockerfile(readFileSync(join(REPO, "Dockerfile"), "utf8"));
  const ignored = dockerignore(readFileSync(join(REPO, ".dockerignore"), "utf8"));
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
      if (file === "" || ignored(file) || !existsSync(join(REPO, file))) continue;
      mkdirSync(dirname(join(context, file)), { recursive: true });
      cpSync(join(REPO, file), join(context, file));
    }
    stages = buildStages(dockerfile, context, join(work, "fs"));
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
      expect(ignored(p), p).toBe(true);
    for (const p of [
      "package.json",
      "package-lock.json",
      "tsconfig.json",
      "tsconfig.build.json",
      "src/cli.ts",
      "src/config/load.ts",
    ])
      expect(ignored(p), p).toBe(false);
  });

  it("is multi-stage: builds on a slim Node LTS image, runs on distroless as a non-root user", () => {
    const nodeMajor = Number(globalArg(dockerfile, "NODE_MAJOR"));
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
      { cwd: inStage(runtime, "."), env: { PATH: process.env.PATH, ...stageEnv(runtime) } },
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
      { node: hostPath(runtime, exe), script: join(cwd, script), cwd, env: stageEnv(runtime) },
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

    const [hcExe, ...hcArgs] = runtime.healthcheck?.cmd ?? [];
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
