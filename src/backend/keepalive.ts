// TCP keepalive with interval and probe count on upstream sockets. Node's setKeepAlive() sets
// only the idle delay (and fixes 1 s x 10 probes), so interval, count and TCP_USER_TIMEOUT are
// set through net-keepalive (setsockopt via FFI). If it cannot load on a platform, Node's
// defaults remain and response_timeout / the check query still bound a dead peer.

import { createRequire } from "node:module";
import type net from "node:net";

interface NetKeepalive {
  setKeepAliveInterval(socket: net.Socket, ms: number): boolean;
  setKeepAliveProbes(socket: net.Socket, count: number): boolean;
  setUserTimeout(socket: net.Socket, ms: number): boolean;
}

let module_: NetKeepalive | null | undefined;

function load(): NetKeepalive | null {
  if (module_ !== undefined) return module_;
  try {
    module_ = createRequire(import.meta.url)("net-keepalive") as NetKeepalive;
  } catch {
    module_ = null;
  }
  return module_;
}

export interface KeepaliveSettings {
  idleMs: number;
  intervalMs: number;
  count: number;
}

/**
 * Enables keepalive on a connected socket. TCP_USER_TIMEOUT is set to the same total
 * (idle + interval x count), so unacknowledged writes to a vanished peer fail in that time too
 * instead of after ~15 minutes of retransmissions.
 */
export function enableKeepalive(socket: net.Socket, k: KeepaliveSettings): boolean {
  socket.setKeepAlive(true, k.idleMs);
  const nk = load();
  if (nk === null) return false;
  try {
    nk.setKeepAliveInterval(socket, k.intervalMs);
    nk.setKeepAliveProbes(socket, k.count);
    nk.setUserTimeout(socket, k.idleMs + k.intervalMs * k.count);
    return true;
  } catch {
    return false;
  }
}
