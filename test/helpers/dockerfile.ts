// A Dockerfile carried out without Docker (no engine runs on the CI machines): dockerfile-ast
// parses the Dockerfile (instructions, flags such as --from and --mount, ARG and ENV expansion in
// FROM, WORKDIR, COPY, USER, EXPOSE), @balena/dockerignore applies .dockerignore with Docker's
// matching rules to the build context. buildStages() then runs each stage's RUN steps in a
// directory of its own, copies files as COPY says (from the context or an earlier stage), and
// records WORKDIR, ENV, USER, EXPOSE, HEALTHCHECK, ENTRYPOINT and CMD, so a test can start what the
// runtime stage describes with this machine's Node. What this cannot carry out the same way
// (heredocs, ENV values with variables, RUN mounts other than caches, absolute paths in RUN,
// COPY wildcards) fails loudly rather than run differently.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import {
  type Copy,
  type Dockerfile,
  DockerfileParser,
  type Env,
  type From,
  type Healthcheck,
  type Instruction,
  type JSONInstruction,
  type ModifiableInstruction,
  type Run,
  type Workdir,
} from "dockerfile-ast";

export interface Stage {
  name: string;
  /** The base image, build arguments expanded. */
  image: string;
  /** This stage's filesystem root on this machine. */
  root: string;
  workdir: string;
  env: Record<string, string>;
  user: string | null;
  expose: string[];
  healthcheck: { flags: Record<string, string>; cmd: string[] } | null;
  entrypoint: string[];
  cmd: string[];
  /** The RUN commands, as the shell got them. */
  runs: string[];
}

export function parseDockerfile(text: string): Dockerfile {
  return DockerfileParser.parse(text);
}

/** The value of a global ARG (one before the first FROM), as the Dockerfile sets it. */
export function globalArg(dockerfile: Dockerfile, name: string): string | null | undefined {
  return dockerfile
    .getInitialARGs()
    .map((a) => a.getProperty())
    .find((p) => p?.getName() === name)
    ?.getValue();
}

/** .dockerignore's decision for a context path ("src/cli.ts"): true when Docker leaves it out. */
export function dockerignore(text: string): (path: string) => boolean {
  // A CommonJS module whose module.exports is the factory (its types declare a default export).
  const ignore = createRequire(import.meta.url)(
    "@balena/dockerignore",
  ) as typeof import("@balena/dockerignore")["default"];
  const rules = ignore({ ignorecase: false }).add(text);
  return (path) => rules.ignores(path);
}

/** A path inside a stage's filesystem. */
export const inStage = (stage: Stage, p: string) =>
  p.startsWith("/") ? join(stage.root, p) : join(stage.root, stage.workdir, p);

/** The image's node binary (/nodejs/bin/node in distroless) is this machine's Node here. */
export const hostPath = (stage: Stage, exe: string) =>
  exe === "node" || exe.endsWith("/bin/node") ? process.execPath : inStage(stage, exe);

/** The stage's ENV, with absolute paths moved into the stage directory. */
export function stageEnv(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(stage.env))
    env[k] = v.startsWith("/") ? inStage(stage, v) : v;
  return env;
}

/** Exec form: a JSON array of strings (dockerfile-ast's getJSONStrings() drops their spaces). */
function execForm(text: string, where: string): string[] {
  const value: unknown = JSON.parse(text);
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string"))
    throw new Error(`${where}: exec form must be a JSON array of strings: ${text}`);
  return value;
}

/** ENTRYPOINT, CMD: exec form as written, shell form through /bin/sh -c as Docker runs it. */
function command(ins: JSONInstruction): string[] {
  const text = ins.getArgumentsContent() ?? "";
  if (ins.getOpeningBracket() !== null) return execForm(text, ins.getKeyword());
  return ["/bin/sh", "-c", text];
}

const flagsOf = (ins: ModifiableInstruction) =>
  Object.fromEntries(ins.getFlags().map((f) => [f.getName(), f.getValue() ?? ""]));

/** What one line of the Dockerfile says, for error messages. */
const at = (ins: Instruction) => `line ${ins.getRange().start.line + 1}: ${ins.toString()}`;

/** Runs the Dockerfile's stages under `work`, with `context` as the build context. */
export function buildStages(dockerfile: Dockerfile, context: string, work: string): Stage[] {
  const stages: Stage[] = [];
  let stage: Stage | null = null;
  for (const ins of dockerfile.getInstructions()) {
    const keyword = ins.getKeyword();
    const expanded = ins.getExpandedArguments().map((a) => a.getValue());
    if (keyword === "ARG") continue; // dockerfile-ast resolves ARGs where they are used
    if (keyword === "FROM") {
      const from = ins as From;
      const name = from.getBuildStage() ?? String(stages.length);
      stage = {
        name,
        image: expanded[0],
        root: join(work, `stage-${stages.length}-${name}`),
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
    if (stage === null) throw new Error(`${at(ins)}: before FROM`);
    const s: Stage = stage;
    switch (keyword) {
      case "WORKDIR": {
        const dir = (ins as Workdir).getAbsolutePath();
        if (!dir) throw new Error(`${at(ins)}: no absolute path`);
        s.workdir = dir;
        mkdirSync(join(s.root, s.workdir), { recursive: true });
        break;
      }
      case "ENV":
        for (const p of (ins as Env).getProperties()) {
          const value = p.getValue() ?? "";
          if (value.includes("$"))
            throw new Error(`${at(ins)}: variables in ENV values are not expanded here`);
          s.env[p.getName()] = value;
        }
        break;
      case "COPY":
        copy(ins as Copy, expanded, s, stages, context);
        break;
      case "RUN":
        run(ins as Run, s);
        break;
      case "USER":
        s.user = expanded[0];
        break;
      case "EXPOSE":
        s.expose.push(...expanded);
        break;
      case "HEALTHCHECK": {
        const hc = ins as Healthcheck;
        const sub = hc.getSubcommand();
        if (sub?.getValue().toUpperCase() === "NONE") s.healthcheck = null;
        else if (sub?.getValue().toUpperCase() === "CMD") {
          const content = hc.getArgumentsContent() ?? "";
          const rest = content.slice(content.indexOf(sub.getValue()) + sub.getValue().length);
          s.healthcheck = { flags: flagsOf(hc), cmd: execForm(rest.trim(), "HEALTHCHECK CMD") };
        } else throw new Error(`${at(ins)}: HEALTHCHECK needs CMD or NONE`);
        break;
      }
      case "ENTRYPOINT":
        s.entrypoint = command(ins as JSONInstruction);
        break;
      case "CMD":
        s.cmd = command(ins as JSONInstruction);
        break;
      case "STOPSIGNAL":
      case "LABEL":
        break;
      default:
        throw new Error(`${at(ins)}: ${keyword} is not carried out outside Docker`);
    }
  }
  return stages;
}

function copy(ins: Copy, args: string[], s: Stage, stages: Stage[], context: string): void {
  const flags = flagsOf(ins);
  for (const f of Object.keys(flags))
    if (!["from", "chown", "chmod", "link"].includes(f))
      throw new Error(`${at(ins)}: COPY --${f} is not carried out outside Docker`);
  if (ins.getHeredocs().length > 0) throw new Error(`${at(ins)}: COPY heredocs are not supported`);
  const fromName = ins.getFromFlag()?.getValue() ?? null;
  const fromStage = fromName === null ? undefined : stages.find((x) => x.name === fromName);
  if (fromName !== null && !fromStage) throw new Error(`${at(ins)}: no stage ${fromName}`);
  const sources = args.slice(0, -1);
  const dest = args[args.length - 1];
  const toDir = dest.endsWith("/") || sources.length > 1;
  for (const src of sources) {
    if (/[*?[]/.test(src)) throw new Error(`${at(ins)}: COPY wildcards are not supported`);
    const from = fromStage ? inStage(fromStage, src) : join(context, src);
    if (!existsSync(from)) throw new Error(`${at(ins)}: ${src} is not in ${fromName ?? "context"}`);
    const to = inStage(s, dest);
    if (statSync(from).isDirectory()) cpSync(from, to, { recursive: true });
    else {
      const target = toDir ? join(to, basename(src)) : to;
      mkdirSync(dirname(target), { recursive: true });
      cpSync(from, target);
    }
  }
}

function run(ins: Run, s: Stage): void {
  for (const f of ins.getFlags()) {
    // A cache mount only speeds up npm; any other mount or flag would change what runs.
    const cache = f.getName() === "mount" && f.getOption("type")?.getValue() === "cache";
    if (!cache) throw new Error(`${at(ins)}: RUN --${f.getName()} is not carried out here`);
  }
  if (ins.getHeredocs().length > 0) throw new Error(`${at(ins)}: RUN heredocs are not supported`);
  const text = ins.getArgumentsContent() ?? "";
  const exec = ins.getOpeningBracket() !== null;
  const argv = exec ? execForm(text, "RUN") : ["sh", "-c", text];
  // Carried out on this machine's filesystem: an absolute path would leave the stage directory.
  if (argv.some((a) => /(^|[\s'"=>])\/[A-Za-z]/.test(a)))
    throw new Error(`${at(ins)}: RUN uses an absolute path, which cannot be confined here`);
  s.runs.push(exec ? argv.join(" ") : text);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith("PGSIDECAR_") && !k.startsWith("npm_")) env[k] = v;
  Object.assign(env, s.env, {
    // The same commands; only npm's cache policy differs (no network when the cache has it).
    npm_config_prefer_offline: "true",
    npm_config_update_notifier: "false",
  });
  const r = spawnSync(argv[0], argv.slice(1), {
    cwd: join(s.root, s.workdir),
    env,
    encoding: "utf8",
    timeout: 300_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0)
    throw new Error(
      `${at(ins)} (stage ${s.name}) failed: ${r.status ?? r.signal}\n${r.stdout}\n${r.stderr}`,
    );
}
