// The package's public entry point (`import { startSidecar } from "pgsidecar"`): start and stop a
// sidecar in-process, e.g. in front of a test database in an application's own integration tests.
// Everything else under dist/ is internal and may change in any release.

import { pino } from "pino";
import { ConfigError, loadConfig } from "./config/load.js";
import type { Config } from "./config/schema.js";
import { type LogLevel, loggerOptions } from "./log.js";
import { Sidecar } from "./proxy.js";

export type { Config } from "./config/schema.js";

/** The name of a setting, as in the YAML file (`pool_size`); `--pool-size` on the command line. */
export type SettingName = Exclude<keyof Config, "fallback_database">;

/**
 * What a setting accepts, written as in the YAML file: a number or a string such as `"5s"` or
 * `"8MB"` for durations and sizes, one of the listed words for a choice, a URL string for
 * `upstream`, and YAML-shaped values (objects, lists) for `databases`, `users` and the like.
 */
export type SettingInput<T> = T extends null
  ? null
  : T extends boolean
    ? boolean | "true" | "false"
    : T extends number
      ? number | string
      : T extends string
        ? T
        : T extends ReadonlyArray<string>
          ? ReadonlyArray<string> | string
          : string; // an address (`127.0.0.1:6432`) or a URL

/** Settings given as YAML-shaped mappings or lists. */
type StructuredSetting = "databases" | "users";

/** Every setting of the YAML file and the CLI, each optional; validated as the CLI validates it. */
export type SidecarSettings = {
  readonly [K in SettingName]?: K extends StructuredSetting ? unknown : SettingInput<Config[K]>;
};

/** Options of {@link startSidecar} that are not settings. */
export interface SidecarApiOptions {
  /**
   * Where log lines (JSON, one per line; passwords masked) go: `"stderr"` (the default), `"silent"`,
   * or a function that gets each line. The level is the `log_level` setting, `warn` by default here.
   */
  readonly log?: "stderr" | "silent" | ((line: string) => void);
}

/**
 * The settings of a sidecar plus {@link SidecarApiOptions}. Unlike the CLI, `listen` defaults to
 * `127.0.0.1:0` (a free port, see {@link RunningSidecar.port}), `http_listen` to `off` and
 * `log_level` to `warn`; `PGSIDECAR_*` environment variables and config files are not read.
 */
export type StartSidecarOptions = SidecarSettings & SidecarApiOptions;

/** A started sidecar. */
export interface RunningSidecar {
  /** The validated, frozen configuration (durations in milliseconds, sizes in bytes). */
  readonly config: Config;
  /** The host clients connect to, as in `listen`. */
  readonly host: string;
  /** The bound client port (the free port chosen for `listen: "127.0.0.1:0"`). */
  readonly port: number;
  /** The bound HTTP port (metrics, health, /status), or null when `http_listen` is off. */
  readonly httpPort: number | null;
  /**
   * A `postgres://` URL for clients of this sidecar. The user, password and database default to the
   * `upstream` URL's (the password only if that user is one of the sidecar's users).
   */
  url(options?: { user?: string; password?: string; database?: string }): string;
  /** The Prometheus text exposition, as `GET /metrics` serves it. */
  metrics(): Promise<string>;
  /** The document `GET /status` serves (pools, clients, servers); its shape is not stable. */
  status(): unknown;
  /**
   * Graceful drain, as on SIGTERM: stops accepting clients, closes each at its next transaction
   * boundary, then closes every server. Bounded by `shutdown_timeout` (open transactions are cut
   * then); resolves `"timeout"` if that happened. Calling it again returns the same promise.
   */
  stop(): Promise<"drained" | "timeout">;
}

const API_OPTIONS = ["log"] as const;
// An API option must never shadow a setting of the same name.
const noSettingNamedLikeAnOption: Extract<SettingName, (typeof API_OPTIONS)[number]> extends never
  ? true
  : never = true;
void noSettingNamedLikeAnOption;

/** Defaults of the API where the CLI's do not fit a sidecar inside a test process. */
const API_DEFAULTS: Readonly<Record<string, string>> = {
  listen: "127.0.0.1:0",
  http_listen: "off",
  log_level: "warn",
};

/**
 * Validates the settings with the CLI's own loader and starts a sidecar in this process; resolves
 * once it listens. An invalid setting throws an Error named `ConfigError` (`code` =
 * `"config_invalid"`) with the same one-line message the CLI prints, naming the option:
 *
 * ```ts
 * const sidecar = await startSidecar({ upstream: "postgres://app:secret@127.0.0.1:5432/app" });
 * const pool = new pg.Pool({ connectionString: sidecar.url() });
 * // ... run the code under test; pg_terminate_backend() on its server is survived
 * await pool.end();
 * await sidecar.stop();
 * ```
 */
export async function startSidecar(options: StartSidecarOptions = {}): Promise<RunningSidecar> {
  const argv: Record<string, unknown> = { ...API_DEFAULTS };
  for (const [key, value] of Object.entries(options)) {
    if (!(API_OPTIONS as ReadonlyArray<string>).includes(key) && value !== undefined)
      argv[key] = value;
  }
  let config: Config;
  try {
    config = loadConfig({ argv, env: environment() });
  } catch (err) {
    if (err instanceof ConfigError) err.message = asOptionError(err.message);
    throw err;
  }
  const sidecar = new Sidecar(config, logger(options.log ?? "stderr", config.log_level));
  await sidecar.start();
  let stopping: Promise<"drained" | "timeout"> | null = null;
  const host = config.listen.host;
  return {
    config,
    host,
    port: sidecar.port,
    httpPort: config.http_listen === null ? null : sidecar.httpPort,
    url(opts = {}) {
      const user = opts.user ?? config.upstream?.user;
      const database = opts.database ?? config.upstream?.database;
      if (user === undefined || database === undefined)
        throw new Error("url(): no upstream setting to take the user and database from; pass them");
      const password = opts.password ?? config.users.find((u) => u.name === user)?.password;
      const auth = encodeURIComponent(user) + (password ? `:${encodeURIComponent(password)}` : "");
      return `postgres://${auth}@${clientHost(host)}:${sidecar.port}/${encodeURIComponent(database)}`;
    },
    metrics: () => sidecar.metrics.registry.metrics(),
    status: () => sidecar.status(),
    stop() {
      stopping ??= sidecar.drain();
      return stopping;
    },
  };
}

/** The process environment without PGSIDECAR_* (AWS_REGION and the like still apply). */
function environment(): Record<string, string | undefined> {
  return Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("PGSIDECAR_")),
  );
}

/** The loader names CLI flags as the source of a value; here they are startSidecar's options. */
function asOptionError(message: string): string {
  return message
    .replace(
      /\(from --([a-z0-9-]+)\)/g,
      (_, flag: string) => `(startSidecar option ${flag.replaceAll("-", "_")})`,
    )
    .replace("(from the command line)", "(startSidecar option)");
}

function logger(sink: NonNullable<SidecarApiOptions["log"]>, level: LogLevel): pino.Logger {
  if (sink === "silent") return pino({ level: "silent" });
  const options = loggerOptions(level);
  if (sink === "stderr") return pino(options, process.stderr);
  return pino(options, { write: (line: string) => sink(line.replace(/\n$/, "")) });
}

/** A wildcard listen address is reached over loopback; an IPv6 literal needs brackets in a URL. */
function clientHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}
