// Layers defaults < YAML file < PGSIDECAR_* env < CLI flags into one validated, deep-frozen Config.

import { accessSync, constants, readFileSync } from "node:fs";
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Options } from "yargs";
import yargs from "yargs";
import { isLoopbackHost } from "../loopback.js";
import { formatDuration } from "./duration.js";
import {
  ADMIN_DATABASE,
  AWS_REGION,
  type Config,
  closest,
  type DatabaseConfig,
  type DatabaseSpec,
  ENV_PREFIX,
  FALLBACK_DATABASE,
  formatHostPort,
  formatTarget,
  InvalidValue,
  type ListenAddress,
  type Mask,
  redactUrl,
  SETTING_KEYS,
  SETTING_LIST,
  SETTINGS,
  type Setting,
  type SettingKey,
  toTarget,
  type UpstreamTarget,
  type UserConfig,
} from "./schema.js";

export type { Config } from "./schema.js";
export { redactUrl } from "./schema.js";

/** One line, never a password: `invalid config: pool_size = "abc" (from --pool-size): expected ...`. */
export class ConfigError extends Error {
  override name = "ConfigError";
  readonly code = "config_invalid";
}

/** Where a value came from. */
export type ConfigSource =
  | { readonly kind: "default" }
  | { readonly kind: "file"; readonly path: string; readonly line?: number }
  | { readonly kind: "env"; readonly name: string }
  | { readonly kind: "cli"; readonly flag: string };

export function sourceLabel(source: ConfigSource): string {
  switch (source.kind) {
    case "default":
      return "default";
    case "file":
      return source.line === undefined ? source.path : `${source.path}:${source.line}`;
    case "env":
      return source.name;
    case "cli":
      return `--${source.flag}`;
    default: {
      const never: never = source;
      return never;
    }
  }
}

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

/**
 * Other tools' names for one of our settings, where the closest spelling would mislead:
 * max_sigterm_delay is one edit from min_sigterm_delay, but means shutdown_timeout.
 */
const KNOWN_AS: Readonly<Record<string, SettingKey>> = { max_sigterm_delay: "shutdown_timeout" };

/** The setting an unknown name probably meant. */
function settingHint(name: string): string | undefined {
  return KNOWN_AS[name.replaceAll("-", "_").toLowerCase()] ?? closest(name, SETTING_KEYS);
}

function argvKey(name: string): SettingKey | undefined {
  const key = name
    .replace(/-/g, "_")
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .toLowerCase();
  return key in SETTINGS ? (key as SettingKey) : undefined;
}

type Fail = (
  key: SettingKey,
  path: ReadonlyArray<string | number>,
  value: unknown,
  expected: string,
  mask?: Mask,
) => ConfigError;

/** Checks across settings and the derived `databases` / `users`. */
function resolve(p: Record<string, unknown>, fail: Fail, env: NodeJS.ProcessEnv): Config {
  const upstream = p.upstream as UpstreamTarget | null;
  const specs = p.databases as ReadonlyArray<DatabaseSpec>;
  const poolSize = p.pool_size as number;
  const minPoolSize = p.min_pool_size as number;

  if (upstream === null && specs.length === 0) {
    throw new ConfigError(
      `invalid config: upstream is not set: expected a postgres:// URL (--${SETTINGS.upstream.flag}, ${SETTINGS.upstream.env} or upstream in the config file), or databases`,
    );
  }
  if (upstream !== null && upstream.database === ADMIN_DATABASE) {
    throw fail(
      "upstream",
      [],
      formatTarget(upstream),
      `a database other than "${ADMIN_DATABASE}" (the admin console); list it under databases with another name`,
    );
  }
  if (minPoolSize > poolSize) {
    throw fail("min_pool_size", [], minPoolSize, `at most pool_size (${poolSize})`);
  }
  const retryMs = p.server_login_retry as number;
  const retryMaxMs = p.server_login_retry_max as number;
  if (retryMs > retryMaxMs) {
    throw fail(
      "server_login_retry",
      [],
      formatDuration(retryMs),
      `at most server_login_retry_max (${formatDuration(retryMaxMs)})`,
    );
  }

  const cert = p.tls_cert_file as string | null;
  const key = p.tls_key_file as string | null;
  if (cert !== null && key === null) {
    throw fail("tls_key_file", [], null, "a key file, since tls_cert_file is set");
  }
  if (key !== null && cert === null) {
    throw fail("tls_cert_file", [], null, "a certificate file, since tls_key_file is set");
  }
  for (const [name, path] of [
    ["tls_cert_file", cert],
    ["tls_key_file", key],
  ] as const) {
    if (path === null) continue;
    try {
      accessSync(path, constants.R_OK);
    } catch (err) {
      throw fail(name, [], path, `a readable file (${(err as NodeJS.ErrnoException).code})`);
    }
  }

  if (p.client_tls === "require" && cert === null) {
    throw fail("client_tls", [], "require", "tls_cert_file and tls_key_file to be set, or allow");
  }
  // trust lets anyone who can reach the listener in as any listed user: only this machine may.
  const listen = p.listen as ListenAddress;
  if (p.auth_type === "trust" && !isLoopbackHost(listen.host)) {
    throw fail(
      "auth_type",
      [],
      "trust",
      `a password method, since listen (${formatHostPort(listen)}) is not a loopback address; trust is allowed only on loopback and unix sockets`,
    );
  }
  // One source of truth for the upstream URL's password: the URL or the command, not both.
  if (p.password_command !== null && upstream !== null && upstream.password !== null) {
    throw fail(
      "password_command",
      [],
      "",
      "no password_command, since the upstream URL has a password (remove one of the two)",
      "secret",
    );
  }
  if (p.password_command_timeout === 0) {
    throw fail("password_command_timeout", [], "0", "a duration above 0");
  }

  const databases: Record<string, DatabaseConfig> = {};
  let fallback: DatabaseConfig | null = null;
  const defaults = {
    pool_size: poolSize,
    min_pool_size: minPoolSize,
    pool_mode: p.pool_mode as DatabaseConfig["pool_mode"],
    retry: p.retry as DatabaseConfig["retry"],
  };
  if (upstream !== null) {
    databases[upstream.database] = { name: upstream.database, target: upstream, ...defaults };
  }
  for (const spec of specs) {
    let target: UpstreamTarget;
    if (spec.url.user !== null) {
      target = toTarget(spec.url, {
        user: upstream?.user ?? spec.url.user,
        password: upstream?.password ?? null,
        database: spec.name,
      });
    } else if (upstream !== null) {
      target = toTarget(spec.url, { ...upstream, database: spec.name });
    } else {
      throw fail(
        "databases",
        [spec.name, "upstream"],
        formatTarget(toTarget(spec.url, { user: "", password: null })),
        "a user name in the URL (there is no top-level upstream to take it from)",
        "url",
      );
    }
    const db: DatabaseConfig = {
      name: spec.name,
      target,
      pool_size: spec.pool_size ?? defaults.pool_size,
      min_pool_size: spec.min_pool_size ?? defaults.min_pool_size,
      pool_mode: spec.pool_mode ?? defaults.pool_mode,
      retry: spec.retry ?? defaults.retry,
    };
    if (db.min_pool_size > db.pool_size) {
      const field = spec.min_pool_size !== undefined ? "min_pool_size" : "pool_size";
      throw fail(
        "databases",
        [spec.name, field],
        db[field],
        `min_pool_size (${db.min_pool_size}) at most pool_size (${db.pool_size})`,
      );
    }
    if (spec.name === FALLBACK_DATABASE) {
      // Any name a client asks for: the URL's database is replaced by that name (Sidecar.route).
      fallback = { ...db, target: { ...db.target, database: FALLBACK_DATABASE } };
    } else databases[spec.name] = db;
  }
  if (fallback !== null && p.any_database === false) {
    throw fail(
      "any_database",
      [],
      false,
      `true, since databases has a "${FALLBACK_DATABASE}" entry (or remove that entry)`,
    );
  }
  if (fallback === null && upstream !== null && p.any_database === true) {
    fallback = {
      name: FALLBACK_DATABASE,
      target: { ...upstream, database: FALLBACK_DATABASE },
      ...defaults,
    };
  }

  if (p.upstream_auth === "aws-rds-iam") {
    p.aws_region = rdsIamRegion(p, fail, env);
    checkRdsIamTargets(p, upstream, databases, fallback, fail);
  }

  // Listed users first (they may differ from the URL's password, or be admins), then the URLs' users.
  const users: UserConfig[] = [...(p.users as ReadonlyArray<UserConfig>)];
  const targets = [upstream, ...Object.values(databases).map((d) => d.target), fallback?.target];
  for (const t of targets) {
    if (!t || t.password === null || users.some((u) => u.name === t.user)) continue;
    users.push({ name: t.user, password: t.password, admin: false });
  }
  const adminUsers = p.admin_users as ReadonlyArray<string>;
  adminUsers.forEach((name, i) => {
    if (!users.some((u) => u.name === name) && name !== upstream?.user) {
      throw fail("admin_users", [i], name, "a user listed in users, or the upstream user");
    }
  });
  const withAdmins = users.map((u) =>
    adminUsers.includes(u.name) && !u.admin ? { ...u, admin: true } : u,
  );

  return {
    ...p,
    databases,
    fallback_database: fallback,
    users: withAdmins,
  } as unknown as Config;
}

/** upstream_auth: aws-rds-iam needs a region: aws_region, else the SDK's own environment names. */
function rdsIamRegion(p: Record<string, unknown>, fail: Fail, env: NodeJS.ProcessEnv): string {
  if (p.aws_region !== null) return p.aws_region as string;
  for (const name of ["AWS_REGION", "AWS_DEFAULT_REGION"]) {
    const value = env[name];
    if (value === undefined || value === "") continue;
    if (!AWS_REGION.test(value.trim())) {
      throw new ConfigError(
        `invalid config: ${name} = ${JSON.stringify(value.slice(0, 40))} (from the environment): expected an AWS region name such as us-east-1`,
      );
    }
    return value.trim();
  }
  throw fail(
    "aws_region",
    [],
    null,
    "an AWS region (such as us-east-1), or AWS_REGION in the environment, since upstream_auth is aws-rds-iam",
  );
}

/**
 * upstream_auth: aws-rds-iam. A token is a password sent in clear text (RDS checks it with PAM):
 * every URL it is sent over must use TLS, so an sslmode below require is refused rather than
 * raised in silence; and one password per user, so no password_command or URL password beside it.
 */
function checkRdsIamTargets(
  p: Record<string, unknown>,
  upstream: UpstreamTarget | null,
  databases: Readonly<Record<string, DatabaseConfig>>,
  fallback: DatabaseConfig | null,
  fail: Fail,
): void {
  if (p.password_command !== null) {
    throw fail(
      "upstream_auth",
      [],
      "aws-rds-iam",
      "password, since password_command is set (remove one of the two)",
    );
  }
  if (upstream !== null && upstream.password !== null) {
    throw fail(
      "upstream_auth",
      [],
      "aws-rds-iam",
      "password, since the upstream URL has a password (remove it to log in with IAM tokens)",
    );
  }
  // The upstream first: entries derived from it (its database, the implicit "*") pass with it.
  const entries: Array<[SettingKey, string[], UpstreamTarget]> = [];
  if (upstream !== null) entries.push(["upstream", [], upstream]);
  for (const db of [...Object.values(databases), ...(fallback === null ? [] : [fallback])]) {
    entries.push(["databases", [db.name, "upstream"], db.target]);
  }
  for (const [key, path, t] of entries) {
    if (t.password !== null) continue; // its own password, not a token
    if (t.socketPath !== null) {
      throw fail(
        key,
        path,
        formatTarget(t),
        "a TCP host (an RDS endpoint), not a unix socket, since upstream_auth is aws-rds-iam",
        "url",
      );
    }
    if (t.sslmode === "disable" || t.sslmode === "prefer") {
      throw fail(
        key,
        path,
        formatTarget(t),
        `sslmode=require, verify-ca or verify-full (not ${t.sslmode}), since upstream_auth is aws-rds-iam: RDS takes the token as a clear-text password, so it must not go without TLS`,
        "url",
      );
    }
  }
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

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/** Help text for a default, as written in the YAML file. */
function defaultText(s: Setting): string {
  const d = s.default;
  if (d === null) return "none";
  if (Array.isArray(d)) return d.length === 0 ? "[]" : d.join(",");
  if (typeof d === "object") return "{}";
  if (d === "") return '""';
  return String(d);
}

/** yargs options for every setting (flag = kebab-case key) plus --config. For cli.ts. */
export function buildCliOptions(): Record<string, Options> {
  const options: Record<string, Options> = {
    config: {
      type: "string",
      describe: `YAML config file (also ${ENV_PREFIX}CONFIG)`,
      requiresArg: true,
    },
  };
  for (const s of SETTING_LIST) {
    const plain = s.type === "string" || s.type === "boolean";
    options[s.flag] = {
      type: s.cli,
      describe: plain ? s.doc : `${s.doc} (${s.type})`,
      defaultDescription: defaultText(s),
      group: `${s.group}:`,
      ...(s.cli === "string" ? { requiresArg: true } : {}),
    };
  }
  return options;
}

export interface CliResult {
  command: "start" | "check-config";
  /** Only the flags given, keyed by snake_case setting name; pass as `loadConfig({ argv })`. */
  values: Record<string, unknown>;
  configFile: string | null;
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "unknown";
  }
}

function buildParser(args: string[]) {
  return yargs(args)
    .scriptName("pgsidecar")
    .usage("$0 [start|check-config] [options]")
    .parserConfiguration({
      "camel-case-expansion": false,
      "dot-notation": false,
      "parse-numbers": false,
      "parse-positional-numbers": false,
      "duplicate-arguments-array": false,
    })
    .command(["start", "$0"], "Run the proxy (the default command)")
    .command("check-config", "Validate the configuration, print it (passwords masked) and exit")
    .options(buildCliOptions())
    .strict()
    .help()
    .alias("help", "h")
    .version(packageVersion())
    .wrap(Math.min(120, process.stdout.columns || 100))
    .epilogue(
      `Every flag is also the YAML key with '_' for '-' (pool_size), and the env var ${ENV_PREFIX}<KEY> ` +
        `(${ENV_PREFIX}POOL_SIZE). Precedence: defaults < config file < env < flags. ` +
        "Durations: seconds or 300ms/5s/2m/1h. Sizes: bytes or 64kB/8MB.",
    )
    .fail((message, err) => {
      // yargs reports usage errors as a message, some (missing flag value) as a YError.
      if (err && err.name !== "YError") throw err;
      // yargs may echo an argument (a stray URL with a password): mask it.
      const text = message || err?.message || "invalid arguments";
      let line = redactUrl(text).replace(/\s*\n\s*/g, " ");
      const unknown = /^Unknown arguments?: (.+)$/.exec(line);
      if (unknown) {
        const flags = SETTING_LIST.map((s) => s.flag).concat("config");
        const hints = unknown[1]
          .split(", ")
          .map((a) => {
            const name = a.replace(/^-+/, "").replace(/=.*$/, "");
            const known = KNOWN_AS[name.replaceAll("-", "_")];
            return known === undefined ? closest(name, flags) : SETTINGS[known].flag;
          })
          .filter((h): h is string => h !== undefined);
        if (hints.length > 0) line += ` (did you mean ${hints.map((h) => `--${h}`).join(", ")}?)`;
      }
      throw new ConfigError(`invalid command line: ${line}`);
    });
}

/**
 * Parses the arguments after the script (`hideBin(process.argv)`). --help/--version print and
 * exit as yargs does; a bad flag or command throws ConfigError.
 */
export function parseCli(argv: string[]): CliResult {
  const parsed = buildParser(argv).parseSync() as Record<string, unknown> & { _: unknown[] };
  const values: Record<string, unknown> = {};
  for (const s of SETTING_LIST) {
    const v = parsed[s.flag];
    if (v !== undefined) values[s.key] = v;
  }
  const config = parsed.config;
  return {
    command: parsed._[0] === "check-config" ? "check-config" : "start",
    values,
    configFile: typeof config === "string" && config !== "" ? config : null,
  };
}

/** The --help text. */
export function cliHelp(): Promise<string> {
  return buildParser([]).getHelp();
}
