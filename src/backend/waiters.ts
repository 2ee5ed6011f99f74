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
  constructor(
    readonly callback: CheckoutCallback,
    /** When the client began to wait (epoch ms). */
    readonly since: number,
    /** When query_wait_timeout ends its wait (Infinity: never). */
    readonly deadline: number,
    private readonly queue: WaitQueue,
  ) {}
  cancel(): void {
    if (this.done) return;
    this.done = true;
    this.queue.left();
  }
}

/**
 * Waiters in arrival order; a withdrawn or expired one is skipped, not spliced out. One timer
 * serves the whole queue, armed for the earliest deadline: a waiter costs no timer of its own,
 * and most are served long before theirs.
 */
export class WaitQueue {
  private waiters: Waiter[] = [];
  private head = 0;
  /** Waiters not yet served, expired or cancelled. */
  private live = 0;
  private timer: clock.Timer | null = null;
  /** When the timer fires (Infinity: not armed). */
  private timerAt = Number.POSITIVE_INFINITY;
  /**
   * Deadlines grow with arrival (the usual case): the timer then looks at the due waiters and the
   * first one not due, never the whole queue. False after a reload shortened query_wait_timeout
   * with clients waiting, until the queue empties.
   */
  private inOrder = true;
  private lastDeadline = Number.NEGATIVE_INFINITY;

  /** `expire` answers a waiter whose query_wait_timeout passed (it is already out of the queue). */
  constructor(private readonly expire: (w: Waiter) => void) {}

  get size(): number {
    return this.live;
  }

  /** Queues a client; it expires if it is still waiting after `timeoutMs` (0: never). */
  add(callback: CheckoutCallback, timeoutMs: number): Waiter {
    const now = clock.now();
    const deadline = timeoutMs > 0 ? now + timeoutMs : Number.POSITIVE_INFINITY;
    const waiter = new Waiter(callback, now, deadline, this);
    this.live++;
    this.waiters.push(waiter);
    if (deadline < this.lastDeadline) this.inOrder = false;
    else this.lastDeadline = deadline;
    if (deadline < this.timerAt) this.arm(deadline, now);
    return waiter;
  }

  /** A waiter was served, withdrawn or expired. */
  left(): void {
    this.live--;
  }

  private arm(at: number, now: number): void {
    clock.cancel(this.timer);
    this.timerAt = at;
    this.timer = clock.after(Math.max(0, at - now), () => this.onTimer());
  }

  /** Expires every waiter past its deadline, and arms the timer for the earliest one left. */
  private onTimer(): void {
    // The timer runs on the monotonic clock: a wall clock set back meanwhile does not hold back
    // the waiters it was armed for.
    const now = Math.max(clock.now(), this.timerAt);
    this.timer = null;
    this.timerAt = Number.POSITIVE_INFINITY;
    const expired: Waiter[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (let i = this.head; i < this.waiters.length; i++) {
      const w = this.waiters[i];
      if (w.done) continue;
      if (w.deadline <= now) {
        w.cancel();
        expired.push(w);
      } else if (w.deadline < next) {
        next = w.deadline;
        if (this.inOrder) break; // everyone behind it is due later still
      }
    }
    if (next < this.timerAt) this.arm(next, now);
    this.peek(); // drops expired waiters from the head of the queue
    // Answered last: a callback may queue or take waiters.
    for (const w of expired) this.expire(w);
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
    this.inOrder = true;
    this.lastDeadline = Number.NEGATIVE_INFINITY;
    return null;
  }

  /** The oldest live waiter, taken out of the queue. */
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
