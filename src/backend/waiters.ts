// WaitQueue: the clients waiting for a server of one pool, served in FIFO order, each for at
// most query_wait_timeout.

import * as clock from "../clock.js";
import { type ProxyError, ProxyErrorReason, proxyError, ServerError } from "../errors.js";
import type { BackendConnection } from "./backend-connection.js";

export type CheckoutCallback = (
  err: ProxyError | ServerError | null,
  conn: BackendConnection | null,
) => void;

/** What a checkout returns: `cancel()` withdraws it (the client left); done once answered. */
export interface CheckoutWait {
  readonly done: boolean;
  cancel(): void;
}

/** A checkout answered before it returned: nothing to withdraw. */
export const ANSWERED: CheckoutWait = Object.freeze({ done: true, cancel: () => {} });

/** A client waiting for a server. */
export class Waiter implements CheckoutWait {
  done = false;
  timer: clock.Timer | null = null;
  readonly since = clock.now();
  constructor(
    readonly callback: CheckoutCallback,
    private readonly onDone: () => void,
  ) {}
  cancel(): void {
    if (this.done) return;
    this.done = true;
    clock.cancel(this.timer);
    this.onDone();
  }
}

/** Waiters in arrival order; a withdrawn or expired one is skipped, not spliced out. */
export class WaitQueue {
  private waiters: Waiter[] = [];
  private head = 0;
  /** Waiters not yet served, expired or cancelled. */
  private live = 0;

  get size(): number {
    return this.live;
  }

  /** Queues a client; `expire` runs if it is still waiting after `timeoutMs` (0: never). */
  add(callback: CheckoutCallback, timeoutMs: number, expire: (w: Waiter) => void): Waiter {
    const waiter = new Waiter(callback, () => this.live--);
    this.live++;
    if (timeoutMs > 0) waiter.timer = clock.after(timeoutMs, () => expire(waiter));
    this.waiters.push(waiter);
    return waiter;
  }

  /** The oldest waiter's wait so far, in ms (SHOW POOLS maxwait). */
  oldestWaitMs(): number {
    for (let i = this.head; i < this.waiters.length; i++) {
      if (!this.waiters[i].done) return clock.now() - this.waiters[i].since;
    }
    return 0;
  }

  /** The oldest live waiter, left in the queue. */
  peek(): Waiter | null {
    while (this.head < this.waiters.length) {
      const w = this.waiters[this.head];
      if (!w.done) return w;
      this.head++;
    }
    if (this.head > 0) {
      this.waiters = [];
      this.head = 0;
    }
    return null;
  }

  /** The oldest live waiter, taken out of the queue (its timer stopped). */
  take(): Waiter | null {
    const w = this.peek();
    if (w === null) return null;
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.waiters.length) {
      this.waiters = this.waiters.slice(this.head);
      this.head = 0;
    }
    w.cancel();
    return w;
  }

  /** Answers every waiter with `err` (shutdown, or a login that will fail again). */
  failAll(err: ProxyError | ServerError): void {
    for (let w = this.take(); w !== null; w = this.take()) w.callback(err, null);
  }
}

/**
 * What a client gets after query_wait_timeout: 57P03 while the server says it is starting up,
 * 08006 otherwise; the last connect error says why.
 */
export function waitTimeoutError(timeoutMs: number, last: Error | null): ProxyError {
  const starting = last instanceof ServerError && last.sqlstate === "57P03";
  const why = last ? `: ${last.message}` : "";
  return proxyError(
    starting ? ProxyErrorReason.QueryWaitTimeoutStartingUp : ProxyErrorReason.QueryWaitTimeout,
    `no server connection available within query_wait_timeout (${timeoutMs} ms)${why}`,
  );
}
