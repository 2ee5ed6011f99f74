// Kubernetes objects checked offline against Kubernetes' own API schemas, as shipped by
// kubernetes-models (built-in kinds, generated from Kubernetes' OpenAPI document) and
// @kubernetes-models/prometheus-operator (PodMonitor, ServiceMonitor, from the operator's CRDs).
// Two checks of the same generated models:
// - validate(): the package's JSON-schema validator (types, enums, required fields);
// - the package's type declarations, with each object written as a literal that `satisfies` its
//   kind's interface and compiled by the TypeScript compiler: that is what rejects unknown fields,
//   because Kubernetes' OpenAPI schemas allow additional properties (the API server drops them;
//   kubectl's strict field validation asks a live server) and so validate() lets them through.
// An apiVersion/kind without a model is an error, never a skip.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface KubeObject {
  apiVersion?: unknown;
  kind?: unknown;
  metadata?: { name?: unknown } & Record<string, unknown>;
  [field: string]: unknown;
}

/** One object to check, and how to name it in an error (e.g. "ci/standalone-values.yaml"). */
export interface Checked {
  where: string;
  object: KubeObject;
}

/** The module of a kind's model: CRD groups come from their own packages. */
function modelModule(apiVersion: string, kind: string): string {
  if (apiVersion.startsWith("monitoring.coreos.com/"))
    return `@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`;
  return `kubernetes-models/${apiVersion}/${kind}`;
}

const nameOf = (o: KubeObject) => `${String(o.kind)}/${String(o.metadata?.name)}`;

/**
 * Every problem found in the objects, as "<where>: <Kind>/<name>: <message>"; [] when all pass.
 * Compiles all objects in one TypeScript run (about half a second).
 */
export async function kubeSchemaErrors(objects: readonly Checked[]): Promise<string[]> {
  const errors: string[] = [];
  const typed: Array<Checked & { module: string }> = [];
  for (const { where, object } of objects) {
    const label = `${where}: ${nameOf(object)}`;
    if (typeof object.apiVersion !== "string" || typeof object.kind !== "string") {
      errors.push(`${label}: no apiVersion/kind`);
      continue;
    }
    const module = modelModule(object.apiVersion, object.kind);
    let Model: (new (data: unknown) => { validate(): void }) | undefined;
    try {
      Model = (await import(module))[object.kind];
    } catch {
      Model = undefined;
    }
    if (typeof Model !== "function") {
      errors.push(`${label}: no schema for ${object.apiVersion} ${object.kind} (${module})`);
      continue;
    }
    try {
      new Model(object).validate();
    } catch (e) {
      errors.push(`${label}: ${(e as Error).message}`);
    }
    typed.push({ where, object, module });
  }
  errors.push(...typeErrors(typed));
  return errors;
}

/** Writes each object as `<literal> satisfies I<Kind>` and collects tsc's errors per object. */
function typeErrors(objects: ReadonlyArray<Checked & { module: string }>): string[] {
  if (objects.length === 0) return [];
  const modules = [...new Set(objects.map((o) => `${o.module}#${String(o.object.kind)}`))];
  const lines = modules.map((m, i) => {
    const [module, kind] = m.split("#");
    return `import type { I${kind} as T${i} } from ${JSON.stringify(module)};`;
  });
  const starts: number[] = [];
  objects.forEach(({ object, module }, i) => {
    starts.push(lines.length + 1);
    const t = modules.indexOf(`${module}#${String(object.kind)}`);
    const literal = JSON.stringify(object, null, 1).split("\n");
    literal[literal.length - 1] += ` satisfies T${t};`;
    lines.push(`export const o${i} = ${literal[0]}`, ...literal.slice(1));
  });
  const base = join(REPO, "tmp", "kube-schema");
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(join(base, "check-"));
  try {
    writeFileSync(join(dir, "objects.ts"), `${lines.join("\n")}\n`);
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          skipLibCheck: true,
          types: [],
        },
        files: ["objects.ts"],
      }),
    );
    const manifest = createRequire(import.meta.url).resolve("typescript/package.json");
    const { bin } = JSON.parse(readFileSync(manifest, "utf8")) as { bin: { tsc: string } };
    const tsc = join(dirname(manifest), bin.tsc);
    const r = spawnSync(process.execPath, [tsc, "-p", dir, "--pretty", "false"], {
      encoding: "utf8",
      timeout: 120_000,
    });
    if (r.status === 0) return [];
    const out: string[] = [];
    for (const m of `${r.stdout}${r.stderr}`.matchAll(/objects\.ts\((\d+),\d+\): (error .*)/g)) {
      const line = Number(m[1]);
      let i = starts.length - 1;
      while (i >= 0 && starts[i] > line) i--;
      if (i < 0) {
        out.push(`(imports): ${m[2]}`);
        continue;
      }
      const { where, object } = objects[i];
      const source = lines[line - 1]?.trim() ?? "";
      out.push(
        `${where}: ${nameOf(object)}: at \`${source.slice(0, 120)}\`: ${m[2].slice(0, 400)}`,
      );
    }
    if (out.length === 0)
      out.push(`tsc failed without a located error: ${r.error?.message ?? r.stdout + r.stderr}`);
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
