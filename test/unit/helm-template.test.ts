// Renders the chart without helm (absent from these machines) through a small Go-template
// interpreter that covers what helm/pgsidecar and examples/langgraph/chart use (text/template
// actions, trim markers, variables, and the Sprig/Helm functions called there), then checks the
// objects: they parse, names and references line up, the rendered sidecar config loads with the
// sidecar's own loader and repeats none of its defaults. `helm template` stays the authority: the
// helm-chart test runs it when helm is on PATH. An action or function outside that subset fails
// the test, so a template change cannot silently fall outside what this checks.
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments, stringify } from "yaml";
import { loadConfig } from "../../src/config/load.js";
import { SETTINGS, type SettingKey } from "../../src/config/schema.js";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CHART = join(REPO, "helm", "pgsidecar");
const PARENT = join(REPO, "examples", "langgraph", "chart");

// --- a Go text/template subset ------------------------------------------------------------------

type Value = unknown;
type Obj = Record<string, Value>;
const isObj = (x: Value): x is Obj => typeof x === "object" && x !== null && !Array.isArray(x);

type Node =
  | { k: "text"; s: string }
  | { k: "action"; p: Pipeline }
  | { k: "if"; cond: Pipeline; body: Node[]; else: Node[] }
  | { k: "with"; p: Pipeline; body: Node[]; else: Node[] }
  | { k: "range"; vars: string[]; p: Pipeline; body: Node[]; else: Node[] };

interface Pipeline {
  decl: { vars: string[]; op: ":=" | "=" } | null;
  cmds: Token[][];
}

type Token =
  | { t: "str"; v: string }
  | { t: "num"; v: number }
  | { t: "ident"; v: string }
  | { t: "field"; path: string[] }
  | { t: "var"; name: string; path: string[] }
  | { t: "paren"; p: Pipeline; path: string[] }
  | { t: "pipe" }
  | { t: "decl"; op: ":=" | "=" }
  | { t: "comma" };

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const fields = (): string[] => {
    const path: string[] = [];
    while (src[i] === "." && /[A-Za-z_]/.test(src[i + 1] ?? "")) {
      i++;
      const m = /^[A-Za-z0-9_]+/.exec(src.slice(i)) as RegExpExecArray;
      path.push(m[0]);
      i += m[0].length;
    }
    return path;
  };
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) i++;
    else if (c === '"') {
      let j = i + 1;
      while (src[j] !== '"') j += src[j] === "\\" ? 2 : 1;
      out.push({ t: "str", v: JSON.parse(src.slice(i, j + 1)) });
      i = j + 1;
    } else if (c === "`") {
      const j = src.indexOf("`", i + 1);
      out.push({ t: "str", v: src.slice(i + 1, j) });
      i = j + 1;
    } else if (/[0-9-]/.test(c) && /[0-9]/.test(src[i + 1] ?? c)) {
      const m = /^-?[0-9]+(\.[0-9]+)?/.exec(src.slice(i)) as RegExpExecArray;
      out.push({ t: "num", v: Number(m[0]) });
      i += m[0].length;
    } else if (c === "$") {
      const m = /^\$[A-Za-z0-9_]*/.exec(src.slice(i)) as RegExpExecArray;
      i += m[0].length;
      out.push({ t: "var", name: m[0], path: fields() });
    } else if (c === ".") {
      if (/[A-Za-z_]/.test(src[i + 1] ?? "")) out.push({ t: "field", path: fields() });
      else {
        i++;
        out.push({ t: "field", path: [] });
      }
    } else if (c === "(") {
      let depth = 1;
      let j = i + 1;
      let quote: string | null = null;
      for (; depth > 0; j++) {
        const d = src[j];
        if (quote) {
          if (d === "\\" && quote === '"') j++;
          else if (d === quote) quote = null;
        } else if (d === '"' || d === "`") quote = d;
        else if (d === "(") depth++;
        else if (d === ")") depth--;
      }
      const inner = parsePipeline(tokenize(src.slice(i + 1, j - 1)));
      i = j;
      out.push({ t: "paren", p: inner, path: fields() });
    } else if (c === "|") {
      out.push({ t: "pipe" });
      i++;
    } else if (c === ":" && src[i + 1] === "=") {
      out.push({ t: "decl", op: ":=" });
      i += 2;
    } else if (c === "=") {
      out.push({ t: "decl", op: "=" });
      i++;
    } else if (c === ",") {
      out.push({ t: "comma" });
      i++;
    } else {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i));
      if (!m) throw new Error(`template: unexpected "${src.slice(i, i + 20)}"`);
      out.push({ t: "ident", v: m[0] });
      i += m[0].length;
    }
  }
  return out;
}

function parsePipeline(tokens: Token[]): Pipeline {
  let decl: Pipeline["decl"] = null;
  const d = tokens.findIndex((t) => t.t === "decl");
  let rest = tokens;
  if (d >= 0) {
    const vars = tokens
      .slice(0, d)
      .filter((t) => t.t === "var")
      .map((t) => (t as { name: string }).name);
    decl = { vars, op: (tokens[d] as { op: ":=" | "=" }).op };
    rest = tokens.slice(d + 1);
  }
  const cmds: Token[][] = [[]];
  for (const t of rest) {
    if (t.t === "pipe") cmds.push([]);
    else cmds[cmds.length - 1].push(t);
  }
  return { decl, cmds };
}

/** text/template's lexing of {{ }} with trim markers, then the block structure. */
function parseTemplate(text: string, defines: Map<string, Node[]>): Node[] {
  const items: Array<{ text: string } | { action: string }> = [];
  let pos = 0;
  let trimNext = false;
  while (pos < text.length) {
    const open = text.indexOf("{{", pos);
    let chunk = open < 0 ? text.slice(pos) : text.slice(pos, open);
    if (trimNext) chunk = chunk.replace(/^\s+/, "");
    if (open < 0) {
      items.push({ text: chunk });
      break;
    }
    const trimLeft = text.startsWith("{{- ", open) || text.startsWith("{{-\n", open);
    if (trimLeft) chunk = chunk.replace(/\s+$/, "");
    items.push({ text: chunk });
    let start = open + (trimLeft ? 3 : 2);
    let close: number;
    if (text.slice(start).trimStart().startsWith("/*")) {
      close = text.indexOf("*/", start) + 2;
      close = text.indexOf("}}", close);
      start = close; // a comment: no action
    } else {
      // The closing }} of this action, outside string literals.
      let j = start;
      let quote: string | null = null;
      for (; ; j++) {
        const c = text[j];
        if (quote) {
          if (c === "\\" && quote === '"') j++;
          else if (c === quote) quote = null;
        } else if (c === '"' || c === "`") quote = c;
        else if (c === "}" && text[j + 1] === "}") break;
      }
      close = j;
    }
    const trimRight = text[close - 1] === "-" && /\s/.test(text[close - 2] ?? "");
    const body = text.slice(start, trimRight ? close - 1 : close).trim();
    if (body !== "") items.push({ action: body });
    trimNext = trimRight;
    pos = close + 2;
  }

  let idx = 0;
  const block = (stop: RegExp): { nodes: Node[]; end: string } => {
    const nodes: Node[] = [];
    while (idx < items.length) {
      const item = items[idx++];
      if ("text" in item) {
        if (item.text) nodes.push({ k: "text", s: item.text });
        continue;
      }
      const a = item.action;
      if (stop.test(a)) return { nodes, end: a };
      const kw = /^(if|with|range|define)\s+([\s\S]*)$/.exec(a);
      if (kw?.[1] === "define") {
        const name = JSON.parse(kw[2].trim());
        defines.set(name, block(/^end$/).nodes);
      } else if (kw?.[1] === "if") {
        nodes.push(ifNode(kw[2]));
      } else if (kw?.[1] === "with" || kw?.[1] === "range") {
        const inner = block(/^(end|else)$/);
        const alt = inner.end === "else" ? block(/^end$/).nodes : [];
        const p = parsePipeline(tokenize(kw[2]));
        if (kw[1] === "with") nodes.push({ k: "with", p, body: inner.nodes, else: alt });
        else
          nodes.push({
            k: "range",
            vars: p.decl?.vars ?? [],
            p: { decl: null, cmds: p.cmds },
            body: inner.nodes,
            else: alt,
          });
      } else if (/^(end|else)\b/.test(a)) {
        throw new Error(`template: unexpected {{ ${a} }}`);
      } else nodes.push({ k: "action", p: parsePipeline(tokenize(a)) });
    }
    return { nodes, end: "" };
  };
  const ifNode = (cond: string): Node => {
    const then = block(/^(end|else)(\s+if\s[\s\S]*)?$/);
    let alt: Node[] = [];
    const elseIf = /^else\s+if\s+([\s\S]*)$/.exec(then.end);
    if (elseIf) alt = [ifNode(elseIf[1])];
    else if (then.end === "else") alt = block(/^end$/).nodes;
    return { k: "if", cond: parsePipeline(tokenize(cond)), body: then.nodes, else: alt };
  };
  return block(/^\0$/).nodes;
}

function truthy(v: Value): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === "") return false;
  if (Array.isArray(v)) return v.length > 0;
  if (isObj(v)) return Object.keys(v).length > 0;
  return true;
}

function goString(v: Value): string {
  if (v === null || v === undefined) return ""; // Helm prints "<no value>" as ""
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  throw new Error(`template: printing a ${Array.isArray(v) ? "list" : "map"}`);
}

class Scope {
  private vars = new Map<string, Value>();
  constructor(private readonly parent: Scope | null) {}
  declare(name: string, v: Value) {
    this.vars.set(name, v);
  }
  assign(name: string, v: Value) {
    for (let s: Scope | null = this; s; s = s.parent)
      if (s.vars.has(name)) {
        s.vars.set(name, v);
        return;
      }
    throw new Error(`template: undefined variable ${name}`);
  }
  get(name: string): Value {
    for (let s: Scope | null = this; s; s = s.parent) if (s.vars.has(name)) return s.vars.get(name);
    throw new Error(`template: undefined variable ${name}`);
  }
}

class RenderError extends Error {}

/** Go's url.QueryEscape. */
function queryEscape(s: string): string {
  return encodeURIComponent(s)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, "+");
}

function dig(v: Value, path: string[]): Value {
  let cur = v;
  for (const f of path) {
    if (cur === null || cur === undefined)
      throw new RenderError(`nil pointer evaluating .${path.join(".")}`);
    cur = isObj(cur) ? cur[f] : undefined;
  }
  return cur;
}

class Engine {
  readonly defines = new Map<string, Node[]>();
  readonly funcs: Record<string, (...a: Value[]) => Value>;

  constructor() {
    const num = (v: Value) => (typeof v === "number" ? v : Number(v ?? 0));
    this.funcs = {
      include: (name, ctx) => this.include(String(name), ctx),
      required: (msg, v) => {
        if (v === null || v === undefined || v === "") throw new RenderError(String(msg));
        return v;
      },
      fail: (msg) => {
        throw new RenderError(String(msg));
      },
      dict: (...a) => {
        const o: Obj = {};
        for (let i = 0; i < a.length; i += 2) o[String(a[i])] = a[i + 1];
        return o;
      },
      list: (...a) => a,
      append: (l, v) => [...((l as Value[]) ?? []), v],
      concat: (...ls) => ls.flatMap((l) => (l as Value[]) ?? []),
      set: (d, k, v) => {
        (d as Obj)[String(k)] = v;
        return d;
      },
      omit: (d, ...keys) =>
        Object.fromEntries(Object.entries(d as Obj).filter(([k]) => !keys.includes(k))),
      hasKey: (d, k) => isObj(d) && Object.hasOwn(d, String(k)),
      default: (def, v) => (truthy(v) ? v : def),
      toYaml: (v) =>
        stringify(v, { indentSeq: false, sortMapEntries: true, lineWidth: 0 }).replace(/\n$/, ""),
      nindent: (n, s) => `\n${this.funcs.indent(n, s)}`,
      indent: (n, s) =>
        String(s)
          .split("\n")
          .map((l) => " ".repeat(num(n)) + l)
          .join("\n"),
      quote: (v) => JSON.stringify(goString(v)),
      trunc: (n, s) => String(s).slice(0, num(n)),
      trimSuffix: (suf, s) =>
        String(s).endsWith(String(suf)) ? String(s).slice(0, -String(suf).length) : String(s),
      contains: (sub, s) => String(s).includes(String(sub)),
      printf: (fmt, ...a) => {
        let i = 0;
        return String(fmt).replace(/%[sdv%]/g, (m) =>
          m === "%%" ? "%" : m === "%d" ? String(Math.trunc(num(a[i++]))) : goString(a[i++]),
        );
      },
      split: (sep, s) =>
        Object.fromEntries(
          String(s)
            .split(String(sep))
            .map((p, i) => [`_${i}`, p]),
        ),
      urlParse: (s) => {
        const u = new URL(String(s));
        const userinfo = u.username + (u.password ? `:${u.password}` : "");
        return {
          scheme: u.protocol.replace(/:$/, ""),
          host: u.host,
          hostname: u.hostname,
          path: u.pathname,
          query: u.search.replace(/^\?/, ""),
          fragment: u.hash.replace(/^#/, ""),
          opaque: "",
          userinfo: decodeURIComponent(userinfo),
        };
      },
      urlquery: (s) => queryEscape(goString(s)),
      sha256sum: (s) => createHash("sha256").update(String(s)).digest("hex"),
      int: (v) => Math.trunc(num(v)),
      eq: (a, ...b) => b.some((x) => x === a),
      ne: (a, b) => a !== b,
      gt: (a, b) => num(a) > num(b),
      not: (v) => !truthy(v),
      and: (...a) => a.find((x) => !truthy(x)) ?? a[a.length - 1],
      or: (...a) => a.find((x) => truthy(x)) ?? a[a.length - 1],
      kindIs: (kind, v) => {
        const k =
          v === null || v === undefined
            ? "invalid"
            : Array.isArray(v)
              ? "slice"
              : isObj(v)
                ? "map"
                : typeof v === "string"
                  ? "string"
                  : typeof v === "boolean"
                    ? "bool"
                    : "float64";
        return k === kind;
      },
    };
  }

  load(text: string): Node[] {
    return parseTemplate(text, this.defines);
  }

  include(name: string, ctx: Value): string {
    const body = this.defines.get(name);
    if (!body) throw new RenderError(`no template "${name}"`);
    const scope = new Scope(null);
    scope.declare("$", ctx);
    return this.exec(body, ctx, scope);
  }

  render(nodes: Node[], ctx: Value): string {
    const scope = new Scope(null);
    scope.declare("$", ctx);
    return this.exec(nodes, ctx, scope);
  }

  private exec(nodes: Node[], dot: Value, scope: Scope): string {
    let out = "";
    for (const n of nodes) {
      switch (n.k) {
        case "text":
          out += n.s;
          break;
        case "action": {
          const v = this.pipeline(n.p, dot, scope);
          if (n.p.decl === null) out += goString(v);
          break;
        }
        case "if":
          out += truthy(this.pipeline(n.cond, dot, scope))
            ? this.exec(n.body, dot, new Scope(scope))
            : this.exec(n.else, dot, new Scope(scope));
          break;
        case "with": {
          const v = this.pipeline(n.p, dot, scope);
          out += truthy(v)
            ? this.exec(n.body, v, new Scope(scope))
            : this.exec(n.else, dot, new Scope(scope));
          break;
        }
        case "range": {
          const v = this.pipeline(n.p, dot, scope);
          const entries: Array<[Value, Value]> = Array.isArray(v)
            ? v.map((x, i) => [i, x])
            : isObj(v)
              ? Object.keys(v)
                  .sort()
                  .map((k) => [k, v[k]])
              : [];
          if (entries.length === 0) out += this.exec(n.else, dot, new Scope(scope));
          for (const [k, x] of entries) {
            const s = new Scope(scope);
            if (n.vars.length === 2) {
              s.declare(n.vars[0], k);
              s.declare(n.vars[1], x);
            } else if (n.vars.length === 1) s.declare(n.vars[0], x);
            out += this.exec(n.body, x, s);
          }
          break;
        }
      }
    }
    return out;
  }

  private pipeline(p: Pipeline, dot: Value, scope: Scope): Value {
    let v: Value;
    let first = true;
    for (const cmd of p.cmds) {
      v = this.command(cmd, dot, scope, first ? [] : [v]);
      first = false;
    }
    if (p.decl) {
      const name = p.decl.vars[0];
      if (p.decl.op === ":=") scope.declare(name, v);
      else scope.assign(name, v);
    }
    return v;
  }

  private operand(t: Token, dot: Value, scope: Scope): Value {
    switch (t.t) {
      case "str":
      case "num":
        return t.v;
      case "field":
        return dig(dot, t.path);
      case "var":
        return dig(scope.get(t.name), t.path);
      case "paren":
        return dig(this.pipeline(t.p, dot, scope), t.path);
      case "ident":
        if (t.v === "true") return true;
        if (t.v === "false") return false;
        if (t.v === "nil") return null;
        return this.call(t.v, []);
      default:
        throw new Error(`template: unexpected ${t.t}`);
    }
  }

  private call(name: string, args: Value[]): Value {
    const f = this.funcs[name];
    if (!f) throw new Error(`template: function "${name}" is not emulated`);
    return f(...args);
  }

  private command(cmd: Token[], dot: Value, scope: Scope, piped: Value[]): Value {
    const [head, ...rest] = cmd;
    if (head.t === "ident" && !["true", "false", "nil"].includes(head.v)) {
      return this.call(head.v, [...rest.map((t) => this.operand(t, dot, scope)), ...piped]);
    }
    if (head.t === "field" && rest.length + piped.length > 0) {
      // A method call: .Files.Get "path"
      const fn = dig(dot, head.path);
      if (typeof fn !== "function")
        throw new Error(`template: .${head.path.join(".")} is not a method`);
      return fn(...rest.map((t) => this.operand(t, dot, scope)), ...piped);
    }
    if (rest.length > 0) throw new Error("template: arguments to a non-function");
    return this.operand(head, dot, scope);
  }
}

// --- the chart ----------------------------------------------------------------------------------

type Values = Obj;

function coalesce(defaults: Values, user: Values): Values {
  const out: Values = structuredClone(defaults);
  for (const [k, v] of Object.entries(user)) {
    if (v === null) delete out[k];
    else if (isObj(v) && isObj(out[k])) out[k] = coalesce(out[k] as Values, v);
    else out[k] = structuredClone(v);
  }
  return out;
}

const readYaml = (p: string) => (parse(readFileSync(p, "utf8")) ?? {}) as Values;
const chartDefaults = readYaml(join(CHART, "values.yaml"));
const RELEASE = { Name: "demo", Namespace: "apps", Service: "Helm", IsInstall: true };

interface Rendered {
  /** Objects by "Kind/name". */
  objects: Map<string, Obj>;
  notes: string;
  /** The raw rendered YAML, by template file. */
  files: Map<string, string>;
}

function loadChart(engine: Engine, dir: string): Array<[string, Node[]]> {
  const templates: Array<[string, Node[]]> = [];
  for (const name of readdirSync(join(dir, "templates")).sort()) {
    const nodes = engine.load(readFileSync(join(dir, "templates", name), "utf8"));
    if (!name.startsWith("_")) templates.push([name, nodes]);
  }
  return templates;
}

function renderChart(
  dir: string,
  values: Values,
  opts: { files?: (path: string) => string; engine?: Engine } = {},
): Rendered {
  const engine = opts.engine ?? new Engine();
  const templates = loadChart(engine, dir);
  const filesGet =
    opts.files ??
    ((p: string) => {
      const f = join(dir, p);
      return existsSync(f) ? readFileSync(f, "utf8") : "";
    });
  const root = { Values: values, Release: RELEASE, Files: { Get: filesGet }, Capabilities: {} };
  const objects = new Map<string, Obj>();
  const files = new Map<string, string>();
  let notes = "";
  for (const [name, nodes] of templates) {
    const text = engine.render(nodes, root);
    if (name === "NOTES.txt") {
      notes = text;
      continue;
    }
    files.set(name, text);
    for (const doc of parseAllDocuments(text)) {
      if (doc.errors.length > 0) throw new Error(`${name}: ${doc.errors[0].message}\n${text}`);
      const o = doc.toJS() as Obj | null;
      if (o === null) continue;
      objects.set(`${o.kind}/${(o.metadata as Obj).name}`, o);
    }
  }
  return { objects, notes, files };
}

/** Renders the chart as a subchart of examples/langgraph/chart, whose templates include it. */
function renderParent(user: Values = {}): { parent: Rendered; sub: Rendered } {
  const parentValues = coalesce(readYaml(join(PARENT, "values.yaml")), user);
  parentValues.pgsidecar = coalesce(chartDefaults, (parentValues.pgsidecar as Values) ?? {});
  const engine = new Engine();
  loadChart(engine, CHART); // the subchart's named templates are global, as in helm
  const parent = renderChart(PARENT, parentValues, { engine });
  const sub = renderChart(CHART, parentValues.pgsidecar as Values);
  return { parent, sub };
}

// biome-ignore lint/suspicious/noExplicitAny: walking rendered manifests
type Any = any;

function byKind(r: Rendered, kind: string): Any[] {
  return [...r.objects.values()].filter((o) => o.kind === kind);
}

function podSpec(r: Rendered): Any {
  return byKind(r, "Deployment")[0].spec.template.spec;
}

function sidecarOf(spec: Any): Any {
  return [...(spec.initContainers ?? []), ...spec.containers].find(
    (c: Any) => c.name === "pgsidecar",
  );
}

/** The config file the pods mount: from the ConfigMap or Secret named *-config. */
function configText(r: Rendered): string {
  const o = [...r.objects.values()].find((x) =>
    String((x.metadata as Obj).name).endsWith("-config"),
  ) as Any;
  return o.kind === "Secret" ? o.stringData["pgsidecar.yaml"] : o.data["pgsidecar.yaml"];
}

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

function checkPod(spec: Any, config?: string) {
  const volumes = new Set(spec.volumes.map((v: Any) => v.name));
  for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
    const ports = new Set((c.ports ?? []).map((p: Any) => p.name));
    for (const m of c.volumeMounts ?? []) expect(volumes, `${c.name}: ${m.name}`).toContain(m.name);
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
      const port = c[probe]?.httpGet?.port;
      if (port !== undefined) expect(ports, `${c.name} ${probe}`).toContain(port);
    }
    for (const p of c.ports ?? []) expect(String(p.name).length).toBeLessThanOrEqual(15);
  }
  const sidecar = sidecarOf(spec);
  expect(sidecar.args).toEqual(["--config", "/etc/pgsidecar/pgsidecar.yaml"]);
  // The config file is where --config reads it, and each password_file is a Secret's mounted key.
  const mountOf = (path: string) =>
    sidecar.volumeMounts.find((m: Any) => path === `${m.mountPath}/${path.split("/").pop()}`);
  const configMount = mountOf("/etc/pgsidecar/pgsidecar.yaml");
  expect(configMount?.name).toBe("pgsidecar-config");
  if (config) {
    for (const u of (parse(config) as Any).users ?? []) {
      if (!u.password_file) continue;
      const mount = mountOf(u.password_file);
      expect(mount, `no volume mounted for ${u.password_file}`).toBeDefined();
      const volume = spec.volumes.find((v: Any) => v.name === mount.name);
      expect(volume.secret.items.map((i: Any) => i.path)).toContain(
        u.password_file.split("/").pop(),
      );
    }
  }
  expect(sidecar.securityContext.runAsNonRoot).toBe(true);
  expect(sidecar.securityContext.readOnlyRootFilesystem).toBe(true);
  // Each probe asks the endpoint made for it (src/admin/http.ts), on the HTTP port.
  expect(sidecar.startupProbe.httpGet).toEqual({ path: "/startup", port: "pgsidecar-http" });
  expect(sidecar.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "pgsidecar-http" });
  expect(sidecar.livenessProbe.httpGet).toEqual({ path: "/livez", port: "pgsidecar-http" });
}

const ci = (name: string) => readYaml(join(CHART, "ci", name));

describe("the template interpreter itself", () => {
  it("follows text/template on trim markers, else-if chains, scopes and pipelines", () => {
    const e = new Engine();
    const out = e.render(
      e.load(
        "{{- $x := 1 -}}\n a {{ if eq $x 2 }}two{{ else if eq $x 1 }}one{{ else }}none{{ end }}\n" +
          '{{- range $i, $v := list "p" "q" }} {{ $i }}={{ $v }}{{ end }}' +
          '{{ with .a }} {{ .b | default "d" | quote }}{{ end }}{{ $x = 3 }} {{ $x }}',
      ),
      { a: { b: "" } },
    );
    expect(out).toBe('a one 0=p 1=q "d" 3');
  });

  it("refuses functions it does not emulate", () => {
    const e = new Engine();
    expect(() => e.render(e.load("{{ tpl . }}"), {})).toThrow(/not emulated/);
  });
});

describe("helm/pgsidecar rendered without helm", () => {
  it("with its default values: only the ConfigMap, and NOTES warn that no upstream is set", () => {
    const r = renderChart(CHART, chartDefaults);
    expect([...r.objects.keys()]).toEqual(["ConfigMap/demo-pgsidecar-config"]);
    expect(r.notes).toMatch(/WARNING: no upstream is set/);
    expect(() => loadRendered(configText(r))).toThrow(/upstream is not set/);
  });

  for (const file of readdirSync(join(CHART, "ci")).sort()) {
    it(`ci/${file}: objects parse, names fit, the config loads and repeats no default`, () => {
      const values = coalesce(chartDefaults, ci(file));
      const r = renderChart(CHART, values);
      for (const [key, o] of r.objects) {
        expect(o.apiVersion, key).toBeTruthy();
        expect(String((o.metadata as Obj).name).length, key).toBeLessThanOrEqual(63);
      }
      expect(r.notes).not.toMatch(/WARNING/);
      const text = configText(r);
      const raw = parse(text) as Obj;
      const config = loadRendered(text);
      // Each key comes from a value the file set, or is one the chart decides (and then differs
      // from the sidecar's default): nothing repeats a default on the chart's own initiative.
      const fromValues: Record<string, Value> = {
        pool_mode: (values.pool as Any).mode,
        pool_size: (values.pool as Any).size,
        min_pool_size: (values.pool as Any).minSize,
        query_wait_timeout: (values.pool as Any).queryWaitTimeout,
        retry: (values.retry as Any).policy,
        retry_max: (values.retry as Any).max,
        retry_buffer_bytes: (values.retry as Any).bufferBytes,
        shutdown_timeout: (values.shutdown as Any).timeout,
        ...(values.config as Obj),
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
      const secret = (values.upstream as Any).existingSecret?.name;
      if (secret)
        expect(
          config.users.some((u) => u.name === Object.values(config.databases)[0].target.user),
        ).toBe(true);
      if (values.mode === "standalone") {
        const spec = podSpec(r);
        checkPod(spec, text);
        expect(sidecarOf(spec).restartPolicy).toBeUndefined();
        const service = byKind(r, "Service")[0];
        const podLabels = byKind(r, "Deployment")[0].spec.template.metadata.labels;
        for (const [k, v] of Object.entries(service.spec.selector)) expect(podLabels[k]).toBe(v);
        const ports = new Set(sidecarOf(spec).ports.map((p: Any) => p.name));
        for (const p of service.spec.ports) expect(ports).toContain(p.targetPort);
        expect(config.listen.host).toBe("0.0.0.0");
        // SIGKILL must not come before the drain can finish.
        expect(spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
          config.min_sigterm_delay + config.shutdown_timeout,
        );
        const annotation = byKind(r, "Deployment")[0].spec.template.metadata.annotations;
        expect(annotation["checksum/pgsidecar-config"]).toBe(
          createHash("sha256").update(textOfConfigTemplate(values)).digest("hex"),
        );
      } else {
        expect(byKind(r, "Deployment")).toEqual([]);
        // What a user's pod gets from the named templates.
        const engine = new Engine();
        loadChart(engine, CHART);
        const ctx = { Values: values, Release: RELEASE };
        const container = parse(engine.include("pgsidecar.sidecar", ctx));
        const native = (values.sidecar as Any).type === "native";
        const spec = {
          initContainers: native ? container : [],
          containers: native ? [{ name: "app" }] : [{ name: "app" }, ...container],
          volumes: parse(engine.include("pgsidecar.volumes", ctx)),
        };
        checkPod(spec, text);
        expect(container[0].restartPolicy).toBe(native ? "Always" : undefined);
        expect(parse(engine.include("pgsidecar.podAnnotations", ctx))).toEqual({
          "checksum/pgsidecar-config": createHash("sha256")
            .update(textOfConfigTemplate(values))
            .digest("hex"),
        });
        expect(config.listen).toEqual({ host: "127.0.0.1", port: 6432 });
      }
      expect(config.http_listen).toEqual({ host: "0.0.0.0", port: 9930 });
    });
  }

  it("puts a config holding a password into a Secret, and the pods mount the Secret", () => {
    const r = renderChart(CHART, coalesce(chartDefaults, ci("url-with-password-values.yaml")));
    expect(r.objects.has("Secret/demo-pgsidecar-config")).toBe(true);
    expect(r.objects.has("ConfigMap/demo-pgsidecar-config")).toBe(false);
    const volume = podSpec(r).volumes.find((v: Any) => v.name === "pgsidecar-config");
    expect(volume.secret.secretName).toBe("demo-pgsidecar-config");
    expect(r.notes).not.toMatch(/s3cret/);
  });

  it("probes: each can be turned off or tuned, and keeps its endpoint", () => {
    const engine = new Engine();
    loadChart(engine, CHART);
    const values = coalesce(chartDefaults, {
      ...ci("native-sidecar-values.yaml"),
      probes: { liveness: { enabled: false }, startup: { failureThreshold: 120 } },
    });
    const [c] = parse(engine.include("pgsidecar.sidecar", { Values: values, Release: RELEASE }));
    expect(c.livenessProbe).toBeUndefined();
    expect(c.startupProbe).toEqual({
      httpGet: { path: "/startup", port: "pgsidecar-http" },
      periodSeconds: 1,
      timeoutSeconds: 2,
      failureThreshold: 120,
    });
    expect(c.readinessProbe.httpGet.path).toBe("/readyz");
  });

  it("classic mode keeps accepting for minSigtermDelay; native mode sets no delay", () => {
    const classic = loadRendered(
      configText(renderChart(CHART, coalesce(chartDefaults, ci("classic-sidecar-values.yaml")))),
    );
    expect(classic.min_sigterm_delay).toBe(15_000);
    expect(classic.shutdown_timeout).toBe(20_000);
    expect(classic.log_level).toBe("warn");
    const native = loadRendered(
      configText(renderChart(CHART, coalesce(chartDefaults, ci("native-sidecar-values.yaml")))),
    );
    expect(native.min_sigterm_delay).toBe(0);
    expect(native.pool_size).toBe(10);
  });

  it("keeps 0 and false given under config (not dropped by a merge)", () => {
    const values = coalesce(chartDefaults, {
      ...ci("native-sidecar-values.yaml"),
      config: { server_lifetime: 0, readyz_checks_upstream: false, server_check_query: "" },
    });
    const raw = parse(configText(renderChart(CHART, values))) as Obj;
    expect(raw.server_lifetime).toBe(0);
    expect(raw.readyz_checks_upstream).toBe(false);
    expect(raw.server_check_query).toBe("");
  });

  it("renders the Grafana dashboard ConfigMap with Grafana's sidecar label, and tolerates its absence", () => {
    const values = coalesce(chartDefaults, ci("native-sidecar-values.yaml"));
    const r = renderChart(CHART, values);
    const cm = r.objects.get("ConfigMap/demo-pgsidecar-dashboard") as Any;
    if (existsSync(join(CHART, "files", "pgsidecar-dashboard.json"))) {
      expect(cm.metadata.labels.grafana_dashboard).toBe("1");
      expect(cm.metadata.namespace).toBe("monitoring");
      expect(JSON.parse(cm.data["pgsidecar-dashboard.json"]).panels.length).toBeGreaterThan(0);
    }
    const without = renderChart(CHART, values, { files: () => "" });
    expect(without.objects.has("ConfigMap/demo-pgsidecar-dashboard")).toBe(false);
    expect(without.notes).toMatch(/files\/pgsidecar-dashboard\.json is missing/);
  });

  it("monitoring: PodMonitor selects the sidecar label in sidecar mode; ServiceMonitor needs standalone", () => {
    const r = renderChart(CHART, coalesce(chartDefaults, ci("native-sidecar-values.yaml")));
    const pm = byKind(r, "PodMonitor")[0];
    expect(pm.spec.selector.matchLabels).toEqual({ "pgsidecar/instance": "demo-pgsidecar" });
    expect(pm.spec.podMetricsEndpoints[0].port).toBe("pgsidecar-http");
    const sm = byKind(
      renderChart(CHART, coalesce(chartDefaults, ci("standalone-values.yaml"))),
      "ServiceMonitor",
    )[0];
    expect(sm.spec.endpoints[0].port).toBe("http");
    expect(() =>
      renderChart(
        CHART,
        coalesce(chartDefaults, {
          ...ci("native-sidecar-values.yaml"),
          metrics: { serviceMonitor: { enabled: true } },
        }),
      ),
    ).toThrow(/serviceMonitor needs mode standalone/);
  });

  it("fails early on contradictory upstream values", () => {
    expect(() =>
      renderChart(
        CHART,
        coalesce(chartDefaults, { upstream: { url: "postgres://a@b/c", host: "b" } }),
      ),
    ).toThrow(/not both/);
    expect(() =>
      renderChart(CHART, coalesce(chartDefaults, { upstream: { host: "b", database: "c" } })),
    ).toThrow(/needs upstream.user/);
    expect(() =>
      renderChart(
        CHART,
        coalesce(chartDefaults, {
          upstream: { url: "postgres://db/app", existingSecret: { name: "s" } },
        }),
      ),
    ).toThrow(/needs the user name/);
  });
});

describe("examples/langgraph/chart: the named templates in a parent chart's pod", () => {
  it("native: pgsidecar is an init container with restartPolicy Always, wired to the subchart's ConfigMap", () => {
    const { parent, sub } = renderParent();
    const spec = podSpec(parent);
    checkPod(spec, configText(sub));
    const init = spec.initContainers.find((c: Any) => c.name === "pgsidecar");
    expect(init.restartPolicy).toBe("Always");
    expect(init.startupProbe.httpGet.path).toBe("/startup");
    expect(spec.containers.map((c: Any) => c.name)).toEqual(["agent"]);
    const cmName = spec.volumes.find((v: Any) => v.name === "pgsidecar-config").configMap.name;
    expect(sub.objects.has(`ConfigMap/${cmName}`)).toBe(true);
    // The checksum annotation is the hash of what the subchart's ConfigMap holds.
    const meta = byKind(parent, "Deployment")[0].spec.template.metadata;
    const engine = new Engine();
    loadChart(engine, CHART);
    const pgs = coalesce(chartDefaults, readYaml(join(PARENT, "values.yaml")).pgsidecar as Values);
    const expected = createHash("sha256")
      .update(engine.include("pgsidecar.config", { Values: pgs, Release: RELEASE }))
      .digest("hex");
    expect(meta.annotations["checksum/pgsidecar-config"]).toBe(expected);
    expect(meta.labels["pgsidecar/instance"]).toBe("demo-pgsidecar");
    const agent = spec.containers[0];
    expect(agent.env.find((e: Any) => e.name === "DATABASE_URL").value).toBe(
      "postgresql://langgraph@127.0.0.1:6432/langgraph?sslmode=disable",
    );
    const config = loadRendered(configText(sub));
    expect(config.databases.langgraph.target.host).toBe("postgres.databases.svc.cluster.local");
    expect(config.users.map((u) => u.name)).toEqual(["langgraph"]);
  });

  it("classic: pgsidecar is a container after the agent, without restartPolicy", () => {
    const { parent } = renderParent({ pgsidecar: { sidecar: { type: "classic" } } });
    const spec = podSpec(parent);
    checkPod(spec);
    expect(spec.initContainers).toBeUndefined();
    expect(spec.containers.map((c: Any) => c.name)).toEqual(["agent", "pgsidecar"]);
    expect(spec.containers[1].restartPolicy).toBeUndefined();
  });
});

/** The config text the chart's config.yaml embeds, rendered on its own (for the checksum check). */
function textOfConfigTemplate(values: Values): string {
  const engine = new Engine();
  loadChart(engine, CHART);
  return engine.include("pgsidecar.config", { Values: values, Release: RELEASE });
}
