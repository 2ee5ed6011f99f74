// Every setting once: type, default, unit, doc line; flags, env names, validation and SHOW CONFIG derive from it.

import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import {
  DURATION_EXPECTED,
  formatDuration,
  formatSize,
  MAX_DURATION_MS,
  parseDuration,
  parseSize,
  SIZE_EXPECTED,
} from "./duration.js";

// ---------------------------------------------------------------------------------------------
// Value types
// ---------------------------------------------------------------------------------------------

export const SSL_MODES = ["disable", "prefer", "require", "verify-ca", "verify-full"] as const;
export type SslMode = (typeof SSL_MODES)[number];
/** libpq's target_session_attrs: which server of several hosts a connection may use. */
export const TARGET_SESSION_ATTRS = [
  "any",
  "read-write",
  "read-only",
  "primary",
  "standby",
  "prefer-standby",
] as const;
export type TargetSessionAttrs = (typeof TARGET_SESSION_ATTRS)[number];

/** One host of an upstream (libpq's multi-host form lists several). */
export interface UpstreamHost {
  readonly host: string;
  readonly port: number;
  /** `${host}/.s.PGSQL.${port}` when host is a directory (starts with '/'), as libpq does. */
  readonly socketPath: string | null;
}
export const POOL_MODES = ["session", "transaction"] as const;
export type PoolMode = (typeof POOL_MODES)[number];
export const RETRY_MODES = ["off", "safe", "all"] as const;
export type RetryMode = (typeof RETRY_MODES)[number];
export const AUTH_TYPES = ["scram-sha-256", "md5", "password", "trust"] as const;
export type AuthType = (typeof AUTH_TYPES)[number];
/** How a URL's user without a password in its URL logs in upstream. */
export const UPSTREAM_AUTH = ["password", "aws-rds-iam"] as const;
export type UpstreamAuth = (typeof UPSTREAM_AUTH)[number];
/** When the upstream may get a cleartext or md5 password over a connection without TLS. */
export const PASSWORD_WITHOUT_TLS = ["refuse", "loopback", "allow"] as const;
export type PasswordWithoutTls = (typeof PASSWORD_WITHOUT_TLS)[number];
/**
 * Client TLS: never (SSLRequest answered N); when the client asks (with tls_cert_file, else an
 * ephemeral self-signed certificate); or demanded (needs tls_cert_file).
 */
export const CLIENT_TLS_MODES = ["off", "allow", "require"] as const;
export type ClientTlsMode = (typeof CLIENT_TLS_MODES)[number];
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ["json", "pretty"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** The database name clients use to reach the admin console (PgBouncer's `pgbouncer`). */
export const ADMIN_DATABASE = "pgsidecar";
/** The `databases` entry that serves any name not listed (PgBouncer's fallback database). */
export const FALLBACK_DATABASE = "*";

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** One Postgres server (or pooler) to connect to, from a libpq-style URL. */
export interface UpstreamTarget {
  /** The first host (hosts[0]), for display and single-host code paths. */
  readonly host: string;
  readonly port: number;
  /** Every host, tried in order (shuffled per connection with load_balance_hosts=random). */
  readonly hosts: ReadonlyArray<UpstreamHost>;
  readonly targetSessionAttrs: TargetSessionAttrs;
  readonly loadBalanceHosts: boolean;
  readonly database: string;
  readonly user: string;
  readonly password: string | null;
  readonly sslmode: SslMode;
  readonly sslrootcert: string | null;
  /** `${host}/.s.PGSQL.${port}` when host is a directory (starts with '/'), as libpq does. */
  readonly socketPath: string | null;
}

/** A logical database clients can name in their StartupMessage, with its pool settings. */
export interface DatabaseConfig {
  readonly name: string;
  readonly target: UpstreamTarget;
  readonly pool_size: number;
  readonly min_pool_size: number;
  readonly pool_mode: PoolMode;
  readonly retry: RetryMode;
}

/** A client credential known to the sidecar. */
export interface UserConfig {
  readonly name: string;
  readonly password: string;
  readonly admin: boolean;
  /** Where `password` was read from: re-read for new server logins when it changes. */
  readonly password_file?: string;
}

/** password_command: a shell command line (run by /bin/sh -c), or argv (a YAML list, no shell). */
export type PasswordCommand = string | ReadonlyArray<string>;

/** A URL as written, before the fallbacks of UpstreamTarget are applied. */
export interface UrlParts {
  readonly host: string;
  readonly port: number;
  /** Every host:port of the URL (one for the usual form). */
  readonly hosts: ReadonlyArray<{ readonly host: string; readonly port: number }>;
  readonly targetSessionAttrs: TargetSessionAttrs;
  readonly loadBalanceHosts: boolean;
  readonly database: string | null;
  readonly user: string | null;
  readonly password: string | null;
  readonly sslmode: SslMode;
  readonly sslrootcert: string | null;
}

/** One entry of `databases` as written; the URL is parsed, fallbacks are applied by the loader. */
export interface DatabaseSpec {
  readonly name: string;
  readonly url: UrlParts;
  readonly pool_size?: number;
  readonly min_pool_size?: number;
  readonly pool_mode?: PoolMode;
  readonly retry?: RetryMode;
}

// ---------------------------------------------------------------------------------------------
// Validation errors raised by value parsers; load.ts adds the key, source and masking.
// ---------------------------------------------------------------------------------------------

/** How an offending value may be shown: as is, as a URL with its password masked, or not at all. */
export type Mask = "none" | "url" | "secret";

/** A key that is not in its mapping: the closest known key, if one is close, and all of them. */
export interface UnknownKey {
  readonly hint: string | undefined;
  readonly known: readonly string[];
}

interface InvalidValueOptions {
  path?: ReadonlyArray<string | number>;
  value?: unknown;
  mask?: Mask;
  unknownKey?: UnknownKey;
}

export class InvalidValue extends Error {
  override name = "InvalidValue";
  readonly code = "config_value_invalid";
  /** Where inside the setting the bad value sits: ["reports", "pool_size"], [0, "password"]. */
  readonly path: ReadonlyArray<string | number>;
  readonly hasValue: boolean;
  readonly value: unknown;
  /** undefined: not decided here; an enclosing parser's mask applies (else "none"). */
  readonly mask: Mask | undefined;
  /** Set when the last path segment is a key that does not exist (its value is never shown). */
  readonly unknownKey: UnknownKey | undefined;
  constructor(
    readonly expected: string,
    opts: InvalidValueOptions = {},
  ) {
    super(`expected ${expected}`);
    this.path = opts.path ?? [];
    this.hasValue = "value" in opts;
    this.value = opts.value;
    this.mask = opts.mask;
    this.unknownKey = opts.unknownKey;
  }
}

/** Runs a nested parse; an error from it is re-thrown one level deeper, keeping the inner value. */
function at<T>(segment: string | number, raw: unknown, mask: Mask, parse: (raw: unknown) => T): T {
  try {
    return parse(raw);
  } catch (err) {
    if (!(err instanceof InvalidValue)) throw err;
    const inner = err.hasValue ? err.value : raw;
    const innerMask = err.mask ?? mask;
    throw new InvalidValue(err.expected, {
      path: [segment, ...err.path],
      value: inner,
      mask: innerMask,
      unknownKey: err.unknownKey,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// The Setting descriptor and its builders
// ---------------------------------------------------------------------------------------------

export type SettingGroup =
  | "Listen"
  | "Upstream"
  | "Clients"
  | "Pool"
  | "Backends"
  | "Retry"
  | "TLS"
  | "Admin"
  | "Logging"
  | "Shutdown";

/** A setting as declared in the table below; `key`, `flag` and `env` are added from its key. */
export interface SettingSpec<T> {
  readonly group: SettingGroup;
  /** What it is, for --help and the example file: "duration", "integer 1..10000", "session | transaction". */
  readonly type: string;
  /** The default as a user would write it in YAML; parsed like any other value. null: none. */
  readonly default: unknown;
  /** Unit of the stored number: durations become milliseconds, sizes bytes. */
  readonly unit?: "ms" | "bytes";
  readonly doc: string;
  /** Flags take a string (parsed like an env value) or are booleans (`--x`, `--no-x`). */
  readonly cli: "string" | "boolean";
  /** Parses a value from YAML (any JSON type) or from env/CLI (a string). Throws InvalidValue. */
  parse(raw: unknown): T;
  /** For SHOW CONFIG; never reveals a password. */
  format(value: T): string;
}

export interface Setting<T = unknown> extends SettingSpec<T> {
  readonly key: string;
  /** The CLI flag without dashes: `pool-size`. */
  readonly flag: string;
  /** The environment variable: `PGSIDECAR_POOL_SIZE`. */
  readonly env: string;
}

export const ENV_PREFIX = "PGSIDECAR_";
export const flagOf = (key: string): string => key.replaceAll("_", "-");
export const envOf = (key: string): string => ENV_PREFIX + key.toUpperCase();

const quote = (s: string): string => JSON.stringify(s);

function integer(o: {
  group: SettingGroup;
  default: number;
  min: number;
  max: number;
  doc: string;
}): SettingSpec<number> {
  const expected = `an integer from ${o.min} to ${o.max}`;
  return {
    group: o.group,
    type: `integer ${o.min}..${o.max}`,
    default: o.default,
    doc: o.doc,
    cli: "string",
    parse(raw) {
      let n: number;
      if (typeof raw === "number") n = raw;
      else if (typeof raw === "string" && /^\s*[+-]?\d+\s*$/.test(raw)) n = Number(raw);
      else throw new InvalidValue(expected);
      if (!Number.isSafeInteger(n) || n < o.min || n > o.max) throw new InvalidValue(expected);
      return n;
    },
    format: String,
  };
}

function duration(o: {
  group: SettingGroup;
  default: number | string;
  doc: string;
  zeroMeans?: string;
}): SettingSpec<number> {
  return {
    group: o.group,
    type: o.zeroMeans ? `duration, 0 = ${o.zeroMeans}` : "duration",
    default: o.default,
    unit: "ms",
    doc: o.doc,
    cli: "string",
    parse(raw) {
      const ms = parseDuration(raw);
      if (ms === undefined) throw new InvalidValue(DURATION_EXPECTED);
      if (ms > MAX_DURATION_MS)
        throw new InvalidValue(`a duration of at most ${MAX_DURATION_MS}ms`);
      return ms;
    },
    format: formatDuration,
  };
}

function size(o: {
  group: SettingGroup;
  default: number | string;
  min: number;
  max: number;
  doc: string;
}): SettingSpec<number> {
  const range = `from ${formatSize(o.min)} to ${formatSize(o.max)}`;
  return {
    group: o.group,
    type: "size",
    default: o.default,
    unit: "bytes",
    doc: o.doc,
    cli: "string",
    parse(raw) {
      const bytes = parseSize(raw);
      if (bytes === undefined) throw new InvalidValue(`${SIZE_EXPECTED} ${range}`);
      if (bytes < o.min || bytes > o.max) throw new InvalidValue(`a size ${range}`);
      return bytes;
    },
    format: formatSize,
  };
}

function oneOf<const V extends string>(o: {
  group: SettingGroup;
  values: readonly V[];
  default: V;
  doc: string;
}): SettingSpec<V> {
  const expected = `one of ${o.values.map(quote).join(", ")}`;
  return {
    group: o.group,
    type: o.values.join(" | "),
    default: o.default,
    doc: o.doc,
    cli: "string",
    parse(raw) {
      if (typeof raw === "string" && (o.values as readonly string[]).includes(raw)) return raw as V;
      throw new InvalidValue(expected);
    },
    format: (v) => v,
  };
}

function text(o: { group: SettingGroup; default: string; doc: string }): SettingSpec<string> {
  return {
    group: o.group,
    type: "string",
    default: o.default,
    doc: o.doc,
    cli: "string",
    parse(raw) {
      if (typeof raw !== "string") throw new InvalidValue("a string");
      return raw;
    },
    format: quote,
  };
}

/** A path or similar that may be absent; "" and null both mean absent. */
function optionalText(o: { group: SettingGroup; doc: string }): SettingSpec<string | null> {
  return {
    group: o.group,
    type: "path",
    default: null,
    doc: o.doc,
    cli: "string",
    parse(raw) {
      if (raw === null || raw === undefined || raw === "") return null;
      if (typeof raw !== "string") throw new InvalidValue("a path (a string) or null");
      return raw;
    },
    format: (v) => v ?? "",
  };
}

/** An AWS region name (us-east-1, eu-central-2, us-gov-west-1, cn-north-1); null: none. */
export const AWS_REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;

function awsRegion(o: { group: SettingGroup; doc: string }): SettingSpec<string | null> {
  return {
    group: o.group,
    type: "AWS region",
    default: null,
    doc: o.doc,
    cli: "string",
    parse(raw) {
      if (raw === null || raw === undefined || raw === "") return null;
      if (typeof raw !== "string" || !AWS_REGION.test(raw.trim())) {
        throw new InvalidValue("an AWS region name such as us-east-1");
      }
      return raw.trim();
    },
    format: (v) => v ?? "",
  };
}

function boolean(o: { group: SettingGroup; default: boolean; doc: string }): SettingSpec<boolean> {
  return {
    group: o.group,
    type: "boolean",
    default: o.default,
    doc: o.doc,
    cli: "boolean",
    parse: parseBool,
    format: String,
  };
}

function parseBool(raw: unknown): boolean {
  if (typeof raw === "boolean") return raw;
  if (typeof raw === "string") {
    const s = raw.trim().toLowerCase();
    if (["true", "yes", "on", "1"].includes(s)) return true;
    if (["false", "no", "off", "0"].includes(s)) return false;
  }
  throw new InvalidValue("true or false");
}

/** GUC names: letters, digits, '_' and '.' (custom `ext.setting` names). */
const NAME = /^[A-Za-z_][A-Za-z0-9_.$-]*$/;

function nameList(o: {
  group: SettingGroup;
  default: readonly string[];
  doc: string;
}): SettingSpec<ReadonlyArray<string>> {
  const expected = "a list of names (a YAML list, or comma-separated)";
  return {
    group: o.group,
    type: "list of names",
    default: o.default,
    doc: o.doc,
    cli: "string",
    parse(raw) {
      let items: unknown[];
      if (Array.isArray(raw)) items = raw;
      else if (typeof raw === "string") items = raw.split(",").map((s) => s.trim());
      else throw new InvalidValue(expected);
      const out: string[] = [];
      items.forEach((item, i) => {
        if (typeof raw === "string" && item === "") return;
        if (typeof item !== "string" || !NAME.test(item)) {
          throw new InvalidValue("a name (letters, digits, '_', '.')", { path: [i], value: item });
        }
        if (!out.includes(item)) out.push(item);
      });
      return out;
    },
    format: (v) => v.join(","),
  };
}

const HOST_PORT_EXPECTED = 'host:port, "[ipv6]:port", or a port alone (meaning 127.0.0.1:port)';

/** "host:port", "[::1]:port", ":port", "*:port" (all IPv4 interfaces) or a bare port. */
export function parseHostPort(raw: unknown): ListenAddress {
  const s = typeof raw === "number" ? String(raw) : typeof raw === "string" ? raw.trim() : null;
  if (s === null) throw new InvalidValue(HOST_PORT_EXPECTED);
  let host: string;
  let portText: string;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(s);
  const v4 = /^([^:[\]\s]*):(\d+)$/.exec(s);
  if (/^\d+$/.test(s)) {
    host = "";
    portText = s;
  } else if (v6) {
    host = v6[1];
    portText = v6[2];
  } else if (v4) {
    host = v4[1];
    portText = v4[2];
  } else {
    throw new InvalidValue(HOST_PORT_EXPECTED);
  }
  const port = Number(portText);
  if (port > 65535) throw new InvalidValue("a port from 0 to 65535");
  if (host === "") host = "127.0.0.1";
  else if (host === "*") host = "0.0.0.0";
  return { host, port };
}

export function formatHostPort(a: ListenAddress): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function hostPort(o: {
  group: SettingGroup;
  default: string;
  doc: string;
}): SettingSpec<ListenAddress> {
  return {
    group: o.group,
    type: "host:port",
    default: o.default,
    doc: o.doc,
    cli: "string",
    parse: parseHostPort,
    format: formatHostPort,
  };
}

function hostPortOrOff(o: {
  group: SettingGroup;
  default: string;
  doc: string;
}): SettingSpec<ListenAddress | null> {
  return {
    group: o.group,
    type: 'host:port | "off"',
    default: o.default,
    doc: o.doc,
    cli: "string",
    parse(raw) {
      if (raw === "" || raw === "off" || raw === null || raw === false) return null;
      try {
        return parseHostPort(raw);
      } catch (err) {
        if (err instanceof InvalidValue) throw new InvalidValue(`${err.expected}, or "off"`);
        throw err;
      }
    },
    format: (v) => (v === null ? "off" : formatHostPort(v)),
  };
}

// ---------------------------------------------------------------------------------------------
// Postgres URLs (libpq's URI form: postgresql://[user[:password]@][host][:port][/dbname][?k=v&...])
// https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS
// ---------------------------------------------------------------------------------------------

const URL_PARAMS = [
  "host",
  "port",
  "user",
  "password",
  "dbname",
  "sslmode",
  "sslrootcert",
  "target_session_attrs",
  "load_balance_hosts",
];

/**
 * Masks the password of a Postgres URL (or keyword/value conninfo) for logs and errors, even when
 * the URL is malformed: everything between the user's ':' and the last '@' becomes ****.
 */
export function redactUrl(url: string): string {
  // password=... as a query parameter or conninfo keyword first, so an '@' inside it is gone.
  let out = url.replace(
    /((?:^|[?&\s])password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^&\s]*)/gi,
    (_m, head: string, value: string) => (value === "" ? head : `${head}****`),
  );
  const scheme = out.indexOf("://");
  const start = scheme >= 0 ? scheme + 3 : 0;
  const atSign = out.lastIndexOf("@");
  if (atSign >= start) {
    const colon = out.indexOf(":", start);
    if (colon >= 0 && colon < atSign) out = `${out.slice(0, colon + 1)}****${out.slice(atSign)}`;
  }
  return out;
}

function decode(part: string, what: string, url: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw urlError(`bad percent-encoding in the ${what}`, url);
  }
}

function urlError(why: string, url: string): InvalidValue {
  return new InvalidValue(`a postgres:// or postgresql:// URL (${why})`, {
    value: url,
    mask: "url",
  });
}

function parsePort(text: string, url: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw urlError(`port ${quote(text)} is not a number from 1 to 65535`, url);
  }
  return Number(text);
}

/** Parses a libpq URL without applying the user/database fallbacks. Throws InvalidValue. */
export function parsePostgresUrl(raw: unknown): UrlParts {
  if (typeof raw !== "string") {
    throw new InvalidValue("a postgres:// or postgresql:// URL (a string)");
  }
  const url = raw.trim();
  const scheme = /^(postgres|postgresql):\/\/(.*)$/s.exec(url);
  if (scheme === null) throw urlError("it must start with postgres:// or postgresql://", url);
  let rest = scheme[2];
  let query = "";
  const q = rest.indexOf("?");
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  if (rest.includes("#")) throw urlError("'#' must be percent-encoded as %23", url);

  // userinfo ends at the last '@': a password with an unencoded '@' or '/' still parses.
  let user: string | null = null;
  let password: string | null = null;
  const atSign = rest.lastIndexOf("@");
  if (atSign >= 0) {
    const userinfo = rest.slice(0, atSign);
    rest = rest.slice(atSign + 1);
    const colon = userinfo.indexOf(":");
    user = decode(colon >= 0 ? userinfo.slice(0, colon) : userinfo, "user name", url);
    if (colon >= 0) password = decode(userinfo.slice(colon + 1), "password", url);
  }

  const slash = rest.indexOf("/");
  const hostspec = slash >= 0 ? rest.slice(0, slash) : rest;
  let database: string | null = slash >= 0 ? decode(rest.slice(slash + 1), "database", url) : null;
  // libpq's multi-host form: host1[:port1],host2[:port2],... (a missing port is 5432, or `port`).
  let hosts: Array<{ host: string; port: number | null }> = hostspec.split(",").map((spec) => {
    const v6 = /^\[([^\]]*)\](?::(.*))?$/.exec(spec);
    if (v6) return { host: v6[1], port: v6[2] !== undefined ? parsePort(v6[2], url) : null };
    const colon = spec.indexOf(":");
    return {
      host: decode(colon >= 0 ? spec.slice(0, colon) : spec, "host", url),
      port: colon >= 0 ? parsePort(spec.slice(colon + 1), url) : null,
    };
  });
  let ports: number[] | null = null;

  let targetSessionAttrs: TargetSessionAttrs = "any";
  let loadBalanceHosts = false;
  let sslmode: SslMode = "prefer";
  let sslrootcert: string | null = null;
  for (const pair of query.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    const key = decode(eq >= 0 ? pair.slice(0, eq) : pair, "query", url);
    const value = decode(eq >= 0 ? pair.slice(eq + 1) : "", "query", url);
    switch (key) {
      case "host":
        hosts = value.split(",").map((h) => ({ host: h, port: null }));
        break;
      case "port":
        ports = value.split(",").map((p) => parsePort(p, url));
        break;
      case "target_session_attrs":
        if (!(TARGET_SESSION_ATTRS as readonly string[]).includes(value)) {
          throw urlError(
            `target_session_attrs must be one of ${TARGET_SESSION_ATTRS.join(", ")}`,
            url,
          );
        }
        targetSessionAttrs = value as TargetSessionAttrs;
        break;
      case "load_balance_hosts":
        if (value !== "disable" && value !== "random") {
          throw urlError("load_balance_hosts must be disable or random", url);
        }
        loadBalanceHosts = value === "random";
        break;
      case "user":
        user = value;
        break;
      case "password":
        password = value;
        break;
      case "dbname":
        database = value;
        break;
      case "sslmode":
        if (!(SSL_MODES as readonly string[]).includes(value)) {
          throw urlError(`sslmode must be one of ${SSL_MODES.join(", ")}`, url);
        }
        sslmode = value as SslMode;
        break;
      case "sslrootcert":
        sslrootcert = value === "" ? null : value;
        break;
      default:
        throw urlError(
          `unsupported parameter ${quote(key.slice(0, 40))}; supported: ${URL_PARAMS.join(", ")}`,
          url,
        );
    }
  }
  // As libpq: one port applies to every host, else there must be one per host.
  if (ports !== null && ports.length !== 1 && ports.length !== hosts.length) {
    throw urlError(`${ports.length} ports for ${hosts.length} hosts`, url);
  }
  const list = hosts.map((h, i) => {
    let host = h.host;
    if (host === "") host = "localhost";
    else if (host.startsWith("/") && host.length > 1) host = host.replace(/\/+$/, "");
    const port = ports === null ? (h.port ?? 5432) : (ports[ports.length === 1 ? 0 : i] ?? 5432);
    return { host, port };
  });
  return {
    host: list[0].host,
    port: list[0].port,
    hosts: list,
    targetSessionAttrs,
    loadBalanceHosts,
    database: database === "" ? null : database,
    user: user === "" ? null : user,
    password: password === "" ? null : password,
    sslmode,
    sslrootcert,
  };
}

/** UrlParts -> UpstreamTarget with libpq's fallback: database = user. */
export function toTarget(
  parts: UrlParts,
  fallback: { user: string; password: string | null; database?: string },
): UpstreamTarget {
  const user = parts.user ?? fallback.user;
  // The fallback password belongs to the fallback user only.
  const password = parts.password ?? (user === fallback.user ? fallback.password : null);
  return {
    host: parts.host,
    port: parts.port,
    hosts: parts.hosts.map((h) => ({
      host: h.host,
      port: h.port,
      socketPath: h.host.startsWith("/") ? `${h.host}/.s.PGSQL.${h.port}` : null,
    })),
    targetSessionAttrs: parts.targetSessionAttrs,
    loadBalanceHosts: parts.loadBalanceHosts,
    database: parts.database ?? fallback.database ?? user,
    user,
    password,
    sslmode: parts.sslmode,
    sslrootcert: parts.sslrootcert,
    socketPath: parts.host.startsWith("/") ? `${parts.host}/.s.PGSQL.${parts.port}` : null,
  };
}

/** A target as a URL for display: the password is always ****. */
export function formatTarget(t: UpstreamTarget): string {
  const enc = encodeURIComponent;
  const auth = `${enc(t.user)}${t.password === null ? "" : ":****"}@`;
  const params: string[] = [];
  let hostport: string;
  if (t.socketPath !== null) {
    hostport = "";
    params.push(`host=${t.host}`, `port=${t.port}`);
  } else {
    hostport = t.hosts
      .map((h) => `${h.host.includes(":") ? `[${h.host}]` : enc(h.host)}:${h.port}`)
      .join(",");
  }
  params.push(`sslmode=${t.sslmode}`);
  if (t.targetSessionAttrs !== "any") params.push(`target_session_attrs=${t.targetSessionAttrs}`);
  if (t.loadBalanceHosts) params.push("load_balance_hosts=random");
  if (t.sslrootcert !== null) params.push(`sslrootcert=${t.sslrootcert}`);
  return `postgres://${auth}${hostport}/${enc(t.database)}?${params.join("&")}`;
}

function upstreamUrl(o: { group: SettingGroup; doc: string }): SettingSpec<UpstreamTarget | null> {
  return {
    group: o.group,
    type: "postgres URL",
    default: null,
    doc: o.doc,
    cli: "string",
    parse(raw) {
      if (raw === null || raw === undefined || raw === "") return null;
      const parts = parsePostgresUrl(raw);
      if (parts.user === null) throw urlError("it has no user name", String(raw));
      return toTarget(parts, { user: parts.user, password: null });
    },
    format: (v) => (v === null ? "" : formatTarget(v)),
  };
}

// ---------------------------------------------------------------------------------------------
// Structured settings: written in YAML; from env/CLI they are a YAML (or JSON) string.
// ---------------------------------------------------------------------------------------------

function structured(raw: unknown): unknown {
  if (typeof raw !== "string") return raw;
  try {
    return parseYaml(raw, { prettyErrors: false });
  } catch {
    // The string may hold passwords: never show it.
    throw new InvalidValue("YAML or JSON text", { value: raw, mask: "secret" });
  }
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Closest candidate by edit distance (or same letters ignoring case, '-' and '_'), if any is close. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, "");
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    if (norm(c) === norm(word)) return c;
    const d = levenshtein(word.toLowerCase(), c);
    if (d < bestDistance) {
      bestDistance = d;
      best = c;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

function checkKeys(entry: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(entry)) {
    if (known.includes(key)) continue;
    throw new InvalidValue(`one of the keys ${known.join(", ")}`, {
      path: [key],
      mask: "secret",
      unknownKey: { hint: closest(key, known), known },
    });
  }
}

const DATABASE_KEYS = ["upstream", "pool_size", "min_pool_size", "pool_mode", "retry"] as const;

function databaseMap(o: {
  group: SettingGroup;
  doc: string;
  overrides: {
    pool_size: SettingSpec<number>;
    min_pool_size: SettingSpec<number>;
    pool_mode: SettingSpec<PoolMode>;
    retry: SettingSpec<RetryMode>;
  };
}): SettingSpec<ReadonlyArray<DatabaseSpec>> {
  return {
    group: o.group,
    type: "map of databases",
    default: {},
    doc: o.doc,
    cli: "string",
    parse(raw) {
      const value = structured(raw);
      if (value === null || value === undefined) return [];
      if (!isMapping(value)) {
        throw new InvalidValue("a mapping of database name to {upstream: URL, ...}", {
          value: typeof raw === "string" ? raw : value,
          mask: typeof raw === "string" ? "url" : "none",
        });
      }
      return Object.entries(value).map(([name, entry]) =>
        at(name, entry, "url", (e) => parseDatabase(name, e, o.overrides)),
      );
    },
    format: (v) => v.map((d) => d.name).join(","),
  };
}

function parseDatabase(
  name: string,
  raw: unknown,
  overrides: {
    pool_size: SettingSpec<number>;
    min_pool_size: SettingSpec<number>;
    pool_mode: SettingSpec<PoolMode>;
    retry: SettingSpec<RetryMode>;
  },
): DatabaseSpec {
  if (name === "" || name.length > 63) {
    throw new InvalidValue("a database name of 1 to 63 characters");
  }
  if (name === ADMIN_DATABASE) {
    throw new InvalidValue(
      `a database name other than ${quote(ADMIN_DATABASE)} (the admin console)`,
    );
  }
  const entry = typeof raw === "string" ? { upstream: raw } : raw;
  if (!isMapping(entry)) {
    throw new InvalidValue("a URL or a mapping {upstream: URL, pool_size, ...}", { mask: "url" });
  }
  checkKeys(entry, DATABASE_KEYS);
  if (entry.upstream === undefined)
    throw new InvalidValue("an upstream URL", { path: ["upstream"], value: undefined });
  const spec: {
    name: string;
    url: UrlParts;
    pool_size?: number;
    min_pool_size?: number;
    pool_mode?: PoolMode;
    retry?: RetryMode;
  } = { name, url: at("upstream", entry.upstream, "url", parsePostgresUrl) };
  if (entry.pool_size !== undefined) {
    spec.pool_size = at("pool_size", entry.pool_size, "none", (v) => overrides.pool_size.parse(v));
  }
  if (entry.min_pool_size !== undefined) {
    spec.min_pool_size = at("min_pool_size", entry.min_pool_size, "none", (v) =>
      overrides.min_pool_size.parse(v),
    );
  }
  if (entry.pool_mode !== undefined) {
    spec.pool_mode = at("pool_mode", entry.pool_mode, "none", (v) => overrides.pool_mode.parse(v));
  }
  if (entry.retry !== undefined) {
    spec.retry = at("retry", entry.retry, "none", (v) => overrides.retry.parse(v));
  }
  return spec;
}

/** A command line, or argv; shown in SHOW CONFIG as its program only (an argument may be a token). */
function passwordCommand(o: {
  group: SettingGroup;
  doc: string;
}): SettingSpec<PasswordCommand | null> {
  const expected = "a command line (a string), or a list of strings (argv, run without a shell)";
  return {
    group: o.group,
    type: "command | list of strings",
    default: null,
    doc: o.doc,
    cli: "string",
    parse(raw) {
      if (raw === null || raw === undefined || raw === "") return null;
      if (typeof raw === "string") {
        if (raw.trim() === "") throw new InvalidValue(expected, { mask: "secret" });
        return raw;
      }
      if (
        Array.isArray(raw) &&
        raw.length > 0 &&
        raw.every((a) => typeof a === "string") &&
        raw[0] !== ""
      ) {
        return [...raw] as string[];
      }
      throw new InvalidValue(expected, { mask: "secret" });
    },
    format(v) {
      if (v === null) return "";
      const argv = typeof v === "string" ? v.trim().split(/\s+/) : v;
      return argv.length > 1 ? `${argv[0]} ...` : argv[0];
    },
  };
}

const USER_KEYS = ["name", "password", "password_file", "admin"] as const;
/** Reads a mounted secret; a trailing newline (echo > file) is not part of the password. */
function readSecretFile(raw: unknown): string {
  if (typeof raw !== "string" || raw === "") throw new InvalidValue("a file path");
  let content: string;
  try {
    content = readFileSync(raw, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new InvalidValue(`a readable file (${code})`);
  }
  content = content.replace(/\r?\n$/, "");
  if (content === "") throw new InvalidValue("a file holding a password (it is empty)");
  return content;
}

function userList(o: { group: SettingGroup; doc: string }): SettingSpec<ReadonlyArray<UserConfig>> {
  return {
    group: o.group,
    type: "list of users",
    default: [],
    doc: o.doc,
    cli: "string",
    parse(raw) {
      const value = structured(raw);
      if (value === null || value === undefined) return [];
      if (!Array.isArray(value)) {
        throw new InvalidValue("a list of {name, password | password_file, admin}", {
          value,
          mask: "secret",
        });
      }
      const users: UserConfig[] = [];
      value.forEach((entry, i) => {
        const user = at(i, entry, "secret", parseUser);
        if (users.some((u) => u.name === user.name)) {
          throw new InvalidValue("each user name once", { path: [i, "name"], value: user.name });
        }
        users.push(user);
      });
      return users;
    },
    format: (v) => v.map((u) => u.name).join(","),
  };
}

function parseUser(raw: unknown): UserConfig {
  if (!isMapping(raw)) throw new InvalidValue("a mapping {name, password | password_file, admin}");
  checkKeys(raw, USER_KEYS);
  const name = at("name", raw.name, "none", (v) => {
    if (typeof v !== "string" || v === "") throw new InvalidValue("a user name (a string)");
    return v;
  });
  let password: string;
  if (raw.password !== undefined && raw.password_file !== undefined) {
    throw new InvalidValue("password or password_file, not both", {
      path: ["password_file"],
      value: raw.password_file,
    });
  } else if (raw.password !== undefined) {
    password = at("password", raw.password, "secret", (v) => {
      // YAML reads 0123 as the number 123: only a quoted string is taken as a password.
      if (typeof v !== "string" || v === "") throw new InvalidValue("a string (quote it in YAML)");
      return v;
    });
  } else if (raw.password_file !== undefined) {
    password = at("password_file", raw.password_file, "none", readSecretFile);
  } else {
    throw new InvalidValue("a password or a password_file", { path: ["password"] });
  }
  const admin = raw.admin === undefined ? false : at("admin", raw.admin, "none", parseBool);
  // readSecretFile took only a non-empty string: the path, kept to read the file again later.
  const file =
    raw.password_file === undefined ? {} : { password_file: raw.password_file as string };
  return { name, password, admin, ...file };
}

// ---------------------------------------------------------------------------------------------
// The table. Order here is the order of --help, SHOW CONFIG and config/pgsidecar.yaml.
// ---------------------------------------------------------------------------------------------

function defineSettings<S extends Record<string, SettingSpec<unknown>>>(
  specs: S,
): {
  readonly [K in keyof S & string]: S[K] & {
    readonly key: K;
    readonly flag: string;
    readonly env: string;
  };
} {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(specs)) {
    out[key] = Object.freeze({ ...spec, key, flag: flagOf(key), env: envOf(key) });
  }
  return Object.freeze(out) as never;
}

const pool_size = integer({
  group: "Pool",
  default: 20,
  min: 1,
  max: 10_000,
  doc: "Most backends per (database, user).",
});
const min_pool_size = integer({
  group: "Pool",
  default: 0,
  min: 0,
  max: 10_000,
  doc: "Backends kept open per (database, user) even when idle; at most pool_size.",
});
const pool_mode = oneOf({
  group: "Pool",
  values: POOL_MODES,
  default: "transaction",
  doc: "When a backend goes back to the pool: after each transaction, or when the client leaves.",
});
const retry = oneOf({
  group: "Retry",
  values: RETRY_MODES,
  default: "safe",
  doc: "Replay a unit on another backend when its backend is lost before any reply: off, read-only units (safe), or all.",
});

export const SETTINGS = defineSettings({
  listen: hostPort({
    group: "Listen",
    default: "127.0.0.1:6432",
    doc: "Address for Postgres clients: host:port, [ipv6]:port, or a port alone (127.0.0.1).",
  }),
  unix_socket_dir: optionalText({
    group: "Listen",
    doc: "Also listen on <dir>/.s.PGSQL.<port> (unset: no unix socket).",
  }),
  upstream: upstreamUrl({
    group: "Upstream",
    doc: "Postgres to connect to: postgres://user:password@host:port/db?sslmode=...; several hosts as host1:port1,host2:port2 with target_session_attrs (any, read-write, read-only, primary, standby, prefer-standby) and load_balance_hosts (disable, random) as in libpq; required unless databases is set.",
  }),
  password_command: passwordCommand({
    group: "Upstream",
    doc: "Command that prints the upstream password (stdout, trimmed) for upstream URLs without one: a shell line, or a YAML list run without a shell; run again after password_command_ttl and after a 28P01.",
  }),
  password_command_ttl: duration({
    group: "Upstream",
    default: "5m",
    zeroMeans: "run for every server login",
    doc: "How long a password printed by password_command is used for new server logins.",
  }),
  password_command_timeout: duration({
    group: "Upstream",
    default: "10s",
    doc: "password_command is killed after this long (a failure: the last password is kept).",
  }),
  upstream_auth: oneOf({
    group: "Upstream",
    values: UPSTREAM_AUTH,
    default: "password",
    doc: "How each URL's user without a password in its URL logs in upstream: password (password_command, or its users entry), or aws-rds-iam (an RDS IAM token signed for the URL's first host with the default AWS credential chain, renewed every 10 minutes; needs sslmode=require or stronger).",
  }),
  aws_region: awsRegion({
    group: "Upstream",
    doc: "AWS region of the RDS/Aurora database, for upstream_auth: aws-rds-iam; unset: AWS_REGION, else AWS_DEFAULT_REGION from the environment.",
  }),
  databases: databaseMap({
    group: "Upstream",
    doc: 'Extra logical databases: name -> {upstream, pool_size, min_pool_size, pool_mode, retry}; a missing user/password is taken from upstream; "*" serves any other name from its server (the URL\'s database is replaced by the name asked for).',
    overrides: { pool_size, min_pool_size, pool_mode, retry },
  }),
  any_database: boolean({
    group: "Upstream",
    default: true,
    doc: 'A database name not in databases is served from upstream\'s server under that name (an implicit "*" entry; one pool per database and user); false: such clients get 3D000 from the sidecar.',
  }),
  users: userList({
    group: "Clients",
    doc: "Client credentials: [{name, password | password_file, admin}]; the upstream URL's user is always added. For an upstream URL without a password, its user's password here logs in upstream too; a password_file is then re-read when it changes, for new server logins.",
  }),
  auth_type: oneOf({
    group: "Clients",
    values: AUTH_TYPES,
    default: "scram-sha-256",
    doc: "How clients authenticate to the sidecar.",
  }),
  max_client_conn: integer({
    group: "Clients",
    default: 10_000,
    min: 1,
    max: 1_000_000,
    doc: "Most client connections at once; further ones are refused.",
  }),
  client_login_timeout: duration({
    group: "Clients",
    default: "15s",
    doc: "Time a client has to finish startup and authentication.",
  }),
  client_idle_timeout: duration({
    group: "Clients",
    default: 0,
    zeroMeans: "off",
    doc: "Close a client idle (outside a transaction) this long.",
  }),
  client_write_timeout: duration({
    group: "Clients",
    default: "60s",
    zeroMeans: "off",
    doc: "Close a client that holds a backend but has not read its results this long (its socket full), and free the backend.",
  }),
  max_message_bytes: size({
    group: "Clients",
    default: "256MB",
    min: 1024,
    max: 1024 ** 3,
    doc: "Largest client message after login, buffered whole (bounds a client's memory); a longer one is a protocol violation (08P01). Postgres's own limit is 1GB.",
  }),
  pool_mode,
  pool_size,
  min_pool_size,
  pool_idle_timeout: duration({
    group: "Pool",
    default: 0,
    zeroMeans: "off",
    doc: "A (database, user) pool no client has used this long closes all its backends, min_pool_size included, and sends nothing upstream until a client needs one (scale-to-zero computes stay asleep).",
  }),
  query_wait_timeout: duration({
    group: "Pool",
    default: "30s",
    zeroMeans: "forever",
    doc: "How long a unit waits for a backend before an error (57P03).",
  }),
  max_prepared_statements: integer({
    group: "Pool",
    default: 500,
    min: 0,
    max: 100_000,
    doc: "Per-backend LRU of prepared statements; 0 passes named statements through and pins the client.",
  }),
  track_extra_parameters: nameList({
    group: "Pool",
    default: ["IntervalStyle"],
    doc: "Client parameters kept in step on each backend, besides those Postgres reports (ParameterStatus).",
  }),
  server_connect_timeout: duration({
    group: "Backends",
    default: "5s",
    doc: "Time to open a backend connection and log in.",
  }),
  server_login_retry: duration({
    group: "Backends",
    default: "0.5s",
    doc: "First wait before reconnecting to a failing upstream; doubles up to server_login_retry_max.",
  }),
  server_login_retry_max: duration({
    group: "Backends",
    default: "10s",
    doc: "Longest wait between reconnect attempts.",
  }),
  server_check_delay: duration({
    group: "Backends",
    default: "10s",
    doc: "A backend idle this long is checked before it is used.",
  }),
  server_check_query: text({
    group: "Backends",
    default: "",
    doc: 'Query of that check; "" sends an empty Query.',
  }),
  server_check_timeout: duration({
    group: "Backends",
    default: "2s",
    doc: "Time the check query has to answer; else the backend is dropped.",
  }),
  server_lifetime: duration({
    group: "Backends",
    default: "3600s",
    zeroMeans: "unlimited",
    doc: "Close a backend this old when it is next released.",
  }),
  server_idle_timeout: duration({
    group: "Backends",
    default: "180s",
    zeroMeans: "never",
    doc: "Close a backend idle this long (below cloud LB idle timeouts, 4 min on Azure).",
  }),
  server_reset_query: text({
    group: "Backends",
    default: "DISCARD ALL",
    doc: "Sent when a session-mode client releases its backend.",
  }),
  server_reset_timeout: duration({
    group: "Backends",
    default: "5s",
    doc: "Time to roll back/reset a backend a client left dirty; then it is destroyed.",
  }),
  server_keepalive_idle: duration({
    group: "Backends",
    default: "30s",
    doc: "TCP keepalive: idle time before the first probe.",
  }),
  server_keepalive_interval: duration({
    group: "Backends",
    default: "10s",
    doc: "TCP keepalive: time between probes.",
  }),
  server_keepalive_count: integer({
    group: "Backends",
    default: 3,
    min: 1,
    max: 100,
    doc: "TCP keepalive: unanswered probes before the connection is dead.",
  }),
  response_timeout: duration({
    group: "Backends",
    default: 0,
    zeroMeans: "off",
    doc: "Longest wait for a backend's reply to a sent unit; the backend's query is cancelled and the backend closed.",
  }),
  server_password_without_tls: oneOf({
    group: "Backends",
    values: PASSWORD_WITHOUT_TLS,
    default: "loopback",
    doc: "Whether a cleartext or md5 password may go upstream over TCP without TLS: never, to loopback addresses only, or always (unix sockets: always).",
  }),
  server_scram_max_iterations: integer({
    group: "Backends",
    default: 100_000,
    min: 4096,
    max: 0x7fffffff,
    doc: "Most SCRAM iterations (PBKDF2 rounds) an upstream may ask for; more is refused.",
  }),
  retry,
  retry_max: integer({
    group: "Retry",
    default: 3,
    min: 0,
    max: 100,
    doc: "Most replays of one unit.",
  }),
  retry_buffer_bytes: size({
    group: "Retry",
    default: "1MB",
    min: 0,
    max: 1024 ** 3,
    doc: "Largest unit kept for replay; a bigger one is not retried.",
  }),
  tls_cert_file: optionalText({
    group: "TLS",
    doc: "Certificate (PEM) for client TLS; set with tls_key_file.",
  }),
  tls_key_file: optionalText({
    group: "TLS",
    doc: "Private key (PEM) for client TLS; set with tls_cert_file.",
  }),
  client_tls: oneOf({
    group: "TLS",
    values: CLIENT_TLS_MODES,
    default: "allow",
    doc: "allow: TLS when a client asks for it, with tls_cert_file or else an ephemeral self-signed certificate made at start (sslmode=require works, verify-ca/verify-full need tls_cert_file); require: TCP clients without TLS are refused (needs tls_cert_file); off: no client TLS (SSLRequest answered N).",
  }),
  http_listen: hostPortOrOff({
    group: "Admin",
    default: "127.0.0.1:9930",
    doc: 'Address of /metrics, /startup, /livez, /readyz, /healthz, /status and POST /quitquitquit ("off" disables); /status only to loopback peers or admin users (basic auth), /quitquitquit only to loopback peers.',
  }),
  readyz_checks_upstream: boolean({
    group: "Admin",
    default: false,
    doc: "/readyz also requires the upstream to be reachable.",
  }),
  startup_checks_upstream: boolean({
    group: "Admin",
    default: false,
    doc: "/startup also waits for one server login to each configured database (as its URL's user).",
  }),
  admin_users: nameList({
    group: "Admin",
    default: [],
    doc: `Users allowed on the admin console database "${ADMIN_DATABASE}" (each in users, or the upstream user).`,
  }),
  log_level: oneOf({
    group: "Logging",
    values: LOG_LEVELS,
    default: "info",
    doc: "Least severe level logged.",
  }),
  log_format: oneOf({
    group: "Logging",
    values: LOG_FORMATS,
    default: "json",
    doc: "One JSON object per line, or human-readable lines.",
  }),
  shutdown_timeout: duration({
    group: "Shutdown",
    default: "30s",
    doc: "On SIGTERM or /quitquitquit, the longest drain, counted from the signal (min_sigterm_delay included; Cloud SQL Auth Proxy's max-sigterm-delay): then open transactions are cut and the process exits.",
  }),
  min_sigterm_delay: duration({
    group: "Shutdown",
    default: 0,
    doc: "On SIGTERM or /quitquitquit, keep accepting this long first (while endpoints are removed); at most shutdown_timeout.",
  }),
});

export type Settings = typeof SETTINGS;
export type SettingKey = keyof Settings;
export const SETTING_KEYS = Object.keys(SETTINGS) as SettingKey[];
/** The table as a list, in declaration order. */
export const SETTING_LIST: ReadonlyArray<Setting> = Object.values(
  SETTINGS,
) as ReadonlyArray<Setting>;

type ValueOf<S> = S extends SettingSpec<infer T> ? T : never;
type Parsed = { readonly [K in SettingKey]: ValueOf<Settings[K]> };

/**
 * The validated, deep-frozen configuration. Durations are milliseconds and sizes bytes, under the
 * setting's own name (query_wait_timeout: 30000).
 */
export interface Config extends Omit<Parsed, "databases" | "users"> {
  /** Every logical database, the upstream URL's own included (under its database name). */
  readonly databases: Readonly<Record<string, DatabaseConfig>>;
  /**
   * The "*" entry (explicit, or implied by any_database and upstream): serves any other database
   * name, with `target.database` replaced by that name. Its own name and database are "*".
   */
  readonly fallback_database: DatabaseConfig | null;
  /** `users`, plus the upstream URL's user (and each database URL's) when it has a password. */
  readonly users: ReadonlyArray<UserConfig>;
}
