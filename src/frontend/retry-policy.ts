// RetryPolicy: decides whether a unit of work whose server died may be replayed on another one
// (DESIGN.md section 1): `off` never, `safe` only when it certainly did not run or only reads,
// `all` also writes (for idempotent workloads such as LangGraph checkpointers).

import type { ServerError } from "../errors.js";
import { FrontendCode } from "../protocol/codes.js";
import { ReplayOutcome } from "../reasons.js";
import { classifyStatement, type StatementClass } from "./statement-class.js";
import { forEachFrame, frameText } from "./unit-frames.js";

export type RetryMode = "off" | "safe" | "all";
/** Replay the unit now, or the outcome that ends it (succeeded is known only after a replay). */
export type RetryVerdict = "replay" | Exclude<ReplayOutcome, typeof ReplayOutcome.Succeeded>;

export interface LostUnit {
  /** The unit's client frames, or null when it outgrew retry_buffer_bytes. */
  unit: readonly Buffer[] | null;
  /** Whether any byte of it reached the server. (Only units none of whose reply was forwarded
   * are ever considered.) */
  written: boolean;
  /** Whether the server replied to any of it (replies may have been held back, not forwarded). */
  replied: boolean;
  /** Replays already attempted. */
  replays: number;
  /**
   * The connection was reset (not closed) by the server while the unit, a single Query or a
   * single Sync-terminated batch small enough for one server read, was outstanding: its final
   * message, where it would commit, was never read.
   */
  resetBeforeRead: boolean;
  /**
   * No Sync, Query or FunctionCall of the unit was written, and none of its statements can commit
   * on its own (COMMIT, END, PREPARE): whatever the server ran was in an implicit transaction that
   * died with it (a pipeline cut before its Sync, the idle-kill race).
   */
  uncommitted: boolean;
  /** The FATAL the server sent before closing, if any. */
  error: ServerError | null;
  /** Text of a client's named statement (for Bind/Execute of a prepared statement). */
  statementText(name: string): string | undefined;
}

/**
 * FATALs after which a unit that got no reply at all certainly did not commit: refused at connect
 * (57P03 starting up / shutting down, 53300 too many connections), or a server that was told to
 * exit (57P01 pg_terminate_backend or a fast shutdown, 57P05 idle_session_timeout). A SIGTERM is
 * only acted on at an interrupt check, and none lies between a commit and the queueing of its
 * CommandComplete, so when the FATAL is the first reply, the unit's transaction was rolled back.
 * A plain EOF or a crash (57P02) proves nothing: the commit may have reached the WAL.
 */
const NOT_RUN_WHEN_FIRST_REPLY = new Set(["57P03", "53300", "57P01", "57P05"]);

/** Whether a FATAL, as the first reply to a unit, proves the unit did not run (see above). */
export function refusedBeforeRunning(error: ServerError | null): boolean {
  return error !== null && NOT_RUN_WHEN_FIRST_REPLY.has(error.sqlstate);
}

export class RetryPolicy {
  /** Classification counts since start, for metrics. */
  readonly classified: Record<StatementClass, number> = { read_only: 0, write: 0 };

  constructor(
    readonly mode: RetryMode,
    readonly maxReplays: number,
    readonly bufferBytes: number,
  ) {}

  decide(lost: LostUnit): RetryVerdict {
    if (this.mode === "off" || lost.unit === null) return ReplayOutcome.NotRetryable;
    if (lost.replays >= this.maxReplays) return ReplayOutcome.GaveUp;
    if (!lost.written) return "replay";
    if (!lost.replied && lost.resetBeforeRead) return "replay";
    if (lost.uncommitted) return "replay";
    if (!lost.replied && lost.error && NOT_RUN_WHEN_FIRST_REPLY.has(lost.error.sqlstate)) {
      return "replay";
    }
    if (this.mode === "all") return "replay";
    return this.readOnly(lost) ? "replay" : ReplayOutcome.NotRetryable;
  }

  /** True when every statement the unit executes is read-only by classification. */
  private readOnly(lost: LostUnit): boolean {
    let readOnly = true;
    forEachFrame(lost.unit as readonly Buffer[], (code, buf, start, end) => {
      if (!readOnly) return; // decided: the rest is neither classified nor counted
      if (code === FrontendCode.CopyData) {
        readOnly = false; // COPY FROM STDIN writes
        return;
      }
      const sql = frameText(code, buf, start, end, lost.statementText);
      if (sql === undefined) return;
      if (sql === null) {
        readOnly = false;
        return;
      }
      const cls = classifyStatement(sql);
      this.classified[cls]++;
      if (cls !== "read_only") readOnly = false;
    });
    return readOnly;
  }
}
