// BackendConnection options for unit tests that talk to a small server of their own on
// 127.0.0.1 (a hostile upstream, a planted bug): user and database "app", no TLS.
import type { BackendOptions } from "../../src/backend/backend-connection.js";

export function loopbackBackend(
  port: number,
  opts: { password?: string | null; connectTimeoutMs?: number; maxScramIterations?: number } = {},
): BackendOptions {
  const password = opts.password ?? null;
  return {
    target: {
      host: "127.0.0.1",
      port,
      database: "app",
      user: "app",
      password,
      sslmode: "disable",
      sslrootcert: null,
      socketPath: null,
      hosts: [{ host: "127.0.0.1", port, socketPath: null }],
      targetSessionAttrs: "any",
      loadBalanceHosts: false,
    },
    address: { host: "127.0.0.1", port },
    user: "app",
    password,
    database: "app",
    connectTimeoutMs: opts.connectTimeoutMs ?? 5000,
    keepalive: { idleMs: 30_000, intervalMs: 10_000, count: 3 },
    maxPreparedStatements: 10,
    maxScramIterations: opts.maxScramIterations,
  };
}
