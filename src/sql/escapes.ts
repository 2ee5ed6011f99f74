// Backslashes in plain string literals: their meaning depends on the session's
// standard_conforming_strings, which the parser assumes on. With it off, `'a\', 'b'` is one
// literal followed by more SQL, so a statement can hide a second one from a parser that assumes on.

const QUOTE = 0x27; // '
const DQUOTE = 0x22; // "
const BACKSLASH = 0x5c;
const DOLLAR = 0x24;

/** Identifier characters of the Postgres lexer (scan.l `ident_cont`, bytes >= 0x80 included). */
function isIdent(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x5f ||
    c === DOLLAR ||
    c >= 0x80
  );
}

function isIdentStart(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || c >= 0x80;
}

/** Index just past the string literal opened at `open`, honouring backslash escapes if `escapes`. */
function skipLiteral(
  sql: string,
  open: number,
  escapes: boolean,
): [end: number, backslash: boolean] {
  let backslash = false;
  let i = open + 1;
  while (i < sql.length) {
    const c = sql.charCodeAt(i);
    if (c === BACKSLASH) {
      backslash = true;
      i += escapes ? 2 : 1;
    } else if (c === QUOTE) {
      if (sql.charCodeAt(i + 1) === QUOTE) i += 2;
      else return [i + 1, backslash];
    } else i++;
  }
  return [sql.length, backslash];
}

/**
 * The same SQL as a server with standard_conforming_strings off would read it, rewritten for a
 * parser that assumes on: every plain `'...'` literal holding a backslash becomes `E'...'`.
 * Returns null when no plain literal holds a backslash (both settings read the text alike), and
 * false when the text is ambiguous but cannot be rewritten (N'' literals, string continuations).
 */
export function nonStandardStringsVariant(sql: string): string | null | false {
  if (!sql.includes("\\")) return null;
  let out: string[] | null = null;
  let copied = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    const next = sql.charCodeAt(i + 1);
    if (c === 0x2d && next === 0x2d) {
      const nl = sql.indexOf("\n", i);
      i = nl < 0 ? n : nl + 1;
    } else if (c === 0x2f && next === 0x2a) {
      // Block comments nest (scan.l xc).
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql.charCodeAt(i) === 0x2f && sql.charCodeAt(i + 1) === 0x2a) {
          depth++;
          i += 2;
        } else if (sql.charCodeAt(i) === 0x2a && sql.charCodeAt(i + 1) === 0x2f) {
          depth--;
          i += 2;
        } else i++;
      }
    } else if (c === DQUOTE) {
      let j = i + 1;
      while (j < n) {
        if (sql.charCodeAt(j) === DQUOTE) {
          if (sql.charCodeAt(j + 1) === DQUOTE) j += 2;
          else break;
        } else j++;
      }
      i = j + 1;
    } else if (c === DOLLAR && (i === 0 || !isIdent(sql.charCodeAt(i - 1)))) {
      // $tag$ ... $tag$ (a `$1` parameter is not a dollar quote).
      let j = i + 1;
      if (j < n && isIdentStart(sql.charCodeAt(j))) {
        j++;
        while (j < n && isIdent(sql.charCodeAt(j)) && sql.charCodeAt(j) !== DOLLAR) j++;
      }
      if (sql.charCodeAt(j) === DOLLAR) {
        const tag = sql.slice(i, j + 1);
        const close = sql.indexOf(tag, j + 1);
        i = close < 0 ? n : close + tag.length;
      } else i = j;
    } else if (c === QUOTE) {
      const p1 = i > 0 ? sql.charCodeAt(i - 1) : 0;
      const p2 = i > 1 ? sql.charCodeAt(i - 2) : 0;
      const p3 = i > 2 ? sql.charCodeAt(i - 3) : 0;
      const prefixed1 = isIdent(p1) && !isIdent(p2);
      const lower1 = p1 | 0x20;
      if (prefixed1 && lower1 === 0x65) {
        // E'...': backslash escapes under either setting.
        i = skipLiteral(sql, i, true)[0];
      } else if (p1 === 0x26 && (p2 | 0x20) === 0x75 && !isIdent(p3)) {
        // U&'...': backslash starts a Unicode escape; Postgres rejects it with the setting off.
        i = skipLiteral(sql, i, false)[0];
      } else if (prefixed1 && (lower1 === 0x62 || lower1 === 0x78)) {
        // B'...' and X'...': bit strings take no escapes.
        i = skipLiteral(sql, i, false)[0];
      } else {
        // A plain literal, read as the setting off would read it.
        const [end, backslash] = skipLiteral(sql, i, true);
        if (backslash) {
          if (isIdent(p1) || isContinuation(sql, i)) return false;
          out ??= [];
          out.push(sql.slice(copied, i), "E");
          copied = i;
        }
        i = end;
      }
    } else i++;
  }
  if (out === null) return null;
  out.push(sql.slice(copied));
  return out.join("");
}

/** Whether the literal opened at `open` continues the one before it (only blanks with a newline
 * between them): an `E` there would start a new literal instead. */
function isContinuation(sql: string, open: number): boolean {
  let newline = false;
  for (let j = open - 1; j >= 0; j--) {
    const c = sql.charCodeAt(j);
    if (c === 0x0a || c === 0x0d) newline = true;
    else if (c !== 0x20 && c !== 0x09 && c !== 0x0c && c !== 0x0b) return newline && c === QUOTE;
  }
  return false;
}
