// Every setting once: type, default, unit, doc line; flags, env names, validation and SHOW CONFIG
// derive from it. The value types are in types.ts, the builders in validators.ts, URLs in url.ts,
// the databases and users entries in entries.ts; this module re-exports what others import.

import { databaseMap, userList } from "./entries.js";
import {
  ADMIN_DATABASE,
  AUTH_TYPES,
  CLIENT_TLS_MODES,
  type DatabaseConfig,
  LOG_FORMATS,
  LOG_LEVELS,
  PASSWORD_WITHOUT_TLS,
  POOL_MODES,
  RETRY_MODES,
  UPSTREAM_AUTH,
  type UserConfig,
} from "./types.js";
import { upstreamUrl } from "./url.js";
import {
  awsRegion,
  boolean,
  duration,
  envOf,
  flagOf,
  hostPort,
  hostPortOrOff,
  integer,
  nameList,
  oneOf,
  optionalText,
  passwordCommand,
  type Setting,
  type SettingSpec,
  size,
  text,
} from "./validators.js";

export { closest } from "./hint.js";
export * from "./types.js";
export { formatTarget, parsePostgresUrl, redactUrl, toTarget } from "./url.js";
export {
  AWS_REGION,
  ENV_PREFIX,
  envOf,
  flagOf,
  formatHostPort,
  InvalidValue,
  type Mask,
  parseHostPort,
  type Setting,
  type SettingGroup,
  type SettingSpec,
  type UnknownKey,
} from "./validators.js";

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
