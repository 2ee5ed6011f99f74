// Detects session state a transaction-pooled server would carry from one client to the next
// (DESIGN.md section 4). Reads only the first keywords of a statement, in place.

export const PinReason = {
  Set: "set",
  Listen: "listen",
  TempTable: "temp_table",
  AdvisoryLock: "advisory_lock",
  HoldCursor: "hold_cursor",
  SqlPrepare: "sql_prepare",
  PreparedStatement: "prepared_statement",
} as const;
export type PinReason = (typeof PinReason)[keyof typeof PinReason];

export type StateChange = { pin: PinReason } | { unpin: PinReason | "all" } | null;

/** Matches pg_advisory_lock, pg_advisory_lock_shared, pg_try_advisory_lock; not the _xact_ ones. */
const ADVISORY = Buffer.from("advisory_lock");
const ADVISORY_UNLOCK_ALL = Buffer.from("pg_advisory_unlock_all");

/** Parameters whose changes Postgres reports with ParameterStatus: they are re-applied, not pinned. */
export const TRACKED_PARAMETERS = new Set([
  "client_encoding",
  "datestyle",
  "timezone",
  "intervalstyle",
  "standard_conforming_strings",
  "application_name",
]);

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0c;
}

/** Skips blanks, `-- comments` and `/* comments *\/`; returns the index of the next token. */
function skipBlank(b: Buffer, i: number, end: number): number {
  while (i < end) {
    const c = b[i];
    if (isSpace(c)) i++;
    else if (c === 0x2d && b[i + 1] === 0x2d) {
      while (i < end && b[i] !== 0x0a) i++;
    } else if (c === 0x2f && b[i + 1] === 0x2a) {
      const close = b.indexOf("*/", i + 2);
      i = close < 0 || close >= end ? end : close + 2;
    } else break;
  }
  return i;
}

/** Reads one word (letters, digits, _) lower-cased; returns [word, next index]. */
function word(b: Buffer, i: number, end: number): [string, number] {
  const start = skipBlank(b, i, end);
  let j = start;
  while (j < end) {
    const c = b[j] | 0x20;
    if ((c >= 0x61 && c <= 0x7a) || (b[j] >= 0x30 && b[j] <= 0x39) || b[j] === 0x5f) j++;
    else break;
  }
  return [b.toString("latin1", start, j).toLowerCase(), j];
}

/** What a statement (SQL text in b[start, end)) does to session state, if anything. */
export function detectSessionState(b: Buffer, start: number, end: number): StateChange {
  const first = skipBlank(b, start, end);
  if (first >= end) return null;
  const c = b[first] | 0x20;
  // Most statements start with a keyword that cannot change session state: decide on one byte.
  if (
    c !== 0x73 &&
    c !== 0x72 &&
    c !== 0x6c &&
    c !== 0x63 &&
    c !== 0x64 &&
    c !== 0x70 &&
    c !== 0x75
  ) {
    return null;
  }
  const [w1, after1] = word(b, first, end);
  switch (w1) {
    case "select": {
      const unlockAll = b.indexOf(ADVISORY_UNLOCK_ALL, after1);
      if (unlockAll >= 0 && unlockAll < end) return { unpin: PinReason.AdvisoryLock };
      const at = b.indexOf(ADVISORY, after1);
      // pg_advisory_lock / pg_advisory_lock_shared are session-level; _xact_ variants are not.
      if (at >= 0 && at < end) return { pin: PinReason.AdvisoryLock };
      return null;
    }
    case "set": {
      const [w2, after2] = word(b, after1, end);
      if (w2 === "local" || w2 === "transaction" || w2 === "constraints") return null;
      const name = w2 === "session" ? word(b, after2, end)[0] : w2;
      if (name === "characteristics" || name === "authorization" || name === "role")
        return { pin: PinReason.Set };
      if (TRACKED_PARAMETERS.has(name)) return null;
      return { pin: PinReason.Set };
    }
    case "reset": {
      const [w2] = word(b, after1, end);
      if (w2 === "all") return { unpin: PinReason.Set };
      return null;
    }
    case "listen":
      return { pin: PinReason.Listen };
    case "unlisten": {
      const rest = skipBlank(b, after1, end);
      return b[rest] === 0x2a ? { unpin: PinReason.Listen } : null;
    }
    case "create": {
      const [w2, after2] = word(b, after1, end);
      let w = w2;
      if (w === "global" || w === "local") w = word(b, after2, end)[0];
      if (w === "temp" || w === "temporary") return { pin: PinReason.TempTable };
      return null;
    }
    case "declare": {
      // DECLARE name [BINARY] [ASENSITIVE|INSENSITIVE] [[NO] SCROLL] CURSOR WITH HOLD FOR ...
      const text = b.toString("latin1", after1, Math.min(end, after1 + 200)).toLowerCase();
      return /\bwith\s+hold\b/.test(text) ? { pin: PinReason.HoldCursor } : null;
    }
    case "prepare": {
      const [w2] = word(b, after1, end);
      return w2 === "transaction" ? null : { pin: PinReason.SqlPrepare };
    }
    case "discard": {
      const [w2] = word(b, after1, end);
      if (w2 === "all") return { unpin: "all" };
      if (w2 === "temp" || w2 === "temporary") return { unpin: PinReason.TempTable };
      return null;
    }
    default:
      return null;
  }
}
