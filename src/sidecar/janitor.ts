// The janitor: once a second, what no event triggers. Pools close servers past their idle time or
// lifetime and open up to min_pool_size; clients idle or not reading past their limits are closed.

import type { Config } from "../config/schema.js";
import type { ClientSession } from "../frontend/client-session.js";
import type { PoolRegistry } from "./pool-registry.js";

/** Starts the rounds; returns what stops them. */
export function startJanitor(
  registry: PoolRegistry,
  sessions: ReadonlySet<ClientSession>,
  config: () => Config,
): () => void {
  const timer = setInterval(() => {
    registry.sweep();
    const { client_idle_timeout: idleLimit, client_write_timeout: writeLimit } = config();
    if (idleLimit > 0 || writeLimit > 0) {
      const now = Date.now();
      for (const s of [...sessions]) {
        if (idleLimit > 0) s.closeIfIdleFor(idleLimit, now);
        if (writeLimit > 0) s.closeIfStalledFor(writeLimit, now);
      }
    }
  }, 1000);
  timer.unref();
  return () => clearInterval(timer);
}
