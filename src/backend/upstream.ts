// Upstream: where a pool's servers live. Resolves the host again for every new connection (so a
// failover behind a DNS name is followed) and paces reconnects with capped, jittered backoff.

import { lookup } from "node:dns/promises";
import * as clock from "../clock.js";
import type { TargetSessionAttrs, UpstreamHost, UpstreamTarget } from "../config/schema.js";

export const UpstreamState = {
  Up: "up",
  Backoff: "backoff",
} as const;
export type UpstreamState = (typeof UpstreamState)[keyof typeof UpstreamState];

export class Upstream {
  state: UpstreamState = UpstreamState.Up;
  /** Consecutive failed connection attempts. */
  failures = 0;
  lastError: Error | null = null;
  /** When the next attempt may start (epoch ms). */
  retryAt = 0;

  constructor(
    readonly target: UpstreamTarget,
    private readonly baseDelayMs: number,
    private readonly maxDelayMs: number,
  ) {}

  /** The address to dial now: a unix socket path, or the host's current first address. */
  async resolve(
    h: UpstreamHost = this.target.hosts[0],
  ): Promise<{ host: string; port: number } | { path: string }> {
    if (h.socketPath) return { path: h.socketPath };
    const { address } = await lookup(h.host);
    return { host: address, port: h.port };
  }

  /** The hosts in the order to try them for one new connection (shuffled if load balanced). */
  hostsInOrder(): UpstreamHost[] {
    const hosts = [...this.target.hosts];
    if (this.target.loadBalanceHosts) {
      for (let i = hosts.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [hosts[i], hosts[j]] = [hosts[j], hosts[i]];
      }
    }
    return hosts;
  }

  /** Milliseconds until an attempt may start (0 = now). */
  delay(now = clock.now()): number {
    return this.state === UpstreamState.Up ? 0 : Math.max(0, this.retryAt - now);
  }

  succeeded(): void {
    this.state = UpstreamState.Up;
    this.failures = 0;
    this.lastError = null;
  }

  failed(err: Error, now = clock.now()): void {
    // Attempts started together fail together: one round of failures is one step of backoff.
    if (this.state === UpstreamState.Backoff && now < this.retryAt) {
      this.lastError = err;
      return;
    }
    this.failures++;
    this.lastError = err;
    this.state = UpstreamState.Backoff;
    const ceiling = Math.min(
      this.maxDelayMs,
      this.baseDelayMs * 2 ** Math.min(this.failures - 1, 20),
    );
    // "Equal jitter": half fixed, half random, so retries spread out but never collapse to zero.
    this.retryAt = now + ceiling / 2 + Math.random() * (ceiling / 2);
  }
}

/** What a server's reported parameters say about it (Postgres 14+ reports both). */
export interface ServerRole {
  /** in_hot_standby: a standby in recovery. */
  standby: boolean;
  /** in_hot_standby or default_transaction_read_only: writes are refused. */
  readOnly: boolean;
}

/** The role a server's ParameterStatus values show, or null when it does not report them. */
export function serverRole(params: ReadonlyMap<string, string>): ServerRole | null {
  const standby = params.get("in_hot_standby");
  const readOnly = params.get("default_transaction_read_only");
  if (standby === undefined && readOnly === undefined) return null;
  return { standby: standby === "on", readOnly: standby === "on" || readOnly === "on" };
}

/**
 * Whether a server of `role` may serve a pool that wants `attrs` (libpq's target_session_attrs;
 * prefer-standby is decided by the order hosts are tried in, see Pool). A server that reports no
 * role (Postgres before 14) fits only `any` and `prefer-standby`.
 */
export function roleFits(attrs: TargetSessionAttrs, role: ServerRole | null): boolean {
  if (attrs === "any" || attrs === "prefer-standby") return true;
  if (role === null) return false;
  switch (attrs) {
    case "read-write":
      return !role.readOnly;
    case "read-only":
      return role.readOnly;
    case "primary":
      return !role.standby;
    case "standby":
      return role.standby;
  }
}
