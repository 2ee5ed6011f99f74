// Upstream: where a pool's servers live. Resolves the host again for every new connection (so a
// failover behind a DNS name is followed) and paces reconnects with capped, jittered backoff.

import { lookup } from "node:dns/promises";
import type { UpstreamTarget } from "../config/schema.js";

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
  async resolve(): Promise<{ host: string; port: number } | { path: string }> {
    const t = this.target;
    if (t.socketPath) return { path: t.socketPath };
    const { address } = await lookup(t.host);
    return { host: address, port: t.port };
  }

  /** Milliseconds until an attempt may start (0 = now). */
  delay(now = Date.now()): number {
    return this.state === UpstreamState.Up ? 0 : Math.max(0, this.retryAt - now);
  }

  succeeded(): void {
    this.state = UpstreamState.Up;
    this.failures = 0;
    this.lastError = null;
  }

  failed(err: Error, now = Date.now()): void {
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
