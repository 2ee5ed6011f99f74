// The npm package as a user gets it: built and packed from a staging copy of the repository, then
// installed into a scratch project. Staging keeps the repo's own dist/ untouched (other tests and
// processes may be running it) and free of stale files from earlier builds.
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./processes.js";

export const REPO = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
/** The repository's own TypeScript compiler. */
export const TSC = join(REPO, "node_modules/.bin/tsc");

export interface PackedPackage {
  /** Absolute path of the .tgz. */
  tarball: string;
  /** Paths inside the package, as `npm pack --json` lists them. */
  files: string[];
  /** Bytes of the .tgz and of its contents. */
  size: number;
  unpackedSize: number;
}

/** The child environment: this one without npm's per-run settings (npm test sets npm_config_*). */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return { ...env, ...extra };
}

async function must(what: string, cmd: string, args: string[], cwd: string, timeoutMs: number) {
  const r = await run(cmd, args, { cwd, env: cleanEnv(), timeoutMs });
  if (r.code !== 0) {
    const why = r.timedOut ? `timed out after ${timeoutMs} ms` : `exit ${r.code ?? r.signal}`;
    throw new Error(`${what}: ${why}\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
  }
  return r;
}

/**
 * Builds src/ with tsconfig.build.json (as `npm run build` does) into `work/stage/dist`, beside
 * copies of what npm always packs (package.json, README, LICENSE) and the `files` entries other
 * than dist, then `npm pack`s the stage into `work`.
 */
export async function packPackage(work: string): Promise<PackedPackage> {
  const stage = join(work, "stage");
  mkdirSync(stage, { recursive: true });
  const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8"));
  const copied = ["package.json", "README.md", "LICENSE", "LICENSE.md"];
  for (const entry of pkg.files as string[]) {
    if (!entry.startsWith("!") && entry !== "dist") copied.push(entry);
  }
  for (const p of copied) {
    if (existsSync(join(REPO, p))) cpSync(join(REPO, p), join(stage, p), { recursive: true });
  }
  await must(
    "tsc -p tsconfig.build.json",
    TSC,
    ["-p", "tsconfig.build.json", "--outDir", join(stage, "dist")],
    REPO,
    120_000,
  );
  const packed = await must(
    "npm pack",
    "npm",
    ["pack", "--json", "--ignore-scripts", "--pack-destination", work],
    stage,
    120_000,
  );
  const [info] = JSON.parse(packed.stdout) as Array<{
    filename: string;
    files: Array<{ path: string }>;
    size: number;
    unpackedSize: number;
  }>;
  return {
    tarball: join(work, info.filename),
    files: info.files.map((f) => f.path),
    size: info.size,
    unpackedSize: info.unpackedSize,
  };
}

/**
 * A scratch ESM project in `dir` with `deps` (tarball paths or name@version) installed by npm.
 * `--prefer-offline`: what the repo's own install put in the npm cache is used without asking the
 * registry again; anything missing is still fetched.
 */
export async function installScratchProject(
  dir: string,
  deps: string[],
  timeoutMs = 300_000,
): Promise<void> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "package.json"),
    `${JSON.stringify({ name: "pgsidecar-consumer", private: true, type: "module" }, null, 2)}\n`,
  );
  await must(
    "npm install",
    "npm",
    ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", ...deps],
    dir,
    timeoutMs,
  );
}
