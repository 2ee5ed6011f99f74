// The validator library: InvalidValue, the Setting descriptor, and the builders the settings table
// uses (integer, duration, size, one-of, text, boolean, names, host:port, command).

import {
  DURATION_EXPECTED,
  formatDuration,
  formatSize,
  MAX_DURATION_MS,
  parseDuration,
  parseSize,
  SIZE_EXPECTED,
} from "./duration.js";
import type { ListenAddress, PasswordCommand } from "./types.js";

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
export function at<T>(
  segment: string | number,
  raw: unknown,
  mask: Mask,
  parse: (raw: unknown) => T,
): T {
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

export const quote = (s: string): string => JSON.stringify(s);

export function integer(o: {
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

export function duration(o: {
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

export function size(o: {
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

export function oneOf<const V extends string>(o: {
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

export function text(o: {
  group: SettingGroup;
  default: string;
  doc: string;
}): SettingSpec<string> {
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
export function optionalText(o: { group: SettingGroup; doc: string }): SettingSpec<string | null> {
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

export function awsRegion(o: { group: SettingGroup; doc: string }): SettingSpec<string | null> {
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

export function boolean(o: {
  group: SettingGroup;
  default: boolean;
  doc: string;
}): SettingSpec<boolean> {
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

export function parseBool(raw: unknown): boolean {
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

export function nameList(o: {
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

export function hostPort(o: {
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

export function hostPortOrOff(o: {
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

/** A command line, or argv; shown in SHOW CONFIG as its program only (an argument may be a token). */
export function passwordCommand(o: {
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
