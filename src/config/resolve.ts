// Checks across settings, and the derived databases, fallback database and users.

import { accessSync, constants } from "node:fs";
import { isLoopbackHost } from "../loopback.js";
import { ConfigError } from "./config-error.js";
import { formatDuration } from "./duration.js";
import {
  ADMIN_DATABASE,
  AWS_REGION,
  type Config,
  type DatabaseConfig,
  type DatabaseSpec,
  FALLBACK_DATABASE,
  formatHostPort,
  formatTarget,
  type ListenAddress,
  type Mask,
  SETTINGS,
  type SettingKey,
  toTarget,
  type UpstreamTarget,
  type UserConfig,
} from "./schema.js";

export type Fail = (
  key: SettingKey,
  path: ReadonlyArray<string | number>,
  value: unknown,
  expected: string,
  mask?: Mask,
) => ConfigError;

/** Checks across settings and the derived `databases` / `users`. */
export function resolve(p: Record<string, unknown>, fail: Fail, env: NodeJS.ProcessEnv): Config {
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
