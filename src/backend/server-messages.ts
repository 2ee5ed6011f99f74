// What the relay reads in a server message without decoding it: an error's SQLSTATE and severity,
// whether it names one of our statements, and which request a reply completes.

import { BackendCode, FrontendCode } from "../protocol/codes.js";

/** Whether an ErrorResponse/NoticeResponse carries SQLSTATE `code` (field C), without decoding it. */
export function errorCodeIs(buf: Buffer, start: number, end: number, code: string): boolean {
  let pos = start + 5;
  while (pos < end && buf[pos] !== 0) {
    const valueEnd = buf.indexOf(0, pos + 1);
    if (valueEnd < 0 || valueEnd >= end) return false;
    if (buf[pos] === 0x43) return buf.toString("latin1", pos + 1, valueEnd) === code;
    pos = valueEnd + 1;
  }
  return false;
}

/** Whether an ErrorResponse is FATAL or PANIC: scans the fields for V (or S) only. */
export function isFatal(buf: Buffer, start: number, end: number): boolean {
  let pos = start + 5;
  while (pos < end && buf[pos] !== 0) {
    const type = buf[pos];
    const valueEnd = buf.indexOf(0, pos + 1);
    if (valueEnd < 0 || valueEnd >= end) return false;
    if (type === 0x56 /* V */ || type === 0x53 /* S */) {
      const len = valueEnd - pos - 1;
      if (len === 5 && buf.toString("latin1", pos + 1, valueEnd) === "FATAL") return true;
      if (len === 5 && buf.toString("latin1", pos + 1, valueEnd) === "PANIC") return true;
      if (type === 0x56) return false;
    }
    pos = valueEnd + 1;
  }
  return false;
}

const SERVER_STATEMENT_PREFIX = Buffer.from("pgsc_");

/** Whether an ErrorResponse mentions one of our server-side statement names (cold path). */
export function namesServerStatement(buf: Buffer, start: number, end: number): boolean {
  const at = buf.indexOf(SERVER_STATEMENT_PREFIX, start);
  return at >= 0 && at < end;
}

/** Whether a server message of type `reply` completes the request of type `request`. */
export function isTerminal(request: number, reply: number): boolean {
  switch (request) {
    case FrontendCode.Parse:
      return reply === BackendCode.ParseComplete || reply === BackendCode.ErrorResponse;
    case FrontendCode.Bind:
      return reply === BackendCode.BindComplete || reply === BackendCode.ErrorResponse;
    case FrontendCode.Close:
      return reply === BackendCode.CloseComplete || reply === BackendCode.ErrorResponse;
    case FrontendCode.Describe:
      return (
        reply === BackendCode.RowDescription ||
        reply === BackendCode.NoData ||
        reply === BackendCode.ErrorResponse
      );
    case FrontendCode.Execute:
      return (
        reply === BackendCode.CommandComplete ||
        reply === BackendCode.EmptyQueryResponse ||
        reply === BackendCode.PortalSuspended ||
        reply === BackendCode.ErrorResponse
      );
    default:
      // Sync, Query, FunctionCall: everything up to ReadyForQuery belongs to them.
      return reply === BackendCode.ReadyForQuery;
  }
}
