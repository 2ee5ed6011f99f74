// Byte prefilter for session-state detection on the hot path: decides, without allocating and in
// one pass, whether SQL text could carry session state and so needs the real parser. It may say
// yes too often (keywords inside strings or comments); it must never say no when the parser would
// find an effect (test/unit/sql-prefilter.test.ts holds it to that).
//
// What can carry session state, and the bytes that must then be present:
// - a statement that starts with SET, RESET, LISTEN, UNLISTEN, PREPARE, DECLARE, CLOSE, DEALLOCATE,
//   DISCARD, DO, CALL or LOAD: its first word, when it is the only statement; any later statement
//   needs a `;` before it, and a `;` followed by more text always goes to the parser;
// - a temporary object: the word TEMP or TEMPORARY, or a name starting with pg_temp;
// - a session advisory lock or unlock: pg_[try_]advisory_*, holding "advisory";
// - set_config(...): "set_config";
// - any of these names spelled with Unicode escapes: `U&"...`.
// So an UPDATE ... SET, an INSERT ... INTO or a SELECT ... WHERE skips the parser.

/** 1 for the bytes the Postgres lexer takes for whitespace (scan.l `space`). */
const BLANK = new Uint8Array(256);
for (const c of " \t\n\r\f\v") BLANK[c.charCodeAt(0)] = 1;

/** Lower-cased words a statement may start with that can change session state. */
const FIRST_WORDS = [
  "set",
  "reset",
  "listen",
  "unlisten",
  "prepare",
  "declare",
  "close",
  "deallocate",
  "discard",
  "do",
  "call",
  "load",
].map((w) => Buffer.from(w, "latin1"));

const TEMPORARY = Buffer.from("temporary");
const PG_ = Buffer.from("pg_");
const ADVISORY = Buffer.from("advisory");
const SET_CONFIG = Buffer.from("set_config");

function isWordByte(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x5f ||
    c === 0x24 ||
    c >= 0x80
  );
}

/** Whether b[at, end) starts with the lower-case ASCII `word`, compared case-insensitively. */
function startsWithFolded(b: Buffer, at: number, end: number, word: Buffer): boolean {
  const n = word.length;
  if (at + n > end) return false;
  for (let k = 0; k < n; k++) {
    const c = b[at + k];
    // Folding with 0x20 maps only letters onto letters: the words are all [a-z_].
    if ((c >= 0x41 && c <= 0x5a ? c | 0x20 : c) !== word[k]) return false;
  }
  return true;
}

/** Skips whitespace and comments (block comments nest, as in scan.l); returns the next index. */
function skipBlank(b: Buffer, i: number, end: number): number {
  while (i < end) {
    const c = b[i];
    if (BLANK[c] === 1) i++;
    else if (c === 0x2d && i + 1 < end && b[i + 1] === 0x2d) {
      i += 2;
      while (i < end && b[i] !== 0x0a && b[i] !== 0x0d) i++;
    } else if (c === 0x2f && i + 1 < end && b[i + 1] === 0x2a) {
      let depth = 1;
      i += 2;
      while (i < end && depth > 0) {
        if (b[i] === 0x2f && i + 1 < end && b[i + 1] === 0x2a) {
          depth++;
          i += 2;
        } else if (b[i] === 0x2a && i + 1 < end && b[i + 1] === 0x2f) {
          depth--;
          i += 2;
        } else i++;
      }
    } else break;
  }
  return i;
}

/**
 * Whether the "temp" at b[i] is the word TEMP or TEMPORARY, or begins a word with pg_temp (as
 * pg_temp_3): not the middle of `attempts` or the start of `temperature`.
 */
function isTempWord(b: Buffer, i: number, start: number, end: number): boolean {
  if (i === start || !isWordByte(b[i - 1])) {
    const after = i + 4;
    if (after === end || !isWordByte(b[after])) return true;
    return (
      startsWithFolded(b, i, end, TEMPORARY) && (after + 5 === end || !isWordByte(b[after + 5]))
    );
  }
  const p = i - 3;
  return p >= start && startsWithFolded(b, p, i, PG_) && (p === start || !isWordByte(b[p - 1]));
}

/** Whether the SQL text in b[start, end) may change session state, so the parser must look. */
export function mayCarrySessionState(b: Buffer, start: number, end: number): boolean {
  const first = skipBlank(b, start, end);
  if (first < end && isWordByte(b[first])) {
    let wordEnd = first + 1;
    while (wordEnd < end && isWordByte(b[wordEnd])) wordEnd++;
    const len = wordEnd - first;
    for (const w of FIRST_WORDS) {
      if (w.length === len && startsWithFolded(b, first, wordEnd, w)) return true;
    }
  }
  for (let i = first; i < end; i++) {
    const c = b[i];
    // Folding with 0x20 maps an upper-case letter onto its lower case, and no other byte onto a
    // letter. A byte read past `end` is a false yes at worst; the longer words check their bounds.
    switch (c | 0x20) {
      case 0x74: // t: temp, temporary, pg_temp
        if (
          (b[i + 1] | 0x20) === 0x65 &&
          (b[i + 2] | 0x20) === 0x6d &&
          (b[i + 3] | 0x20) === 0x70 &&
          i + 3 < end &&
          isTempWord(b, i, start, end)
        ) {
          return true;
        }
        break;
      case 0x61: // a: advisory
        if ((b[i + 1] | 0x20) === 0x64 && startsWithFolded(b, i, end, ADVISORY)) return true;
        break;
      case 0x73: // s: set_config
        if (b[i + 3] === 0x5f && startsWithFolded(b, i, end, SET_CONFIG)) return true;
        break;
      case 0x75: // u: U&"..."
        if (b[i + 1] === 0x26 && b[i + 2] === 0x22 && i + 2 < end) return true;
        break;
      case 0x3b:
        if (c === 0x3b) {
          // Only a trailing ';' (blanks and more ';' after it) is harmless.
          for (let j = i + 1; j < end; j++) {
            if (b[j] !== 0x3b && BLANK[b[j]] === 0) return true;
          }
          return false;
        }
        break;
    }
  }
  return false;
}
