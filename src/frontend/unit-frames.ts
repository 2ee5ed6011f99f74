// What a session reads out of a unit's frames: how many ReadyForQuery it is owed, the SQL it
// runs (for the loss and replay decisions), and whether a Query is a lone LISTEN / UNLISTEN.
// Cold paths only, or a first-byte check before anything is decoded.

import { FrontendCode } from "../protocol/codes.js";
import { detectSessionState } from "./session-state.js";

const HEADER = 5;

/** Called with each frame: its type byte and where it lies in `buf` (header included). */
export type FrameVisitor = (code: number, buf: Buffer, start: number, end: number) => void;

/** The one walk over a unit's frames: ranges of whole frames, read by their headers. */
export function forEachFrame(ranges: readonly Buffer[], visit: FrameVisitor): void {
  for (const range of ranges) {
    let pos = 0;
    while (pos + HEADER <= range.length) {
      const end = pos + 1 + range.readInt32BE(pos + 1);
      visit(range[pos], range, pos, end);
      pos = end;
    }
  }
}

/** Where a unit's frames go when a server is found (the relay). */
export interface FrameSink {
  send(code: number, buf: Buffer, start: number, end: number): void;
}

/** The frames of buf[start, end) (whole frames), each to `sink.send` (no closure on the hot path). */
export function forEachFrameIn(buf: Buffer, start: number, end: number, sink: FrameSink): void {
  let pos = start;
  while (pos + HEADER <= end) {
    const frameEnd = pos + 1 + buf.readInt32BE(pos + 1);
    sink.send(buf[pos], buf, pos, frameEnd);
    pos = frameEnd;
  }
}

/** Syncs, Queries and FunctionCalls in a unit: each is owed one ReadyForQuery. */
export function countSyncs(unit: readonly Buffer[]): number {
  let n = 0;
  forEachFrame(unit, (c) => {
    if (c === FrontendCode.Sync || c === FrontendCode.Query || c === FrontendCode.FunctionCall) n++;
  });
  return n;
}

/**
 * The SQL text a frame runs: a Query's or Parse's text, or the text of the named statement a
 * Bind executes; null where it is unknown (a statement the client never prepared with us, a
 * FunctionCall); undefined for frames that run no statement of their own.
 */
export function frameText(
  code: number,
  buf: Buffer,
  start: number,
  end: number,
  statementText: (name: string) => string | undefined,
): string | null | undefined {
  switch (code) {
    case FrontendCode.Query:
      return buf.toString("utf8", start + HEADER, end - 1);
    case FrontendCode.Parse: {
      const nameEnd = buf.indexOf(0, start + HEADER);
      return buf.toString("utf8", nameEnd + 1, buf.indexOf(0, nameEnd + 1));
    }
    case FrontendCode.Bind: {
      const portalEnd = buf.indexOf(0, start + HEADER);
      const stmtEnd = buf.indexOf(0, portalEnd + 1);
      if (stmtEnd === portalEnd + 1) return undefined; // the unnamed statement: its Parse counted
      return statementText(buf.toString("utf8", portalEnd + 1, stmtEnd)) ?? null;
    }
    case FrontendCode.FunctionCall:
      return null;
    default:
      return undefined;
  }
}

/**
 * The SQL text of each statement-bearing frame of a unit, in order: Query and Parse texts, and
 * the text of a named statement a Bind executes; null where the text is unknown (a statement
 * the client never prepared with us, a FunctionCall).
 */
export function unitTexts(
  unit: readonly Buffer[],
  statementText: (name: string) => string | undefined,
): Array<string | null> {
  const texts: Array<string | null> = [];
  forEachFrame(unit, (code, buf, start, end) => {
    const text = frameText(code, buf, start, end, statementText);
    if (text !== undefined) texts.push(text);
  });
  return texts;
}

export type ListenCommand = { listen: string } | { unlisten: string | null };

/**
 * A Query that is exactly one LISTEN or UNLISTEN (the pool's listening server can serve it), or
 * null. Anything else (several statements, other commands) goes to a server as usual.
 */
export function listenCommand(buf: Buffer, start: number, end: number): ListenCommand | null {
  let i = start;
  while (i < end && (buf[i] === 0x20 || (buf[i] >= 0x09 && buf[i] <= 0x0d))) i++;
  const first = buf[i] | 0x20;
  if ((first !== 0x6c && first !== 0x75) || end - start > 256) return null; // l / u
  const text = buf.toString("utf8", start, end);
  const semi = text.indexOf(";");
  if (semi >= 0 && text.slice(semi + 1).trim() !== "") return null;
  let command: ListenCommand | null = null;
  for (const effect of detectSessionState(buf, start, end)) {
    if ("listen" in effect) command = command === null ? { listen: effect.listen } : null;
    else if ("unlisten" in effect)
      command = command === null ? { unlisten: effect.unlisten } : null;
  }
  return command;
}
