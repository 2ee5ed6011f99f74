import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { nonStandardStringsVariant } from "../../src/sql/escapes.js";
import { loadSqlParser } from "../../src/sql/parser.js";
import { mayCarrySessionState } from "../../src/sql/prefilter.js";
import { effectsOf } from "../../src/sql/session-effects.js";

beforeAll(async () => {
  await loadSqlParser();
});

function prefilter(sql: string): boolean {
  const b = Buffer.from(`xx${sql}yy`);
  return mayCarrySessionState(b, 2, b.length - 2);
}

/** Everything the parser finds, under either standard_conforming_strings setting. */
function parserFinds(sql: string): unknown[] {
  const found: unknown[] = [...(effectsOf(sql) ?? [])];
  const variant = nonStandardStringsVariant(sql);
  if (typeof variant === "string") found.push(...(effectsOf(variant) ?? []));
  return found;
}

// A small SQL grammar: statements that carry state and statements that do not, in any case,
// with comments, quotes and escapes where a byte scanner could be fooled. Most are near misses
// (the state-bearing names inside literals, comments or other names), so that the prefilter says
// no often and the property has something to check.
const kw = (word: string) => fc.mixedCase(fc.constant(word));
const rarely = <T>(arb: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: arb });
const blank = fc.constantFrom(" ", "\n", "\t", "  ", " /* c */ ", " -- c\n", " /* a /* b */ c */ ");
const ident = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      "t",
      "x",
      "a_b",
      '"SET"',
      '"set_config"',
      "temperatur",
      "attempts",
      "temp_x",
      "tempo",
      "my_pg_temp",
      "advisor",
      "set",
      "role",
      "u",
      '"we""ird"',
      'U&"t\\0061"',
    ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "pg_temp",
      '"pg_temp"',
      "pg_temp_3",
      "temperature",
      "advisory",
      'U&"pg_\\0074emp"',
    ),
  },
);
const literal = fc.constantFrom(
  "1",
  "-2.5",
  "true",
  "false",
  "'off'",
  "'on'",
  "'x'",
  "'it''s'",
  "'a\\'",
  "E'a\\'b'",
  "'--'",
  "'/*'",
  "';'",
  "'; SET ROLE x'",
  "$$; SET ROLE x$$",
  "$q$ $$ ; $q$",
  "$1",
  "$2",
  "'pg_advisory_lock(1)'",
  "'set_config'",
  "N'n'",
  "B'101'",
  "X'1F'",
  "U&'\\0041'",
);
const funcName = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      "now",
      "count",
      "myfunc",
      "app.now",
      "pg_advisory",
      "set_conf",
      "setconfig",
      "pg_advisory_xact_lock",
      "pg_advisory_unlock",
      "pg_advisory_unlock_shared",
      '"pg_advisory_lock"',
      'U&"set\\005Fconfig"',
      'U&"pg_\\0061dvisory_lock"',
    ),
  },
  {
    weight: 1,
    arbitrary: fc.mixedCase(
      fc.constantFrom(
        "set_config",
        "pg_catalog.set_config",
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_advisory_unlock_all",
        "public.pg_advisory_lock",
      ),
    ),
  },
);

const { stmt } = fc.letrec((tie) => ({
  expr: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    { weight: 3, arbitrary: literal },
    { weight: 3, arbitrary: ident },
    {
      weight: 2,
      arbitrary: fc
        .tuple(funcName, fc.array(tie("expr"), { maxLength: 3 }))
        .map(([f, args]) => `${f}(${(args as string[]).join(", ")})`),
    },
    { weight: 1, arbitrary: tie("select").map((s) => `(${s})`) },
  ),
  select: fc
    .tuple(
      kw("select"),
      fc.array(tie("expr"), { minLength: 1, maxLength: 2 }),
      rarely(fc.tuple(kw("into"), fc.constantFrom("", "temp ", "TEMPORARY ", "unlogged "), ident)),
      rarely(fc.tuple(kw("from"), ident)),
      rarely(fc.constantFrom(" FOR UPDATE", " where a = $1")),
    )
    .map(
      ([s, exprs, into, from, tail]) =>
        `${s} ${(exprs as string[]).join(", ")}${into ? ` ${into[0]} ${into[1]}${into[2]}` : ""}${
          from ? ` ${from[0]} ${from[1]}` : ""
        }${tail ?? ""}`,
    ),
  stmt: fc.oneof(
    { weight: 8, arbitrary: tie("select") },
    {
      weight: 2,
      arbitrary: fc
        .tuple(tie("select"), tie("select"), ident)
        .map(([a, b, n]) => `WITH ${n} AS (${a}) ${b}`),
    },
    {
      weight: 4,
      arbitrary: fc
        .tuple(kw("update"), ident, kw("set"), tie("expr"))
        .map(([u, t, s, e]) => `${u} ${t} ${s} a = ${e} WHERE id = $1`),
    },
    {
      weight: 3,
      arbitrary: fc.tuple(kw("insert into"), ident, tie("select")).map((p) => p.join(" ")),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(kw("explain"), fc.constantFrom("", "analyze", "(costs off)"), tie("select"))
        .map((p) => p.join(" ")),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          kw("set"),
          fc.constantFrom("", " session", " LOCAL"),
          fc.constantFrom("search_path", "timezone", "app.x", "statement_timeout", '"Role"'),
          fc.constantFrom(" = ", " TO "),
          fc.oneof(literal, ident, kw("default")),
        )
        .map((p) => p.join(" ")),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          kw("set"),
          fc.constantFrom(
            "role x",
            "ROLE NONE",
            "session authorization bob",
            "SESSION AUTHORIZATION DEFAULT",
            "transaction read only",
            "session characteristics as transaction read only",
            "time zone 'UTC'",
            "names 'UTF8'",
            "constraints all deferred",
          ),
        )
        .map((p) => p.join(" ")),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(kw("reset"), fc.oneof(ident, kw("all"), kw("role")))
        .map((p) => p.join(" ")),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          kw("create"),
          fc.constantFrom("", "temp", "TEMPORARY", "local temp", "global temporary", "unlogged"),
          kw("table"),
          fc.constantFrom(
            "t",
            "pg_temp.t",
            '"pg_temp".t',
            "pg_tempo.t",
            "public.t",
            "x.pg_temp",
            'U&"pg\\005Ftemp".t',
          ),
          fc.constantFrom("(a int)", "AS SELECT 1"),
        )
        .map((p) => p.join(" ")),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.constantFrom("listen", "UNLISTEN", "unlisten"), fc.oneof(ident, fc.constant("*")))
        .map((p) => p.join(" ")),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          kw("declare"),
          fc.constantFrom("c cursor", "c NO SCROLL CURSOR", "c BINARY CURSOR"),
          fc.constantFrom("", "with hold", "WITHOUT HOLD"),
          kw("for"),
          tie("select"),
        )
        .map((p) => p.join(" ")),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(kw("prepare"), fc.constantFrom("p as", "p (int) AS"), tie("select"))
        .map((p) => p.join(" ")),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(kw("deallocate"), fc.constantFrom("p", "all", "prepare all", '"all"'))
        .map((p) => p.join(" ")),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(kw("discard"), fc.constantFrom("all", "temp", "temporary", "plans", "sequences"))
        .map((p) => p.join(" ")),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(kw("close"), fc.constantFrom("c", "all")).map((p) => p.join(" ")),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(kw("do"), fc.constantFrom("$$ begin end $$", "'begin end'"))
        .map((p) => p.join(" ")),
    },
    { weight: 1, arbitrary: fc.tuple(kw("call"), funcName).map(([c, f]) => `${c} ${f}()`) },
    { weight: 1, arbitrary: kw("load 'x'") },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          kw("create"),
          fc.constantFrom("type", "domain"),
          fc.constantFrom("e", "pg_temp.e", "pg_temp_2.e", "attempts.e", "pg_tempo.e"),
          fc.constantFrom("AS ENUM ('a')", "AS ENUM (E'\\x70g_temp', 'b')", "as int"),
        )
        .map((p) => p.join(" ")),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(kw("create function"), fc.constantFrom("f", "pg_temp.f", "pg_temp_1.f"))
        .map(([c, f]) => `${c} ${f}() RETURNS int LANGUAGE sql AS E'\\x70g_temp'`),
    },
  ),
}));

/** A Query string: statements separated by ';', with blanks and comments around them. */
const query = fc
  .tuple(
    blank,
    fc.oneof(
      { weight: 4, arbitrary: (stmt as fc.Arbitrary<string>).map((x) => [x]) },
      {
        weight: 1,
        arbitrary: fc.array(stmt as fc.Arbitrary<string>, { minLength: 2, maxLength: 3 }),
      },
    ),
    fc.array(blank, { minLength: 3, maxLength: 3 }),
    fc.constantFrom("", ";", "; ", ";;\n"),
  )
  .map(
    ([lead, stmts, gaps, tail]) => `${lead}${stmts.join(`${gaps[0]};${gaps[1]}`)}${gaps[2]}${tail}`,
  );

/** Token soup: mostly unparseable, for lexing corners (unterminated quotes and comments). */
const soup = fc
  .array(
    fc.oneof(
      literal,
      ident,
      blank,
      kw("set"),
      kw("temp"),
      fc.constantFrom(
        ";",
        "'",
        '"',
        "$$",
        "/*",
        "*/",
        "--",
        "\\",
        "(",
        ")",
        ",",
        "E'",
        "u&",
        'U&"',
      ),
    ),
    { maxLength: 12 },
  )
  .map((parts) => parts.join(""));

describe("session-state prefilter", () => {
  it("never skips a statement in which the parser finds session state", () => {
    fc.assert(
      fc.property(fc.oneof(query, soup), (sql) => {
        if (!prefilter(sql)) expect(parserFinds(sql), sql).toEqual([]);
      }),
      { numRuns: 5000 },
    );
  });

  it("lets the hot-path statements through without the parser", () => {
    for (const sql of [
      "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
      "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;",
      "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;",
      "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2;",
      "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);",
      "BEGIN;",
      "END;",
      "SELECT 1 ;  ;\n",
      "SELECT id FROM jobs WHERE attempts < max_attempts AND template = $1",
      "SELECT temperature FROM readings WHERE tempo = 1",
      "INSERT INTO checkpoints (thread_id, checkpoint) VALUES ($1, $2) ON CONFLICT (thread_id) DO UPDATE SET checkpoint = EXCLUDED.checkpoint",
    ]) {
      expect(prefilter(sql), sql).toBe(false);
    }
  });

  it.each([
    "SET search_path = x",
    "  /* c /* nested */ */ -- c\n set x = 1",
    "SELECT 1; SELECT 2",
    "SELECT pg_advisory_lock(1)",
    "SELECT PG_TRY_ADVISORY_LOCK(1)",
    "SELECT set_config('a', 'b', false)",
    "CREATE TEMP TABLE t (a int)",
    "CREATE TABLE pg_temp.t (a int)",
    "CREATE TABLE PG_TEMP_3.t (a int)",
    "create temporary table t (a int)",
    "SELECT * INTO TEMP t FROM x",
    'SELECT U&"x"',
    "DO $$ $$",
    "call p()",
    "RESET ALL",
    "DISCARD ALL",
    "DEALLOCATE p",
    "LISTEN c",
    "unlisten *",
    "PREPARE p AS SELECT 1",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "CLOSE ALL",
    "LOAD 'x'",
  ])("sends %s to the parser", (sql) => {
    expect(prefilter(sql)).toBe(true);
  });

  it("reads only its range of the buffer", () => {
    const b = Buffer.from("SET ROLE x;SELECT 1;SELECT pg_advisory_lock(1)");
    expect(mayCarrySessionState(b, 11, 19)).toBe(false);
    expect(mayCarrySessionState(b, 0, 10)).toBe(true);
    expect(mayCarrySessionState(b, 20, b.length)).toBe(true);
  });
});
