// startup_checks_upstream: /startup answers 200 only once every configured database was reached.

import type { Pool } from "../backend/pool.js";
import type { Config, DatabaseConfig } from "../config/schema.js";

export interface StartupCheckNeeds {
  config(): Config;
  poolFor(db: DatabaseConfig, user: string): Pool;
  /** True once the sidecar drains: no more attempts. */
  stopped(): boolean;
  /** The last database was reached. */
  reached(): void;
}

/**
 * One server login per configured database (as its URL's user), each tried again every
 * server_login_retry_max until it works. The server stays in the pool for the first client.
 */
export function reachUpstreams(needs: StartupCheckNeeds): void {
  const { databases } = needs.config();
  const pending = new Set(Object.keys(databases));
  for (const db of Object.values(databases)) {
    const attempt = () => {
      if (needs.stopped()) return;
      const pool = needs.poolFor(db, db.target.user);
      pool.checkout((_err, conn) => {
        if (conn === null) {
          // Refused (the pool logged why) or query_wait_timeout: try again later.
          setTimeout(attempt, needs.config().server_login_retry_max).unref();
          return;
        }
        pool.giveBack(conn, "clean");
        pending.delete(db.name);
        if (pending.size === 0) needs.reached();
      });
    };
    attempt();
  }
}
