// The JSON lines a demo workload prints on stdout, one object per line; demo/demo.ts reads them.
// demo/checkpointer_workload.py (psycopg) and demo/node-workload.ts (node-postgres) both speak it.

export interface ProgressEvent {
  type: "progress" | "done";
  /** Checkpointer calls completed (after any retries). */
  ops: number;
  /** Exceptions seen by the application, retried ones included. */
  errors: number;
  /** Errors after which the client's connection was unusable (closed or broken). */
  broken: number;
  /** Calls that still failed after all their retries: a lost graph run. */
  failed: number;
  /** Warnings from the client's own pool ("discarding closed connection", failed reconnects). */
  pool_warnings: number;
  /** Error count by "SQLSTATE Class: first line of the message". */
  by_kind: Record<string, number>;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  /** Calls in progress for more than 5 s (one attempt: waiting for a connection included). */
  slow_calls: number;
  /** On "done": tasks cancelled because a call outlived the run by --grace seconds. */
  unfinished_tasks?: number;
  /** On "done": the calls in progress at the end. */
  stuck?: StuckCall[];
}

export interface StuckCall {
  task: number;
  op: string;
  attempt: number;
  seconds: number;
  /** Waiting for the client's pool to hand out a connection, or running on one. */
  phase: "getconn" | "execute";
}

export interface ErrorEvent {
  type: "error";
  /** Epoch milliseconds. */
  t: number;
  op: string;
  attempt: number;
  sqlstate: string | null;
  message: string;
  broken: boolean;
}

export interface PoolWarningEvent {
  type: "pool_warning";
  t: number;
  message: string;
}

export interface ReadyEvent {
  type: "ready";
  t: number;
}

/** An acknowledged checkpoint (checkpointer_workload.py --acks). */
export interface AckEvent {
  type: "ack";
  t: number;
  id: string;
  thread: string;
}

export type WorkloadEvent = ProgressEvent | ErrorEvent | PoolWarningEvent | ReadyEvent | AckEvent;

/** Most retries of one failed call, as LangGraph retries a failed run. */
export const MAX_RETRIES = 3;
