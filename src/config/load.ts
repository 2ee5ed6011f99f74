// Layers defaults < YAML file < PGSIDECAR_* env < CLI flags into one validated, deep-frozen Config.

import { readFileSync } from "node:fs";
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { settingHint } from "./command-line.js";
import { ConfigError, type ConfigSource, sourceLabel } from "./config-error.js";
import { resolve } from "./resolve.js";
import {
  type Config,
  ENV_PREFIX,
  formatTarget,
  InvalidValue,
  type Mask,
  redactUrl,
  SETTING_LIST,
  SETTINGS,
  type Setting,
  type SettingKey,
} from "./schema.js";

export { buildCliOptions, type CliResult, cliHelp, parseCli } from "./command-line.js";
export { ConfigError, type ConfigSource, sourceLabel } from "./config-error.js";
export type { Config } from "./schema.js";
export { redactUrl } from "./schema.js";

export interface LoadInput {
  /** Parsed CLI values keyed by snake_case (as parseCli returns them); undefined = not given. */
  argv?: Record<string, unknown>;
  /** Defaults to process.env. Unknown PGSIDECAR_* names are ignored (Kubernetes adds service links). */
  env?: NodeJS.ProcessEnv;
  /** The YAML file; when null/undefined, `PGSIDECAR_CONFIG` from env is used if set. */
  file?: string | null;
}

const DEFAULT_SOURCE: ConfigSource = Object.freeze({ kind: "default" });
/** Keys yargs adds to its result that are not settings. */
const IGNORED_ARGV_KEYS = new Set(["_", "$0", "config", "help", "version"]);
const sources = new WeakMap<Config, ReadonlyMap<string, ConfigSource>>();

interface Layer {
  value: unknown;
  source: ConfigSource;
}

/** Reads, layers, validates and freezes the configuration. Throws ConfigError. */
export function loadConfig(input: LoadInput = {}): Config {
  const env = input.env ?? process.env;
  const argv = input.argv ?? {};
  const layers = new Map<SettingKey, Layer>();
  for (const s of SETTING_LIST)
    layers.set(s.key as SettingKey, { value: s.default, source: DEFAULT_SOURCE });

  const fromArgv = typeof argv.config === "string" && argv.config !== "" ? argv.config : null;
  const filePath = input.file || fromArgv || env[`${ENV_PREFIX}CONFIG`] || null;
  const file = filePath === null ? null : readConfigFile(filePath);
  if (file !== null) {
    for (const [key, value] of Object.entries(file.values)) {
      layers.set(key as SettingKey, { value, source: file.source([key]) });
    }
  }
  for (const s of SETTING_LIST) {
    const value = env[s.env];
    if (value !== undefined)
      layers.set(s.key as SettingKey, { value, source: { kind: "env", name: s.env } });
  }
  for (const [name, value] of Object.entries(argv)) {
    if (value === undefined || IGNORED_ARGV_KEYS.has(name)) continue;
    const key = argvKey(name);
    if (key === undefined) {
      const hint = settingHint(name);
      throw new ConfigError(
        `invalid config: unknown setting ${name} (from the command line)${hint ? `: did you mean ${hint}?` : ""}`,
      );
    }
    layers.set(key, { value, source: { kind: "cli", flag: SETTINGS[key].flag } });
  }

  // A nested value's own line in the file, when it came from there.
  const sourceAt = (key: SettingKey, path: ReadonlyArray<string | number>): ConfigSource => {
    const layer = layers.get(key) as Layer;
    return layer.source.kind === "file" && file !== null
      ? file.source([key, ...path])
      : layer.source;
  };

  const parsed: Record<string, unknown> = {};
  for (const s of SETTING_LIST) {
    const key = s.key as SettingKey;
    const { value } = layers.get(key) as Layer;
    try {
      parsed[key] = s.parse(value);
    } catch (err) {
      if (!(err instanceof InvalidValue)) throw err;
      throw invalid(err, key, value, sourceAt(key, err.path));
    }
  }

  const config = resolve(
    parsed,
    (key, path, value, expected, mask = "none") =>
      invalid(new InvalidValue(expected, { path, value, mask }), key, value, sourceAt(key, path)),
    env,
  );
  const bySetting = new Map<string, ConfigSource>();
  for (const [key, layer] of layers) bySetting.set(key, layer.source);
  deepFreeze(config);
  sources.set(config, bySetting);
  return config;
}

function argvKey(name: string): SettingKey | undefined {
  const key = name
    .replace(/-/g, "_")
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .toLowerCase();
  return key in SETTINGS ? (key as SettingKey) : undefined;
}

function invalid(
  err: InvalidValue,
  key: SettingKey,
  raw: unknown,
  source: ConfigSource,
): ConfigError {
  const path =
    key + err.path.map((seg) => (typeof seg === "number" ? `[${seg}]` : `.${seg}`)).join("");
  const from = `(from ${sourceLabel(source)})`;
  if (err.unknownKey !== undefined) {
    const { hint, known } = err.unknownKey;
    const suggestion =
      hint !== undefined ? `did you mean ${hint}?` : `known keys: ${known.join(", ")}`;
    return new ConfigError(`invalid config: unknown key ${path} ${from}: ${suggestion}`);
  }
  const value = err.hasValue ? err.value : raw;
  const shown = showValue(value, err.mask ?? "none");
  return new ConfigError(`invalid config: ${path} = ${shown} ${from}: expected ${err.expected}`);
}

/** A value for an error line: short, on one line, its password masked. */
function showValue(value: unknown, mask: Mask): string {
  if (mask === "secret") return "****";
  if (value === undefined) return "(not set)";
  if (value === null) return "null";
  if (Array.isArray(value)) return "(a list)";
  if (typeof value === "object") return "(a mapping)";
  if (typeof value !== "string") return String(value);
  // Any string goes through redactUrl: a URL typed into the wrong setting still loses its password.
  const s = redactUrl(value).replace(/[\r\n]+/g, " ");
  return JSON.stringify(s.length > 120 ? `${s.slice(0, 117)}...` : s);
}

// ---------------------------------------------------------------------------------------------
// The YAML file
// ---------------------------------------------------------------------------------------------

interface ConfigFile {
  readonly values: Readonly<Record<string, unknown>>;
  /** The source of the value at `path`, with its line when it can be found. */
  source(path: ReadonlyArray<string | number>): ConfigSource;
}

function readConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(
      `cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
    );
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, lineCounter, uniqueKeys: true });
  const syntax = doc.errors[0];
  if (syntax !== undefined) {
    const { line, col } = lineCounter.linePos(syntax.pos[0]);
    throw new ConfigError(
      `cannot parse config file ${path} at line ${line}, column ${col}: ${yamlProblem(syntax.code, syntax.message)}`,
    );
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError(`cannot parse config file ${path}: ${(err as Error).name}`);
  }

  const lineOf = (keys: ReadonlyArray<string | number>): number | undefined => {
    let node: unknown = doc.contents;
    let offset: number | undefined;
    for (const seg of keys) {
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === seg);
        if (pair === undefined) break;
        offset = isScalar(pair.key) ? pair.key.range?.[0] : offset;
        node = pair.value;
      } else if (isSeq(node) && typeof seg === "number") {
        const item = node.items[seg] as { range?: [number, number, number] } | undefined;
        if (item === undefined) break;
        offset = item.range?.[0] ?? offset;
        node = item;
      } else {
        break;
      }
    }
    return offset === undefined ? undefined : lineCounter.linePos(offset).line;
  };
  const source = (keys: ReadonlyArray<string | number>): ConfigSource => {
    const line = lineOf(keys);
    return line === undefined ? { kind: "file", path } : { kind: "file", path, line };
  };

  if (data === null || data === undefined) return { values: {}, source };
  if (typeof data !== "object" || Array.isArray(data)) {
    throw new ConfigError(`invalid config: ${path}: expected a mapping of settings (key: value)`);
  }
  const values = data as Record<string, unknown>;
  for (const key of Object.keys(values)) {
    if (key in SETTINGS) continue;
    const hint = settingHint(key);
    throw new ConfigError(
      `invalid config: unknown key ${key} (from ${sourceLabel(source([key]))})${hint ? `: did you mean ${hint}?` : ""}`,
    );
  }
  return { values, source };
}

/** The yaml library's message without any quoted source text (a line may hold a password). */
function yamlProblem(code: string, message: string): string {
  const head = message.split(":")[0];
  return code === "BAD_DQ_ESCAPE" || code === "BAD_SCALAR_START"
    ? head.replace(/\s+\S+$/, "")
    : head;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// SHOW CONFIG
// ---------------------------------------------------------------------------------------------

export interface ConfigRow {
  key: string;
  value: string;
  default: string;
  source?: string;
}

/** Every setting with its value, default and source, for SHOW CONFIG and check-config; no passwords. */
export function describeConfig(config: Config): ConfigRow[] {
  const from = sources.get(config);
  const rows: ConfigRow[] = [];
  for (const s of SETTING_LIST) {
    const key = s.key as SettingKey;
    let sourceOf = from?.get(key);
    // Left at their defaults, databases and users hold only what the upstream URL brought.
    if ((key === "databases" || key === "users") && sourceOf?.kind === "default") {
      sourceOf = from?.get("upstream");
    }
    const source = sourceOf === undefined ? {} : { source: sourceLabel(sourceOf) };
    if (key === "databases") {
      const dbs = Object.values(config.databases);
      if (config.fallback_database) dbs.push(config.fallback_database);
      rows.push({ key, value: dbs.map((d) => d.name).join(","), default: "", ...source });
      for (const d of dbs) {
        const value = `${formatTarget(d.target)} pool_size=${d.pool_size} min_pool_size=${d.min_pool_size} pool_mode=${d.pool_mode} retry=${d.retry}`;
        rows.push({ key: `databases.${d.name}`, value, default: "", ...source });
      }
    } else if (key === "users") {
      const value = config.users.map((u) => (u.admin ? `${u.name} (admin)` : u.name)).join(",");
      rows.push({ key, value, default: "", ...source });
    } else {
      const setting = s as Setting;
      rows.push({
        key,
        value: setting.format(config[key]),
        default: setting.format(setting.parse(setting.default)),
        ...source,
      });
    }
  }
  return rows;
}
