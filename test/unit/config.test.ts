// Config: defaults, layering, units, URLs, errors that name key/value/source and never a password.

import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, expectTypeOf, it } from "vitest";
import { formatDuration, formatSize, parseDuration, parseSize } from "../../src/config/duration.js";
import {
  buildCliOptions,
  type Config,
  cliHelp,
  describeConfig,
  loadConfig,
  parseCli,
  redactUrl,
} from "../../src/config/load.js";
import {
  type DatabaseConfig,
  type ListenAddress,
  parsePostgresUrl,
  SETTING_LIST,
  SETTINGS,
  toTarget,
  type UpstreamTarget,
  type UserConfig,
} from "../../src/config/schema.js";
import { errorOf } from "../helpers/config-errors.js";

const dir = mkdtempSync(join(tmpdir(), "pgsidecar-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
function yamlFile(text: string): string {
  const path = join(dir, `c${++files}.yaml`);
  writeFileSync(path, text);
  return path;
}

const UPSTREAM = "postgres://app:s3cr3t@db.internal:5432/appdb";
const minimal = (extra: Parameters<typeof loadConfig>[0] = {}): Config =>
  loadConfig({ env: {}, argv: { upstream: UPSTREAM }, ...extra });

describe("defaults", () => {
  it("starts from the upstream URL alone with every documented default", () => {
    const c = minimal();
    expect(c.listen).toEqual({ host: "127.0.0.1", port: 6432 });
    expect(c.unix_socket_dir).toBeNull();
    expect(c.auth_type).toBe("scram-sha-256");
    expect(c.pool_mode).toBe("transaction");
    expect(c.pool_size).toBe(20);
    expect(c.min_pool_size).toBe(0);
    expect(c.max_client_conn).toBe(10_000);
    expect(c.query_wait_timeout).toBe(30_000);
    expect(c.client_login_timeout).toBe(15_000);
    expect(c.client_idle_timeout).toBe(0);
    expect(c.server_connect_timeout).toBe(5_000);
    expect(c.server_login_retry).toBe(500);
    expect(c.server_login_retry_max).toBe(10_000);
    expect(c.server_check_delay).toBe(10_000);
    expect(c.server_check_query).toBe("");
    expect(c.server_check_timeout).toBe(2_000);
    expect(c.server_lifetime).toBe(3_600_000);
    expect(c.server_idle_timeout).toBe(180_000);
    expect(c.server_reset_query).toBe("DISCARD ALL");
    expect(c.server_reset_timeout).toBe(5_000);
    expect(c.server_keepalive_idle).toBe(30_000);
    expect(c.server_keepalive_interval).toBe(10_000);
    expect(c.server_keepalive_count).toBe(3);
    expect(c.response_timeout).toBe(0);
    expect(c.max_message_bytes).toBe(256 * 1024 * 1024);
    expect(c.retry).toBe("safe");
    expect(c.retry_max).toBe(3);
    expect(c.retry_buffer_bytes).toBe(1024 * 1024);
    expect(c.max_prepared_statements).toBe(500);
    expect(c.track_extra_parameters).toEqual(["IntervalStyle"]);
    expect(c.tls_cert_file).toBeNull();
    expect(c.tls_key_file).toBeNull();
    expect(c.http_listen).toEqual({ host: "127.0.0.1", port: 9930 });
    expect(c.readyz_checks_upstream).toBe(false);
    expect(c.admin_users).toEqual([]);
    expect(c.log_level).toBe("info");
    expect(c.log_format).toBe("json");
    expect(c.shutdown_timeout).toBe(30_000);
    expect(c.min_sigterm_delay).toBe(0);
  });

  it("derives the upstream's database entry and user", () => {
    const c = minimal();
    expect(c.upstream).toEqual({
      host: "db.internal",
      port: 5432,
      database: "appdb",
      user: "app",
      password: "s3cr3t",
      sslmode: "prefer",
      sslrootcert: null,
      socketPath: null,
      hosts: [{ host: "db.internal", port: 5432, socketPath: null }],
      targetSessionAttrs: "any",
      loadBalanceHosts: false,
    });
    expect(Object.keys(c.databases)).toEqual(["appdb"]);
    expect(c.databases.appdb).toEqual({
      name: "appdb",
      target: c.upstream,
      pool_size: 20,
      min_pool_size: 0,
      pool_mode: "transaction",
      retry: "safe",
    });
    expect(c.users).toEqual([{ name: "app", password: "s3cr3t", admin: false }]);
  });

  it("gives every setting a flag, an env name and a default that validates", () => {
    for (const s of SETTING_LIST) {
      expect(s.flag).toBe(s.key.replaceAll("_", "-"));
      expect(s.env).toBe(`PGSIDECAR_${s.key.toUpperCase()}`);
      expect(s.doc.length).toBeGreaterThan(10);
      expect(() => s.parse(s.default)).not.toThrow();
    }
  });

  it("requires an upstream unless databases is set", () => {
    expect(errorOf(() => loadConfig({ env: {}, argv: {} }))).toMatch(
      /^invalid config: upstream is not set: expected a postgres:\/\/ URL \(--upstream, PGSIDECAR_UPSTREAM/,
    );
    const c = loadConfig({
      env: {},
      argv: {},
      file: yamlFile("databases:\n  reports: postgres://rep:pw@replica/reporting\n"),
    });
    expect(c.upstream).toBeNull();
    expect(Object.keys(c.databases)).toEqual(["reports"]);
  });
});

describe("precedence: defaults < file < env < flags", () => {
  const file = yamlFile(
    [
      `upstream: ${UPSTREAM}`,
      "pool_size: 30",
      "query_wait_timeout: 10",
      "log_level: debug",
      "retry: off",
    ].join("\n"),
  );

  it("takes each setting from the highest layer that sets it", () => {
    const c = loadConfig({
      file,
      env: { PGSIDECAR_POOL_SIZE: "40", PGSIDECAR_QUERY_WAIT_TIMEOUT: "20s" },
      argv: { pool_size: "50" },
    });
    expect(c.pool_size).toBe(50); // flag over env over file
    expect(c.query_wait_timeout).toBe(20_000); // env over file
    expect(c.log_level).toBe("debug"); // file over default
    expect(c.retry).toBe("off");
    expect(c.max_client_conn).toBe(10_000); // default
  });

  it("reports where each value came from", () => {
    const c = loadConfig({
      file,
      env: { PGSIDECAR_POOL_SIZE: "40", PGSIDECAR_QUERY_WAIT_TIMEOUT: "20s" },
      argv: { pool_size: "50" },
    });
    const rows = new Map(describeConfig(c).map((r) => [r.key, r]));
    expect(rows.get("pool_size")).toEqual({
      key: "pool_size",
      value: "50",
      default: "20",
      source: "--pool-size",
    });
    expect(rows.get("query_wait_timeout")).toMatchObject({
      value: "20s",
      default: "30s",
      source: "PGSIDECAR_QUERY_WAIT_TIMEOUT",
    });
    expect(rows.get("log_level")).toMatchObject({ value: "debug", source: `${file}:4` });
    expect(rows.get("max_client_conn")).toMatchObject({ value: "10000", source: "default" });
    expect(rows.get("databases.appdb")).toMatchObject({ source: `${file}:1` });
  });

  it("finds the file through --config or PGSIDECAR_CONFIG", () => {
    expect(loadConfig({ env: { PGSIDECAR_CONFIG: file } }).pool_size).toBe(30);
    expect(loadConfig({ env: {}, argv: { config: file } }).pool_size).toBe(30);
    const other = yamlFile(`upstream: ${UPSTREAM}\npool_size: 7\n`);
    expect(loadConfig({ env: { PGSIDECAR_CONFIG: file }, file: other }).pool_size).toBe(7);
  });

  it("accepts an empty file", () => {
    expect(minimal({ file: yamlFile("# nothing\n") }).pool_size).toBe(20);
  });

  it("ignores unknown PGSIDECAR_* env names (Kubernetes service links)", () => {
    const c = loadConfig({
      env: {
        PGSIDECAR_UPSTREAM: UPSTREAM,
        PGSIDECAR_PORT: "tcp://10.0.0.1:6432",
        PGSIDECAR_SERVICE_HOST: "10.0.0.1",
      },
    });
    expect(c.listen.port).toBe(6432);
  });

  it("reads booleans, lists and structured values from env strings", () => {
    const c = loadConfig({
      env: {
        PGSIDECAR_UPSTREAM: UPSTREAM,
        PGSIDECAR_READYZ_CHECKS_UPSTREAM: "true",
        PGSIDECAR_TRACK_EXTRA_PARAMETERS: "IntervalStyle, search_path",
        PGSIDECAR_USERS: '[{"name": "ops", "password": "pw", "admin": true}]',
        PGSIDECAR_DATABASES: "{reports: {upstream: 'postgres://replica/reporting', pool_size: 4}}",
        PGSIDECAR_UNIX_SOCKET_DIR: "/tmp",
        PGSIDECAR_HTTP_LISTEN: "off",
      },
    });
    expect(c.readyz_checks_upstream).toBe(true);
    expect(c.track_extra_parameters).toEqual(["IntervalStyle", "search_path"]);
    expect(c.users.map((u) => [u.name, u.admin])).toEqual([
      ["ops", true],
      ["app", false],
    ]);
    expect(c.databases.reports.pool_size).toBe(4);
    expect(c.unix_socket_dir).toBe("/tmp");
    expect(c.http_listen).toBeNull();
  });
});

describe("durations and sizes", () => {
  it.each([
    [5, 5000],
    [0.5, 500],
    ["0.5", 500],
    ["300ms", 300],
    ["5s", 5000],
    ["2m", 120_000],
    ["1h", 3_600_000],
    ["1.5h", 5_400_000],
    [0, 0],
    ["0", 0],
    [0.3, 300],
  ] as const)("duration %j is %i ms", (raw, ms) => {
    expect(parseDuration(raw)).toBe(ms);
  });

  it.each([["5 parsecs"], ["-1"], [-1], ["1d"], ["ms"], [""], [0.0001], [true], [null]])(
    "rejects duration %j",
    (raw) => {
      expect(parseDuration(raw)).toBeUndefined();
    },
  );

  it.each([
    [1024, 1024],
    ["1024", 1024],
    ["64kB", 65_536],
    ["8MB", 8 * 1024 ** 2],
    ["1GB", 1024 ** 3],
    ["1.5MB", 1_572_864],
    ["100B", 100],
  ] as const)("size %j is %i bytes", (raw, bytes) => {
    expect(parseSize(raw)).toBe(bytes);
  });

  it.each([["8 parsecs"], ["-1"], [1.5], ["1.1B"], [{}]])("rejects size %j", (raw) => {
    expect(parseSize(raw)).toBeUndefined();
  });

  it("formats back to the shortest exact spelling", () => {
    expect([0, 500, 5000, 90_000, 120_000, 3_600_000].map(formatDuration)).toEqual([
      "0",
      "500ms",
      "5s",
      "90s",
      "2m",
      "1h",
    ]);
    expect([0, 100, 65_536, 64 * 1024 ** 2, 1024 ** 3].map(formatSize)).toEqual([
      "0",
      "100",
      "64kB",
      "64MB",
      "1GB",
    ]);
  });

  it("stores durations as ms and sizes as bytes under the setting's own name", () => {
    const c = loadConfig({
      env: {},
      file: yamlFile(
        `upstream: ${UPSTREAM}\nquery_wait_timeout: 0.25\nserver_lifetime: 1h\nmax_message_bytes: 8MB\nretry_buffer_bytes: 65536\n`,
      ),
    });
    expect(c.query_wait_timeout).toBe(250);
    expect(c.server_lifetime).toBe(3_600_000);
    expect(c.max_message_bytes).toBe(8 * 1024 ** 2);
    expect(c.retry_buffer_bytes).toBe(65_536);
  });

  it("refuses a duration Node's timers cannot hold", () => {
    expect(
      errorOf(() => minimal({ argv: { upstream: UPSTREAM, shutdown_timeout: "1000h" } })),
    ).toBe(
      'invalid config: shutdown_timeout = "1000h" (from --shutdown-timeout): expected a duration of at most 2147483647ms',
    );
  });
});

describe("listen addresses", () => {
  it.each([
    ["127.0.0.1:6432", { host: "127.0.0.1", port: 6432 }],
    ["0.0.0.0:5432", { host: "0.0.0.0", port: 5432 }],
    ["[::1]:6432", { host: "::1", port: 6432 }],
    ["6432", { host: "127.0.0.1", port: 6432 }],
    [6433, { host: "127.0.0.1", port: 6433 }],
    [":0", { host: "127.0.0.1", port: 0 }],
    ["*:6432", { host: "0.0.0.0", port: 6432 }],
    ["localhost:7000", { host: "localhost", port: 7000 }],
  ] as const)("parses %j", (raw, want) => {
    expect(SETTINGS.listen.parse(raw)).toEqual(want);
  });

  it("rejects a bad address naming what is expected", () => {
    expect(errorOf(() => minimal({ env: { PGSIDECAR_LISTEN: "::1:6432" } }))).toBe(
      'invalid config: listen = "::1:6432" (from PGSIDECAR_LISTEN): expected host:port, "[ipv6]:port", or a port alone (meaning 127.0.0.1:port)',
    );
    expect(errorOf(() => minimal({ env: { PGSIDECAR_LISTEN: "70000" } }))).toContain(
      "expected a port from 0 to 65535",
    );
  });

  it('turns http_listen off with "off" or ""', () => {
    expect(minimal({ env: { PGSIDECAR_HTTP_LISTEN: "" } }).http_listen).toBeNull();
    expect(minimal({ env: { PGSIDECAR_HTTP_LISTEN: "0.0.0.0:9000" } }).http_listen).toEqual({
      host: "0.0.0.0",
      port: 9000,
    });
  });
});

describe("upstream URLs", () => {
  const target = (url: string) => loadConfig({ env: {}, argv: { upstream: url } }).upstream;

  it("percent-decodes user, password and database", () => {
    expect(target("postgresql://al%40ice:p%40ss%2Fw%3Ard@db:6543/my%20db")).toMatchObject({
      host: "db",
      port: 6543,
      user: "al@ice",
      password: "p@ss/w:rd",
      database: "my db",
    });
  });

  it("takes a unix socket directory from the host query parameter", () => {
    expect(target("postgres://app@/appdb?host=/var/run/postgresql")).toMatchObject({
      host: "/var/run/postgresql",
      port: 5432,
      database: "appdb",
      socketPath: "/var/run/postgresql/.s.PGSQL.5432",
    });
    expect(target("postgres:///appdb?host=%2Ftmp%2F&port=5433&user=app")).toMatchObject({
      host: "/tmp",
      user: "app",
      socketPath: "/tmp/.s.PGSQL.5433",
    });
  });

  it("takes a percent-encoded socket directory in the host part", () => {
    expect(target("postgres://app@%2Fvar%2Frun%2Fpostgresql:5433/x")?.socketPath).toBe(
      "/var/run/postgresql/.s.PGSQL.5433",
    );
  });

  it("reads sslmode and sslrootcert", () => {
    expect(
      target("postgres://app@db/x?sslmode=verify-full&sslrootcert=/etc/ssl/rds.pem"),
    ).toMatchObject({ sslmode: "verify-full", sslrootcert: "/etc/ssl/rds.pem" });
    expect(target("postgres://app@db/x")?.sslmode).toBe("prefer");
  });

  it("leaves a missing password null and the database defaulting to the user", () => {
    expect(target("postgres://app@db")).toMatchObject({
      host: "db",
      port: 5432,
      user: "app",
      password: null,
      database: "app",
    });
    // Without a password the upstream user cannot log in to the sidecar: not added to users.
    expect(loadConfig({ env: {}, argv: { upstream: "postgres://app@db" } }).users).toEqual([]);
  });

  it("parses libpq's multi-host form, target_session_attrs and load_balance_hosts", () => {
    expect(
      target(
        "postgres://app:pw@h1:5433,[::1],h3/x?target_session_attrs=read-write&load_balance_hosts=random",
      ),
    ).toMatchObject({
      host: "h1",
      port: 5433,
      hosts: [
        { host: "h1", port: 5433 },
        { host: "::1", port: 5432 },
        { host: "h3", port: 5432 },
      ],
      targetSessionAttrs: "read-write",
      loadBalanceHosts: true,
    });
    expect(target("postgres://app:pw@/x?host=h1,h2&port=6000")?.hosts).toMatchObject([
      { host: "h1", port: 6000 },
      { host: "h2", port: 6000 },
    ]);
  });

  it("parses IPv6 hosts and an unencoded '@' in the password", () => {
    expect(target("postgres://app:p@ss@[::1]:5433/x")).toMatchObject({
      host: "::1",
      port: 5433,
      password: "p@ss",
    });
  });

  it.each([
    ["mysql://app:s3cr3t@db/x", "it must start with postgres:// or postgresql://"],
    ["postgres://app:s3cr3t@db:port/x", 'port "port" is not a number from 1 to 65535'],
    ["postgres://app:s3cr3t@db/x?sslmode=maybe", "sslmode must be one of"],
    ["postgres://app:s3cr3t@db/x?application_name=y", 'unsupported parameter "application_name"'],
    [
      "postgres://app:s3cr3t@a,b/x?target_session_attrs=writer",
      "target_session_attrs must be one of",
    ],
    ["postgres://app:s3cr3t@a,b,c/x?port=1,2", "2 ports for 3 hosts"],
    [
      "postgres://app:s3cr3t@a,b/x?load_balance_hosts=yes",
      "load_balance_hosts must be disable or random",
    ],
    ["postgres://:s3cr3t@db/x", "it has no user name"],
    ["postgres://app:s3%ZZcr3t@db/x", "bad percent-encoding in the password"],
  ])("rejects %s with the password masked", (url, why) => {
    const message = errorOf(() => target(url));
    expect(message).toContain(why);
    expect(message).toContain(":****@");
    expect(message).not.toContain("s3cr3t");
    expect(message).toMatch(
      /^invalid config: upstream = ".*" \(from --upstream\): expected a postgres/,
    );
  });

  it("shows the URL with the password replaced by ****", () => {
    expect(errorOf(() => target("postgres://app:s3cr3t@db:x/appdb"))).toBe(
      'invalid config: upstream = "postgres://app:****@db:x/appdb" (from --upstream): expected a postgres:// or postgresql:// URL (port "x" is not a number from 1 to 65535)',
    );
  });

  it("redacts passwords in URLs, query parameters and conninfo strings", () => {
    expect(redactUrl("postgres://app:s3cr3t@db/x")).toBe("postgres://app:****@db/x");
    expect(redactUrl("postgres://app:s3/cr@t@db/x")).toBe("postgres://app:****@db/x");
    expect(redactUrl("postgres://app@db:5432/x?password=s3@cr3t&sslmode=require")).toBe(
      "postgres://app@db:5432/x?password=****&sslmode=require",
    );
    expect(redactUrl("host=db password=s3cr3t user=app")).toBe("host=db password=**** user=app");
    expect(redactUrl("postgres://app@db/x")).toBe("postgres://app@db/x");
    expect(redactUrl("app:s3cr3t@db")).toBe("app:****@db");
  });

  it("applies fallbacks with toTarget", () => {
    const parts = parsePostgresUrl("postgres://replica/x");
    expect(toTarget(parts, { user: "app", password: "pw" })).toMatchObject({
      user: "app",
      password: "pw",
      database: "x",
    });
  });
});

describe("errors", () => {
  it("name key, value, source and what was expected, on one line", () => {
    expect(errorOf(() => minimal({ argv: { upstream: UPSTREAM, pool_size: "abc" } }))).toBe(
      'invalid config: pool_size = "abc" (from --pool-size): expected an integer from 1 to 10000',
    );
    expect(errorOf(() => minimal({ env: { PGSIDECAR_POOL_MODE: "statement" } }))).toBe(
      'invalid config: pool_mode = "statement" (from PGSIDECAR_POOL_MODE): expected one of "session", "transaction"',
    );
    expect(errorOf(() => minimal({ env: { PGSIDECAR_QUERY_WAIT_TIMEOUT: "soon" } }))).toBe(
      'invalid config: query_wait_timeout = "soon" (from PGSIDECAR_QUERY_WAIT_TIMEOUT): expected a duration: seconds as a number (5, 0.5) or a string with a unit ("300ms", "5s", "2m", "1h")',
    );
    expect(errorOf(() => minimal({ env: { PGSIDECAR_READYZ_CHECKS_UPSTREAM: "maybe" } }))).toBe(
      'invalid config: readyz_checks_upstream = "maybe" (from PGSIDECAR_READYZ_CHECKS_UPSTREAM): expected true or false',
    );
  });

  it("give the file and line of a value from the config file", () => {
    const file = yamlFile(`upstream: ${UPSTREAM}\n\nmax_message_bytes: 8 parsecs\n`);
    expect(errorOf(() => loadConfig({ env: {}, file }))).toBe(
      `invalid config: max_message_bytes = "8 parsecs" (from ${file}:3): expected a size: a byte count or a string with a unit ("64kB", "8MB", "1GB") from 1kB to 1GB`,
    );
  });

  it("name an unknown key in the file and suggest the closest one", () => {
    const file = yamlFile(`upstream: ${UPSTREAM}\npool_sise: 5\n`);
    expect(errorOf(() => loadConfig({ env: {}, file }))).toBe(
      `invalid config: unknown key pool_sise (from ${file}:2): did you mean pool_size?`,
    );
    const dashed = yamlFile(`upstream: ${UPSTREAM}\nquery-wait-timeout: 5\n`);
    expect(errorOf(() => loadConfig({ env: {}, file: dashed }))).toContain(
      "unknown key query-wait-timeout",
    );
    expect(errorOf(() => loadConfig({ env: {}, file: dashed }))).toContain(
      "did you mean query_wait_timeout?",
    );
    const far = yamlFile("colour: blue\n");
    expect(errorOf(() => loadConfig({ env: {}, file: far }))).toBe(
      `invalid config: unknown key colour (from ${far}:1)`,
    );
  });

  it("say when the config file cannot be read or parsed", () => {
    expect(errorOf(() => loadConfig({ env: {}, file: join(dir, "missing.yaml") }))).toBe(
      `cannot read config file ${join(dir, "missing.yaml")}: ENOENT`,
    );
    const bad = yamlFile(`upstream: ${UPSTREAM}\nusers:\n  - name: a\n    password: "s3cr3t\\q"\n`);
    const message = errorOf(() => loadConfig({ env: {}, file: bad }));
    expect(message).toMatch(
      new RegExp(`^cannot parse config file ${bad} at line 4, column \\d+: `),
    );
    expect(message).not.toContain("s3cr3t");
    const dup = yamlFile(`upstream: ${UPSTREAM}\npool_size: 1\npool_size: 2\n`);
    expect(errorOf(() => loadConfig({ env: {}, file: dup }))).toBe(
      `cannot parse config file ${dup} at line 3, column 1: Map keys must be unique`,
    );
    const list = yamlFile("- a\n- b\n");
    expect(errorOf(() => loadConfig({ env: {}, file: list }))).toContain(
      "expected a mapping of settings",
    );
  });

  it("check settings against each other", () => {
    expect(errorOf(() => minimal({ env: { PGSIDECAR_MIN_POOL_SIZE: "30" } }))).toBe(
      "invalid config: min_pool_size = 30 (from PGSIDECAR_MIN_POOL_SIZE): expected at most pool_size (20)",
    );
    expect(errorOf(() => minimal({ env: { PGSIDECAR_SERVER_LOGIN_RETRY: "1m" } }))).toBe(
      'invalid config: server_login_retry = "1m" (from PGSIDECAR_SERVER_LOGIN_RETRY): expected at most server_login_retry_max (10s)',
    );
    expect(errorOf(() => minimal({ env: { PGSIDECAR_TLS_CERT_FILE: "/x.pem" } }))).toBe(
      "invalid config: tls_key_file = null (from default): expected a key file, since tls_cert_file is set",
    );
    expect(
      errorOf(() =>
        minimal({
          env: { PGSIDECAR_TLS_CERT_FILE: join(dir, "nope.pem"), PGSIDECAR_TLS_KEY_FILE: "/x" },
        }),
      ),
    ).toBe(
      `invalid config: tls_cert_file = "${join(dir, "nope.pem")}" (from PGSIDECAR_TLS_CERT_FILE): expected a readable file (ENOENT)`,
    );
    expect(errorOf(() => minimal({ env: { PGSIDECAR_ADMIN_USERS: "app,bob" } }))).toBe(
      'invalid config: admin_users[1] = "bob" (from PGSIDECAR_ADMIN_USERS): expected a user listed in users, or the upstream user',
    );
  });

  it("reject an unknown CLI value key", () => {
    expect(errorOf(() => minimal({ argv: { upstream: UPSTREAM, pool_sise: 3 } }))).toBe(
      "invalid config: unknown setting pool_sise (from the command line): did you mean pool_size?",
    );
  });
});

describe("passwords never appear in errors", () => {
  const secret = "s3cr3t";
  const cases: Array<[string, () => unknown]> = [
    [
      "a malformed upstream URL",
      () => loadConfig({ env: {}, argv: { upstream: `pg://u:${secret}@h` } }),
    ],
    [
      "a URL in the wrong setting",
      () => minimal({ env: { PGSIDECAR_LISTEN: `postgres://u:${secret}@h` } }),
    ],
    [
      "a numeric password in YAML",
      () => minimal({ env: { PGSIDECAR_USERS: "[{name: a, password: 123456}]" } }),
    ],
    [
      "a misspelt key next to a password",
      () => minimal({ env: { PGSIDECAR_USERS: `[{name: a, pasword: ${secret}}]` } }),
    ],
    [
      "a user entry that is a bare string",
      () => minimal({ env: { PGSIDECAR_USERS: `["a:${secret}"]` } }),
    ],
    ["unparsable users YAML", () => minimal({ env: { PGSIDECAR_USERS: `[{password: ${secret}` } })],
    [
      "a bad database URL",
      () => minimal({ env: { PGSIDECAR_DATABASES: `{r: "postgres://u:${secret}@h:x/r"}` } }),
    ],
    [
      "a database entry with an unknown key",
      () =>
        minimal({
          env: { PGSIDECAR_DATABASES: `{r: {upstream: "postgres://u:${secret}@h", x: 1}}` },
        }),
    ],
    ["a stray URL on the command line", () => parseCli(["start", `postgres://u:${secret}@h/db`])],
  ];
  it.each(cases)("with %s", (_name, fn) => {
    const message = errorOf(fn);
    expect(message).not.toContain(secret);
    expect(message).not.toContain("123456");
  });

  it("names the field even when its value is masked", () => {
    expect(
      errorOf(() => minimal({ env: { PGSIDECAR_USERS: "[{name: a, password: 123456}]" } })),
    ).toBe(
      "invalid config: users[0].password = **** (from PGSIDECAR_USERS): expected a string (quote it in YAML)",
    );
    expect(
      errorOf(() => minimal({ env: { PGSIDECAR_USERS: `[{name: a, pasword: ${secret}}]` } })),
    ).toBe(
      "invalid config: unknown key users[0].pasword (from PGSIDECAR_USERS): did you mean password?",
    );
  });
});

describe("databases", () => {
  const file = yamlFile(
    [
      `upstream: ${UPSTREAM}`,
      "pool_size: 10",
      "min_pool_size: 2",
      "pool_mode: transaction",
      "databases:",
      "  reports:",
      "    upstream: postgres://replica.internal/reporting?sslmode=require",
      "    pool_size: 4",
      "    pool_mode: session",
      "  audit: postgres://auditor:pw2@db.internal",
      "  other:",
      "    upstream: postgres://app@other.internal:5433",
      "    retry: all",
    ].join("\n"),
  );
  const c = loadConfig({ env: {}, file });

  it("always includes the upstream URL's database", () => {
    expect(Object.keys(c.databases)).toEqual(["appdb", "reports", "audit", "other"]);
    expect(c.databases.appdb.target).toBe(c.upstream);
  });

  it("takes a missing user and password from upstream", () => {
    expect(c.databases.reports.target).toMatchObject({
      host: "replica.internal",
      database: "reporting",
      user: "app",
      password: "s3cr3t",
      sslmode: "require",
    });
  });

  it("takes the upstream password only for the upstream user", () => {
    expect(c.databases.audit.target).toMatchObject({ user: "auditor", password: "pw2" });
    expect(c.databases.other.target).toMatchObject({ user: "app", password: "s3cr3t" });
  });

  it("names the upstream database after the entry when the URL has none (as PgBouncer)", () => {
    expect(c.databases.audit.target.database).toBe("audit");
    expect(c.databases.other.target.database).toBe("other");
  });

  it("falls back to the top-level pool settings", () => {
    expect(c.databases.reports).toMatchObject({
      pool_size: 4,
      min_pool_size: 2,
      pool_mode: "session",
      retry: "safe",
    });
    expect(c.databases.other).toMatchObject({
      pool_size: 10,
      min_pool_size: 2,
      pool_mode: "transaction",
      retry: "all",
    });
  });

  it("adds each URL's user that has a password to users", () => {
    expect(c.users.map((u) => u.name)).toEqual(["app", "auditor"]);
  });

  it("lets an entry override the upstream database's pool", () => {
    const o = loadConfig({
      env: {},
      argv: { upstream: UPSTREAM },
      file: yamlFile(
        "databases:\n  appdb:\n    upstream: postgres://db.internal/appdb\n    pool_size: 3\n",
      ),
    });
    expect(o.databases.appdb.pool_size).toBe(3);
    expect(o.databases.appdb.target.password).toBe("s3cr3t");
  });

  it("points at the entry's field in errors", () => {
    const bad = yamlFile(
      `upstream: ${UPSTREAM}\ndatabases:\n  reports:\n    upstream: postgres://replica/r\n    pool_size: lots\n`,
    );
    expect(errorOf(() => loadConfig({ env: {}, file: bad }))).toBe(
      `invalid config: databases.reports.pool_size = "lots" (from ${bad}:5): expected an integer from 1 to 10000`,
    );
    const typo = yamlFile(
      `upstream: ${UPSTREAM}\ndatabases:\n  reports:\n    upstream: postgres://replica/r\n    poolsize: 3\n`,
    );
    expect(errorOf(() => loadConfig({ env: {}, file: typo }))).toBe(
      `invalid config: unknown key databases.reports.poolsize (from ${typo}:5): did you mean pool_size?`,
    );
    const small = yamlFile(
      `upstream: ${UPSTREAM}\nmin_pool_size: 5\ndatabases:\n  reports:\n    upstream: postgres://replica/r\n    pool_size: 3\n`,
    );
    expect(errorOf(() => loadConfig({ env: {}, file: small }))).toBe(
      `invalid config: databases.reports.pool_size = 3 (from ${small}:6): expected min_pool_size (5) at most pool_size (3)`,
    );
  });

  it("needs a user in the URL when there is no top-level upstream", () => {
    const file = yamlFile("databases:\n  reports: postgres://replica/r\n");
    expect(errorOf(() => loadConfig({ env: {}, file }))).toBe(
      `invalid config: databases.reports.upstream = "postgres://@replica:5432/r?sslmode=prefer" (from ${file}:2): expected a user name in the URL (there is no top-level upstream to take it from)`,
    );
  });

  it("reserves the admin console's name", () => {
    const file = yamlFile(`upstream: ${UPSTREAM}\ndatabases:\n  pgsidecar: postgres://x/y\n`);
    expect(errorOf(() => loadConfig({ env: {}, file }))).toContain(
      'databases.pgsidecar = "postgres://x/y"',
    );
    expect(
      errorOf(() => loadConfig({ env: {}, argv: { upstream: "postgres://a@h/pgsidecar" } })),
    ).toContain('expected a database other than "pgsidecar"');
  });
});

describe("users", () => {
  it("reads password_file and drops its trailing newline, keeping the path to read it again", () => {
    const secretFile = join(dir, "ops-password");
    writeFileSync(secretFile, "hunter2\n");
    const c = loadConfig({
      env: {},
      file: yamlFile(
        `upstream: ${UPSTREAM}\nusers:\n  - name: ops\n    password_file: ${secretFile}\n    admin: true\n`,
      ),
    });
    expect(c.users).toEqual([
      { name: "ops", password: "hunter2", admin: true, password_file: secretFile },
      { name: "app", password: "s3cr3t", admin: false },
    ]);
  });

  it("names an unreadable password_file", () => {
    const missing = join(dir, "nope");
    const file = yamlFile(
      `upstream: ${UPSTREAM}\nusers:\n  - name: ops\n    password_file: ${missing}\n`,
    );
    expect(errorOf(() => loadConfig({ env: {}, file }))).toBe(
      `invalid config: users[0].password_file = "${missing}" (from ${file}:4): expected a readable file (ENOENT)`,
    );
  });

  it("marks admin_users as admins, the upstream user included", () => {
    const c = loadConfig({
      env: { PGSIDECAR_ADMIN_USERS: "app" },
      argv: { upstream: UPSTREAM, users: "[{name: ro, password: x}]" },
    });
    expect(c.users).toEqual([
      { name: "ro", password: "x", admin: false },
      { name: "app", password: "s3cr3t", admin: true },
    ]);
  });

  it("keeps a listed user over the URL's user of the same name", () => {
    const c = minimal({ env: { PGSIDECAR_USERS: "[{name: app, password: other}]" } });
    expect(c.users).toEqual([{ name: "app", password: "other", admin: false }]);
  });

  it("rejects a user listed twice, or without a password", () => {
    expect(
      errorOf(() =>
        minimal({ env: { PGSIDECAR_USERS: "[{name: a, password: x}, {name: a, password: y}]" } }),
      ),
    ).toBe(
      'invalid config: users[1].name = "a" (from PGSIDECAR_USERS): expected each user name once',
    );
    expect(errorOf(() => minimal({ env: { PGSIDECAR_USERS: "[{name: a}]" } }))).toBe(
      "invalid config: users[0].password = **** (from PGSIDECAR_USERS): expected a password or a password_file",
    );
  });
});

describe("the Config object", () => {
  it("is typed from the schema table", () => {
    const c = minimal();
    expectTypeOf(c.pool_size).toEqualTypeOf<number>();
    expectTypeOf(c.pool_mode).toEqualTypeOf<"session" | "transaction">();
    expectTypeOf(c.retry).toEqualTypeOf<"off" | "safe" | "all">();
    expectTypeOf(c.listen).toEqualTypeOf<ListenAddress>();
    expectTypeOf(c.http_listen).toEqualTypeOf<ListenAddress | null>();
    expectTypeOf(c.upstream).toEqualTypeOf<UpstreamTarget | null>();
    expectTypeOf(c.unix_socket_dir).toEqualTypeOf<string | null>();
    expectTypeOf(c.track_extra_parameters).toEqualTypeOf<ReadonlyArray<string>>();
    expectTypeOf(c.databases.x).toEqualTypeOf<DatabaseConfig>();
    expectTypeOf(c.users).toEqualTypeOf<ReadonlyArray<UserConfig>>();
    expectTypeOf(c.readyz_checks_upstream).toEqualTypeOf<boolean>();
  });

  it("is frozen all the way down", () => {
    const c = minimal({ env: { PGSIDECAR_USERS: "[{name: ops, password: x}]" } });
    for (const v of [
      c,
      c.listen,
      c.upstream,
      c.databases,
      c.databases.appdb,
      c.databases.appdb.target,
    ]) {
      expect(Object.isFrozen(v)).toBe(true);
    }
    expect(Object.isFrozen(c.users)).toBe(true);
    expect(Object.isFrozen(c.users[0])).toBe(true);
    expect(Object.isFrozen(c.track_extra_parameters)).toBe(true);
    expect(() => {
      (c as { pool_size: number }).pool_size = 1;
    }).toThrow(TypeError);
    expect(() => {
      (c.track_extra_parameters as string[]).push("x");
    }).toThrow(TypeError);
  });

  it("describes every setting for SHOW CONFIG without a password", () => {
    const c = minimal({
      env: {
        PGSIDECAR_USERS: "[{name: ops, password: hunter2, admin: true}]",
        PGSIDECAR_DATABASES: "{r: 'postgres://x:pw9@replica/r'}",
      },
    });
    const rows = describeConfig(c);
    const text = JSON.stringify(rows);
    for (const secret of ["s3cr3t", "hunter2", "pw9"]) expect(text).not.toContain(secret);
    const keys = rows.map((r) => r.key);
    for (const s of SETTING_LIST) expect(keys).toContain(s.key);
    const byKey = new Map(rows.map((r) => [r.key, r]));
    expect(byKey.get("upstream")?.value).toBe(
      "postgres://app:****@db.internal:5432/appdb?sslmode=prefer",
    );
    expect(byKey.get("databases.r")?.value).toBe(
      "postgres://x:****@replica:5432/r?sslmode=prefer pool_size=20 min_pool_size=0 pool_mode=transaction retry=safe",
    );
    expect(byKey.get("users")?.value).toBe("ops (admin),app,x");
    expect(byKey.get("max_message_bytes")).toMatchObject({ value: "256MB", default: "256MB" });
    expect(byKey.get("server_login_retry")).toMatchObject({ value: "500ms", default: "500ms" });
  });
});

describe("command line", () => {
  it("returns the command and only the flags given, by setting name", () => {
    expect(parseCli(["--upstream", UPSTREAM, "--pool-size", "7"])).toEqual({
      command: "start",
      values: { upstream: UPSTREAM, pool_size: "7" },
      configFile: null,
    });
    expect(
      parseCli([
        "check-config",
        "--config",
        "/etc/p.yaml",
        "--readyz-checks-upstream",
        "--http-listen=off",
      ]),
    ).toEqual({
      command: "check-config",
      values: { readyz_checks_upstream: true, http_listen: "off" },
      configFile: "/etc/p.yaml",
    });
  });

  it("feeds loadConfig, where flags win", () => {
    const { values, configFile } = parseCli(["--pool-size", "abc", "--upstream", UPSTREAM]);
    expect(
      errorOf(() =>
        loadConfig({ argv: values, file: configFile, env: { PGSIDECAR_POOL_SIZE: "3" } }),
      ),
    ).toBe(
      'invalid config: pool_size = "abc" (from --pool-size): expected an integer from 1 to 10000',
    );
  });

  it("rejects an unknown flag and suggests the closest", () => {
    expect(errorOf(() => parseCli(["--pool-sise", "5"]))).toBe(
      "invalid command line: Unknown argument: pool-sise (did you mean --pool-size?)",
    );
    expect(errorOf(() => parseCli(["restart"]))).toContain("Unknown argument: restart");
    expect(errorOf(() => parseCli(["--pool-size"]))).toBe(
      "invalid command line: Not enough arguments following: pool-size",
    );
  });

  it("builds one yargs option per setting, plus --config", () => {
    const options = buildCliOptions();
    expect(Object.keys(options).sort()).toEqual(
      ["config", ...SETTING_LIST.map((s) => s.flag)].sort(),
    );
    expect(options["pool-size"]).toMatchObject({ type: "string", defaultDescription: "20" });
    expect(options["readyz-checks-upstream"]).toMatchObject({ type: "boolean" });
    for (const o of Object.values(options)) expect(o.default).toBeUndefined();
  });

  it("lists every flag in --help with its doc line and default", async () => {
    const help = (await cliHelp()).replace(/\s+/g, " ");
    expect(help).toContain("check-config");
    for (const s of SETTING_LIST) {
      expect(help).toContain(`--${s.flag}`);
      expect(help).toContain(s.doc.replace(/\s+/g, " "));
    }
    expect(help).toContain("[default: 20]");
    expect(help).toContain("[default: 30s]");
  });
});

describe("config/pgsidecar.yaml", () => {
  const path = new URL("../../config/pgsidecar.yaml", import.meta.url);
  const text = readFileSync(path, "utf8");

  it("documents every setting with its doc line", () => {
    for (const s of SETTING_LIST) {
      expect(text).toMatch(new RegExp(`^(# )?${s.key}:`, "m"));
      expect(text).toContain(`# ${s.doc}\n`);
    }
  });

  it("loads, and its commented-out values are the defaults", () => {
    const c = loadConfig({ env: {}, file: path.pathname });
    expect(c.upstream?.host).toBe("db.internal");
    const uncommented = text
      .split("\n")
      .map((line) => /^# ([a-z_]+): (.+)$/.exec(line))
      .filter((m): m is RegExpExecArray => m !== null && m[1] in SETTINGS);
    expect(uncommented.length).toBeGreaterThan(30);
    const asFile = yamlFile(
      `upstream: ${UPSTREAM}\n${uncommented.map((m) => `${m[1]}: ${m[2]}`).join("\n")}\n`,
    );
    const fromExample = loadConfig({ env: {}, file: asFile });
    const defaults = minimal();
    for (const m of uncommented) {
      const key = m[1] as keyof Config;
      expect(fromExample[key], key).toEqual(defaults[key]);
    }
  });
});

it("refuses a config file it cannot read (permissions)", () => {
  if (process.getuid?.() === 0) return; // root reads anything
  const file = yamlFile(`upstream: ${UPSTREAM}\n`);
  chmodSync(file, 0o000);
  expect(errorOf(() => loadConfig({ env: {}, file }))).toBe(
    `cannot read config file ${file}: EACCES`,
  );
});
