// Reload (SIGHUP, admin RELOAD): which changed settings a running sidecar cannot apply. Everything
// else takes effect at once: the pools take theirs in PoolRegistry.reconfigure(), sessions read
// the live configuration.

import type { Config } from "../config/schema.js";
import type { PoolRegistry } from "./pool-registry.js";

/** Settings read once, when the sockets and the logger are made. */
const RESTART_ONLY = ["listen", "http_listen", "unix_socket_dir", "log_format"] as const;

/** The settings `next` changes that take effect only after a restart, as named in the warning. */
export function settingsNeedingRestart(
  prev: Config,
  next: Config,
  registry: PoolRegistry,
): string[] {
  const restart: string[] = [];
  for (const key of RESTART_ONLY) {
    if (JSON.stringify(prev[key]) !== JSON.stringify(next[key])) restart.push(key);
  }
  for (const name of registry.movedUpstreams(next)) restart.push(`databases.${name}.upstream`);
  return restart;
}
