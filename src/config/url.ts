// Postgres URLs (libpq's URI form: postgresql://[user[:password]@][host][:port][/dbname][?k=v&...])
// https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS

import { parse as parseConnectionString } from "pg-connection-string";
import type { SslMode, TargetSessionAttrs, UpstreamTarget, UrlParts } from "./types.js";
import { SSL_MODES, TARGET_SESSION_ATTRS } from "./types.js";
import { InvalidValue, quote, type SettingGroup, type SettingSpec } from "./validators.js";

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

/**
 * Parses a libpq URL without applying the user/database fallbacks. Throws InvalidValue.
 *
 * Each host, with the user and password, is parsed by pg-connection-string (node-postgres's own
 * parser: WHATWG URL underneath, so IPv6 brackets, percent-encoded socket directories and the
 * user info are read as node-postgres reads them). What it cannot do as libpq does stays here:
 * several hosts (`h1:5432,h2:5433` is not a URL host: it throws), a password with an unencoded
 * '/' or '@' (the user info ends at the last '@'), strict percent-encoding (it keeps `%ZZ` as
 * text), the database (it leaves `%2F` encoded), and the query: libpq decoding ('+' is not a
 * space), every parameter checked, and no side effects (it reads sslrootcert's file and warns on
 * the process about sslmode values).
 */
export function parsePostgresUrl(raw: unknown): UrlParts {
  if (typeof raw !== "string") {
    throw new InvalidValue("a postgres:// or postgresql:// URL (a string)");
  }
  const url = raw.trim();
  const scheme = /^(postgres|postgresql):\/\/([^?]*)(?:\?(.*))?$/s.exec(url);
  if (scheme === null) throw urlError("it must start with postgres:// or postgresql://", url);
  const [, , main, query = ""] = scheme;
  if (main.includes("#")) throw urlError("'#' must be percent-encoded as %23", url);

  // userinfo ends at the last '@': a password with an unencoded '@' or '/' still parses.
  const atSign = main.lastIndexOf("@");
  const userinfo = atSign >= 0 ? main.slice(0, atSign) : null;
  const afterAt = main.slice(atSign + 1);
  const slash = afterAt.indexOf("/");
  const hostspec = slash >= 0 ? afterAt.slice(0, slash) : afterAt;
  let database = slash >= 0 ? decode(afterAt.slice(slash + 1), "database", url) : null;
  if (userinfo !== null) {
    const colon = userinfo.indexOf(":");
    decode(colon >= 0 ? userinfo.slice(0, colon) : userinfo, "user name", url);
    if (colon >= 0) decode(userinfo.slice(colon + 1), "password", url);
  }
  // libpq's multi-host form: host1[:port1],host2[:port2],... (a missing port is 5432, or `port`).
  const specs = hostspec.split(",");
  const first = connectionString(userinfo, specs[0], url);
  let user: string | null = first.user;
  let password: string | null = first.password;
  let hosts: Array<{ host: string; port: number | null }> = specs.map((spec, i) =>
    i === 0 ? first : connectionString(null, spec, url),
  );
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

/**
 * One host (and, for the first, the user info) as pg-connection-string reads them: given only the
 * authority, so that it reads no query parameter (and so no file). An unencoded '/' or '@' in the
 * user info is encoded first, so that its URL parser does not end the user info there.
 */
function connectionString(
  userinfo: string | null,
  spec: string,
  url: string,
): { host: string; port: number | null; user: string | null; password: string | null } {
  const auth =
    userinfo === null ? "" : `${userinfo.replace(/[/@]/g, (c) => (c === "/" ? "%2F" : "%40"))}@`;
  let cs: ReturnType<typeof parseConnectionString>;
  try {
    // ":5433" alone (libpq: the default host, that port) is no URL host: give it one.
    cs = parseConnectionString(
      `postgres://${auth}${spec.startsWith(":") ? "localhost" : ""}${spec}/`,
    );
  } catch {
    // The WHATWG parser says only "Invalid URL": name the port when that is what it refused.
    const port = /^(?:\[[^\]]*\]|[^:[\]]*):(.*)$/.exec(spec);
    if (port !== null) parsePort(port[1], url);
    throw urlError(`host ${quote(spec.slice(0, 80))} is not valid`, url);
  }
  return {
    host: cs.host ?? "",
    port: cs.port ? parsePort(cs.port, url) : null,
    user: userinfo === null ? null : (cs.user ?? null),
    password: userinfo === null || !userinfo.includes(":") ? null : (cs.password ?? null),
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

export function upstreamUrl(o: {
  group: SettingGroup;
  doc: string;
}): SettingSpec<UpstreamTarget | null> {
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
