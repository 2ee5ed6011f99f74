// The configuration's value types: what a validated setting holds (no parsing here).

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
