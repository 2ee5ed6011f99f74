// SASLprep (RFC 4013) of a SCRAM password, exactly as PostgreSQL's src/common/saslprep.c does it:
// pg_saslprep() returns SASLPREP_PROHIBITED (or SASLPREP_INVALID_UTF8) and its callers then hash
// the raw password, both in the server (CREATE ROLE ... PASSWORD) and in libpq.
//
// The RFC 3454 tables come from @mongodb-js/saslprep (the MongoDB drivers' SASLprep). Its exported
// saslprep() cannot be used as is: it throws on a prohibited character, which suits a fallback,
// but it looks for prohibited, unassigned and bidi characters *after* NFKC, as RFC 4013 says,
// while PostgreSQL looks at the mapped string *before* NFKC. For about a thousand code points the
// two disagree ("a\u0340": U+0340 is prohibited, its NFKC U+0300 is not; Hebrew around U+2122,
// whose NFKC "TM" is left-to-right), and a password that PostgreSQL hashed differently cannot log
// in. So this module runs PostgreSQL's steps over the package's tables.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/** One of the package's RFC 3454 tables (a sparse-bitfield). */
interface CodePointSet {
  get(codePoint: number): boolean;
}

interface Tables {
  /** B.1 Commonly mapped to nothing. */
  commonly_mapped_to_nothing: CodePointSet;
  /** C.1.2 Non-ASCII space characters. */
  non_ASCII_space_characters: CodePointSet;
  /** C.1.2 to C.9: prohibited output. */
  prohibited_characters: CodePointSet;
  /** A.1 Unassigned code points in Unicode 3.2. */
  unassigned_code_points: CodePointSet;
  /** D.1 Characters with bidirectional property "R" or "AL". */
  bidirectional_r_al: CodePointSet;
  /** D.2 Characters with bidirectional property "L". */
  bidirectional_l: CodePointSet;
}

let tables: Tables | undefined;

/**
 * The package's tables, loaded on the first non-ASCII password. They are not in its `exports`
 * map, so they are required by file; the version is pinned by package-lock.json, and the
 * PostgreSQL-made secrets in test/unit/auth-scram.test.ts fail if an update moves them.
 */
function saslPrepTables(): Tables {
  if (tables === undefined) {
    const require = createRequire(import.meta.url);
    const dist = dirname(require.resolve("@mongodb-js/saslprep"));
    const { createMemoryCodePoints } = require(join(dist, "memory-code-points.js"));
    tables = createMemoryCodePoints(require(join(dist, "code-points-data.js")).default) as Tables;
  }
  return tables;
}

/** RFC 3454 C.4 lists U+FFFFE and U+FFFFF as non-characters; the package's table leaves them out. */
function isProhibited(t: Tables, cp: number): boolean {
  return (
    t.prohibited_characters.get(cp) ||
    t.unassigned_code_points.get(cp) ||
    cp === 0xffffe ||
    cp === 0xfffff
  );
}

/**
 * Returns the SASLprep form of a password, or the password unchanged where PostgreSQL falls back
 * to the raw bytes: pure ASCII, empty after mapping, a prohibited or unassigned (Unicode 3.2)
 * character, or a bad mix of right-to-left text, each checked before NFKC as PostgreSQL does.
 */
export function saslPrep(password: string): string {
  let ascii = true;
  for (let i = 0; i < password.length && ascii; i++) ascii = password.charCodeAt(i) < 0x80;
  if (ascii) return password;

  const t = saslPrepTables();
  // 1. Map: non-ASCII spaces (C.1.2) to U+0020, "commonly mapped to nothing" (B.1) removed.
  const mapped: number[] = [];
  for (const ch of password) {
    const cp = ch.codePointAt(0) as number; // a lone surrogate comes through as itself
    if (t.non_ASCII_space_characters.get(cp)) mapped.push(0x20);
    else if (!t.commonly_mapped_to_nothing.get(cp)) mapped.push(cp);
  }
  if (mapped.length === 0) return password;
  // 3. Prohibit (C.1.2-C.9) and unassigned code points (A.1).
  if (mapped.some((cp) => isProhibited(t, cp))) return password;
  // 4. Bidi (RFC 3454 section 6): with any RandALCat, no LCat, and RandALCat at both ends.
  const randAL = t.bidirectional_r_al;
  if (mapped.some((cp) => randAL.get(cp))) {
    if (mapped.some((cp) => t.bidirectional_l.get(cp))) return password;
    if (!randAL.get(mapped[0]) || !randAL.get(mapped[mapped.length - 1])) return password;
  }
  // 2. Normalize.
  let out = "";
  for (const cp of mapped) out += String.fromCodePoint(cp);
  return out.normalize("NFKC");
}
