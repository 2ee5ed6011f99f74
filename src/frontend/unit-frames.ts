// What a session reads out of a unit's frames: how many ReadyForQuery it is owed, the SQL it
// runs (for the loss and replay decisions), and whether a Query is a lone LISTEN / UNLISTEN.
// Cold paths only, or a first-byte check before anything is decoded.

import { FrontendCode } from "../protocol/codes.js";
import { detectSessionState } from "./session-state.js";

const HEADER = 5;

/** Syncs, Queries and FunctionCalls in a unit: each is owed one ReadyForQuery. */
export function countSyncs(unit: Buffer[]): number {
  let n = 0;
  const count = (b: Buffer, from: number, to: number) => {
    let pos = from;
    while (pos + HEADER <= to) {
      const c = b[pos];
      if (c === FrontendCode.Sync || c === FrontendCode.Query || c === FrontendCode.FunctionCall)
        n++;
      pos += 1 + b.readInt32BE(pos + 1);
    }
  };
  for (const range of unit) count(range, 0, range.length);
  return n;
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
  for (const range of unit) {
    let pos = 0;
    while (pos + HEADER <= range.length) {
      const code = range[pos];
      const end = pos + 1 + range.readInt32BE(pos + 1);
      if (code === FrontendCode.Query) texts.push(range.toString("utf8", pos + HEADER, end - 1));
      else if (code === FrontendCode.Parse) {
        const nameEnd = range.indexOf(0, pos + HEADER);
        texts.push(range.toString("utf8", nameEnd + 1, range.indexOf(0, nameEnd + 1)));
      } else if (code === FrontendCode.Bind) {
        const portalEnd = range.indexOf(0, pos + HEADER);
        const stmtEnd = range.indexOf(0, portalEnd + 1);
        if (stmtEnd > portalEnd + 1) {
          texts.push(statementText(range.toString("utf8", portalEnd + 1, stmtEnd)) ?? null);
        }
      } else if (code === FrontendCode.FunctionCall) texts.push(null);
      pos = end;
    }
  }
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
