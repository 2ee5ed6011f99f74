// What the relay path counts, per pool (database, user): plain numbers bumped inline, with no label
// hashing and no allocation. The registry reads them at scrape time (pool-counters.ts,
// pool-histogram.ts).

import {
  type ConnectFailureReason,
  DisconnectReason,
  PinReason,
  type ReplayOutcome,
} from "../reasons.js";

/** Seconds; fine at the bottom for loopback round trips, up to query_wait_timeout-sized waits. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

export const StatementResult = ["hit", "miss", "reprepare"] as const;
export type StatementResult = (typeof StatementResult)[number];

/** A fixed-bucket histogram as plain numbers: observe() is a short scan and three additions. */
export class Buckets {
  /** Per bucket (not cumulative); the last one is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[] = LATENCY_BUCKETS) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }
}

/** The key of PoolStats.connectFailures: a ConnectFailureReason and a SQLSTATE (no spaces in either). */
export function connectFailureKey(reason: ConnectFailureReason, sqlstate: string): string {
  return `${reason} ${sqlstate}`;
}

/** The labels of a connectFailureKey(). */
export function splitConnectFailureKey(key: string): { reason: string; sqlstate: string } {
  const [reason, sqlstate] = key.split(" ", 2);
  return { reason, sqlstate };
}

/** Bumps `key` in a map of counts. For label values that come from a closed set. */
export function bump(map: Map<string, number>, key: string, n = 1): void {
  map.set(key, (map.get(key) ?? 0) + n);
}

/**
 * What one pool (database, user) counts. Created once per pool (Metrics.pool()); the hot path bumps
 * its fields directly. Every label value a counter can take from a closed set starts at 0, so that
 * PromQL's increase() sees the first event (a series born at 1 shows no increase).
 */
export class PoolStats {
  queries = 0;
  transactions = 0;
  serversOpened = 0;
  readonly serversClosed = new Map<string, number>(
    Object.values(DisconnectReason).map((r) => [r, 0]),
  );
  /** By connectFailureKey(reason, SQLSTATE): "network" for the SQLSTATE below the protocol. */
  readonly connectFailures = new Map<string, number>();
  readonly replays: Record<ReplayOutcome, number> = {
    succeeded: 0,
    gave_up: 0,
    not_retryable: 0,
  };
  readonly statements: Record<StatementResult, number> = { hit: 0, miss: 0, reprepare: 0 };
  readonly pins = new Map<string, number>(Object.values(PinReason).map((r) => [r, 0]));
  readonly clientErrors = new Map<string, number>();
  readonly checkoutWait = new Buckets();
  readonly querySeconds = new Buckets();
  readonly transactionSeconds = new Buckets();
  /** Checkouts that found the pool at zero: until a server was handed out (a cold start). */
  readonly wakeSeconds = new Buckets();

  constructor(
    readonly database: string,
    readonly user: string,
  ) {}
}
