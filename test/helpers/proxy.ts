// Starts a pgsidecar Sidecar in-process on a free port (port 0) in front of a test cluster.

import { loadConfig } from "../../src/config/load.js";
import { createLogger, type LogLevel, silentLogger } from "../../src/log.js";
import { Sidecar } from "../../src/proxy.js";
import type { PgCluster } from "./pg-cluster.js";

export interface TestProxy {
  proxy: Sidecar;
  host: string;
  port: number;
  /** A connection URL for the proxy (defaults: the cluster's superuser and database postgres). */
  url(opts?: { user?: string; password?: string; database?: string }): string;
  /** pg.Client / pg.Pool options for the proxy. */
  pgConfig(opts?: { user?: string; password?: string; database?: string }): {
    host: string;
    port: number;
    user: string;
    password: string;
    database: string;
  };
  stop(): Promise<void>;
}

export async function startProxy(
  cluster: Pick<PgCluster, "url" | "superuser" | "password">,
  settings: Record<string, unknown> = {},
  upstream?: string,
): Promise<TestProxy> {
  const config = loadConfig({
    argv: {
      listen: "127.0.0.1:0",
      http_listen: "127.0.0.1:0",
      upstream: upstream ?? cluster.url({ database: "postgres" }),
      ...settings,
    },
    env: {},
  });
  const level = (process.env.PGSIDECAR_TEST_LOG as LogLevel | undefined) ?? null;
  const proxy = new Sidecar(config, level ? createLogger(level, "pretty") : silentLogger);
  await proxy.start();
  const defaults = { user: cluster.superuser, password: cluster.password, database: "postgres" };
  const pgConfig = (opts: { user?: string; password?: string; database?: string } = {}) => ({
    host: "127.0.0.1",
    port: proxy.port,
    ...defaults,
    ...opts,
  });
  return {
    proxy,
    host: "127.0.0.1",
    port: proxy.port,
    pgConfig,
    url(opts = {}) {
      const c = pgConfig(opts);
      return `postgres://${encodeURIComponent(c.user)}:${encodeURIComponent(c.password)}@127.0.0.1:${c.port}/${encodeURIComponent(c.database)}`;
    },
    stop: () => proxy.stop(),
  };
}
