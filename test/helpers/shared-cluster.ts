// The one cluster of the integration run (started by shared-cluster-setup.ts, the project's
// globalSetup), for the healthy-path files: each takes it with `await sharedCluster()` in
// beforeAll. Rules for a file that shares it: its roles, databases, schemas and tables carry a
// prefix of its own; it changes no cluster-wide setting (no ALTER SYSTEM, ALTER ROLE/DATABASE SET,
// pg_reload_conf) and never stops, restarts or crashes the cluster: such a file starts its own.
// Integration files run one at a time (vitest.config.ts), so files never meet at run time.
import { readFileSync } from "node:fs";
import pg from "pg";
import { inject } from "vitest";
import type { PgCluster, UrlOptions } from "./pg-cluster.js";
import { until } from "./until.js";

/** What the globalSetup provides: how to reach the cluster and where its files are. */
export interface SharedClusterInfo {
  host: string;
  port: number;
  superuser: string;
  password: string;
  socketDir: string;
  dataDir: string;
  logFile: string;
}

declare module "vitest" {
  export interface ProvidedContext {
    sharedCluster: SharedClusterInfo;
  }
}

/** A PgCluster without the calls that would disturb the other files: no stop, restart, destroy. */
export type SharedCluster = Omit<
  PgCluster,
  "restart" | "stop" | "start" | "destroy" | "promote" | "startAsStandbyOf"
>;

/** The role pg-cluster.ts creates at first start; its members log in with md5. */
const MD5_GROUP = "pgsidecar_md5_login";

const ident = (s: string) => `"${s.replaceAll('"', '""')}"`;
const literal = (s: string) => `'${s.replaceAll("'", "''")}'`;

function attach(info: SharedClusterInfo): SharedCluster {
  // biome-ignore lint/suspicious/noExplicitAny: rows are whatever the test selects
  const query = async (sql: string, params?: unknown[]): Promise<any[]> => {
    const c = new pg.Client({
      host: info.host,
      port: info.port,
      user: info.superuser,
      password: info.password,
      database: "postgres",
      connectionTimeoutMillis: 10_000,
    });
    c.on("error", () => {});
    await c.connect();
    try {
      const r = await c.query(sql, params);
      // Several statements in one string: the last one's rows.
      return Array.isArray(r) ? (r.at(-1)?.rows ?? []) : r.rows;
    } finally {
      await c.end().catch(() => {});
    }
  };
  return {
    ...info,
    url(opts: UrlOptions = {}) {
      const u = new URL(`postgres://${info.host}:${info.port}`);
      u.username = opts.user ?? info.superuser;
      const superuser = opts.user === undefined || opts.user === info.superuser;
      const password = opts.password ?? (superuser ? info.password : undefined);
      if (password !== undefined) u.password = password;
      u.pathname = `/${encodeURIComponent(opts.database ?? "postgres")}`;
      for (const [k, v] of Object.entries(opts.params ?? {})) u.searchParams.set(k, v);
      return u.toString();
    },
    query,
    async createUser(name, password, opts = {}) {
      const md5 = opts.md5 === true || name.startsWith("md5_");
      const role = [
        `CREATE ROLE ${ident(name)} LOGIN`,
        opts.superuser ? " SUPERUSER" : "",
        md5 ? ` IN ROLE ${ident(MD5_GROUP)}` : "",
        ` PASSWORD ${literal(password)}`,
      ].join("");
      // One simple-protocol string: the SET holds for the CREATE in the same session.
      await query(opts.md5 ? `SET password_encryption = 'md5'; ${role}` : role);
    },
    async createDatabase(name, owner) {
      await query(`CREATE DATABASE ${ident(name)}${owner ? ` OWNER ${ident(owner)}` : ""}`);
    },
    async backendPids(user) {
      const rows = await query(
        `SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'
           AND pid <> pg_backend_pid() AND ($1::text IS NULL OR usename = $1::text) ORDER BY pid`,
        [user ?? null],
      );
      return rows.map((r: { pid: number }) => r.pid);
    },
    log: () => readFileSync(info.logFile, "utf8"),
  };
}

/**
 * The shared cluster, once the backends the files before this one left are gone (a connection
 * still closing, a pg_sleep nobody reads any more): counts of backends start from zero.
 */
export async function sharedCluster(): Promise<SharedCluster> {
  const info = inject("sharedCluster");
  if (!info) throw new Error("no shared cluster: run with the integration project's globalSetup");
  const cluster = attach(info);
  await cluster.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`,
  );
  await until("the previous files' backends to exit", async () => {
    return (await cluster.backendPids()).length === 0;
  });
  return cluster;
}
