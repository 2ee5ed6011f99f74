import { beforeAll, describe, expect, it } from "vitest";
import {
  detectSessionState,
  NO_EFFECTS,
  PinReason,
  type SessionEffects,
} from "../../src/frontend/session-state.js";
import { loadSqlParser, MAX_PARSE_BYTES } from "../../src/sql/parser.js";

beforeAll(async () => {
  await loadSqlParser();
});

function detect(sql: string): SessionEffects {
  // Surround the text with other bytes: only b[start, end) may be read.
  const b = Buffer.from(`Q\0\0\0\0${sql}\0;SET ROLE x`);
  return detectSessionState(b, 5, 5 + Buffer.byteLength(sql));
}

function pins(sql: string): string[] {
  return detect(sql).flatMap((e) => ("pin" in e ? [e.pin] : []));
}

function unpins(sql: string): string[] {
  return detect(sql).flatMap((e) => ("unpin" in e ? [e.unpin] : []));
}

describe("detectSessionState: what pins", () => {
  it.each([
    ["SET search_path = a", PinReason.Set],
    ["set session statement_timeout = 5", PinReason.Set],
    ["SELECT 1; SET search_path = x", PinReason.Set],
    ["SELECT set_config('app.tenant', 'x', false)", PinReason.Set],
    ["select SET_CONFIG('app.tenant', 'x', 'off')", PinReason.Set],
    ["SELECT set_config('app.tenant', $1, $2)", PinReason.Set],
    ["SELECT pg_catalog.set_config('app.tenant', 'x', false)", PinReason.Set],
    ["SELECT * FROM t WHERE a = (SELECT set_config('a.b', 'x', false))", PinReason.Set],
    ["SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", PinReason.Set],
    ["SET ROLE x", PinReason.SetRole],
    ["SELECT set_config('role', 'x', false)", PinReason.SetRole],
    ["SET SESSION AUTHORIZATION bob", PinReason.SessionAuthorization],
    ["  /* c */ LISTEN jobs", PinReason.Listen],
    ["CREATE TEMP TABLE x (a int)", PinReason.TempTable],
    ["CREATE TEMPORARY TABLE x (a int)", PinReason.TempTable],
    ["create local temporary table x (a int)", PinReason.TempTable],
    ["CREATE TEMP TABLE x AS SELECT 1", PinReason.TempTable],
    ["CREATE TEMP VIEW v AS SELECT 1", PinReason.TempTable],
    ["CREATE TEMP SEQUENCE s", PinReason.TempTable],
    ["CREATE TABLE pg_temp.x (a int)", PinReason.TempTable],
    ['CREATE TABLE "pg_temp".x (a int)', PinReason.TempTable],
    ["CREATE TABLE pg_temp.x AS SELECT 1", PinReason.TempTable],
    ["CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", PinReason.TempTable],
    ["SELECT * INTO TEMP t FROM x", PinReason.TempTable],
    ["CREATE TYPE pg_temp.e AS ENUM ('a')", PinReason.TempTable],
    ["CREATE DOMAIN pg_temp.d AS int", PinReason.TempTable],
    ["SELECT * INTO TEMPORARY t FROM x", PinReason.TempTable],
    ["SELECT * INTO pg_temp.t FROM x", PinReason.TempTable],
    ["SELECT pg_advisory_lock(1)", PinReason.AdvisoryLock],
    ["SELECT PG_ADVISORY_LOCK(1)", PinReason.AdvisoryLock],
    ["SELECT pg_try_advisory_lock(1)", PinReason.AdvisoryLock],
    ["SELECT pg_advisory_lock_shared(1)", PinReason.AdvisoryLock],
    ["SELECT pg_try_advisory_lock_shared(1, 2)", PinReason.AdvisoryLock],
    ["WITH l AS (SELECT pg_advisory_lock(1)) SELECT * FROM l", PinReason.AdvisoryLock],
    ["SELECT * FROM t WHERE EXISTS (SELECT pg_try_advisory_lock(t.id))", PinReason.AdvisoryLock],
    ["SELECT x FROM (SELECT pg_advisory_lock(1) AS x) s", PinReason.AdvisoryLock],
    ['SELECT "pg_advisory_lock"(1)', PinReason.AdvisoryLock],
    ['SELECT U&"pg_\\0061dvisory_lock"(1)', PinReason.AdvisoryLock],
    ["DECLARE c CURSOR WITH HOLD FOR SELECT 1", PinReason.HoldCursor],
    ["DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT 1", PinReason.HoldCursor],
    ["PREPARE p AS SELECT 1", PinReason.SqlPrepare],
    ["prepare p (int) as insert into t values ($1)", PinReason.SqlPrepare],
    ["DO $$ BEGIN PERFORM 1; END $$", PinReason.UnknownCode],
    ["CALL proc()", PinReason.UnknownCode],
    ["LOAD 'auto_explain'", PinReason.UnknownCode],
    ["SELECT 1; CALL proc()", PinReason.UnknownCode],
    // does not parse, but names something that could carry state
    ["SET search_path TO", PinReason.Unparsed],
    ["SELECT 1; SETT x = 1", PinReason.Unparsed],
    ["SELECT pg_advisory_lock(1", PinReason.Unparsed],
    // standard_conforming_strings off would read a SET ROLE the parser sees inside a literal
    ["SELECT 'a\\', '; SET ROLE admin; --'", PinReason.SetRole],
    // ... or an ambiguous literal that cannot be rewritten for the parser
    ["SELECT N'a\\', '; SET ROLE admin; --'", PinReason.Unparsed],
  ])("%s pins (%s)", (sql, reason) => {
    expect(pins(sql)).toContain(reason);
  });

  it("pins text over the size bound that names session state", () => {
    const sql = `SELECT set_config('a.b', '${"x".repeat(MAX_PARSE_BYTES)}', false)`;
    expect(pins(sql)).toEqual([PinReason.Unparsed]);
  });

  it("reads both standard_conforming_strings settings, keeping the pins of either", () => {
    // Off: one literal `', ` then SET ROLE. On: two literals (no state).
    expect(pins("SELECT 'a\\', '; SET ROLE x; --'")).toEqual(
      expect.arrayContaining([PinReason.SetRole]),
    );
    // Either way the same SET: its pin only.
    expect(detect("SET search_path = 'a\\b'")).toEqual([{ pin: PinReason.Set }]);
  });
});

describe("detectSessionState: what does not pin", () => {
  it.each([
    "SELECT 1",
    "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
    "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);",
    "INSERT INTO t VALUES (1)",
    "SELECT * INTO t2 FROM t",
    "SET LOCAL statement_timeout = 5",
    "SET LOCAL ROLE x",
    "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    "SET CONSTRAINTS ALL DEFERRED",
    "SELECT set_config('a.b', 'x', true)",
    "SELECT set_config('a.b', 'x', 'on')",
    "SELECT pg_advisory_xact_lock(1)",
    "SELECT pg_try_advisory_xact_lock(1)",
    "SELECT pg_advisory_xact_lock_shared(1)",
    "SELECT pg_advisory_unlock(1)",
    "SELECT 'pg_advisory_lock(1)'",
    "SELECT 1 -- ; SET ROLE x",
    "SELECT '; SET ROLE x'",
    "SELECT $$; SET ROLE x$$",
    'SELECT "set_config" FROM t',
    "SELECT temperature FROM readings",
    "SELECT id FROM jobs WHERE attempts < max_attempts",
    "CREATE TYPE e AS ENUM (E'\\x70g_temp', 'b')",
    "CREATE TABLE pg_tempo.t (a int)",
    "CREATE TABLE t (a int)",
    "CREATE UNLOGGED TABLE t (a int)",
    "DECLARE c CURSOR FOR SELECT 1",
    "PREPARE TRANSACTION 'x'",
    "CLOSE c",
    "DEALLOCATE p",
    "UNLISTEN ch",
    "RESET search_path",
    "SET x TO DEFAULT",
    "DISCARD PLANS",
    "DISCARD SEQUENCES",
    "SHOW search_path",
    "EXPLAIN SELECT 1",
    "",
    "   ",
    ";",
  ])("%s", (sql) => {
    expect(pins(sql)).toEqual([]);
  });

  it("reports a tracked parameter as a setting without pinning: it is re-applied", () => {
    expect(detect("SET TimeZone = 'UTC'")).toEqual([
      { set: { name: "timezone", sql: `SET "timezone" TO 'UTC'` } },
    ]);
    expect(detect("SET TIME ZONE 'UTC'")).toEqual([
      { set: { name: "timezone", sql: `SET "timezone" TO 'UTC'` } },
    ]);
    expect(detect("SET application_name TO 'app'")).toEqual([
      { set: { name: "application_name", sql: `SET "application_name" TO 'app'` } },
    ]);
  });

  it("returns the shared empty array for statements the prefilter passes", () => {
    expect(detect("SELECT abalance FROM pgbench_accounts WHERE aid = $1;")).toBe(NO_EFFECTS);
    expect(detect("UPDATE t SET a = 1 WHERE id = $1")).toBe(NO_EFFECTS);
  });
});

describe("detectSessionState: what unpins", () => {
  it.each([
    ["RESET ALL", PinReason.Set],
    ["RESET ROLE", PinReason.SetRole],
    ["SET ROLE NONE", PinReason.SetRole],
    ["SET ROLE TO DEFAULT", PinReason.SetRole],
    ["RESET SESSION AUTHORIZATION", PinReason.SessionAuthorization],
    ["SET SESSION AUTHORIZATION DEFAULT", PinReason.SessionAuthorization],
    ["UNLISTEN *", PinReason.Listen],
    ["SELECT pg_advisory_unlock_all()", PinReason.AdvisoryLock],
    ["DISCARD TEMP", PinReason.TempTable],
    ["DISCARD TEMPORARY", PinReason.TempTable],
    ["CLOSE ALL", PinReason.HoldCursor],
    ["DEALLOCATE ALL", PinReason.SqlPrepare],
    ["DEALLOCATE PREPARE ALL", PinReason.SqlPrepare],
    ["DISCARD ALL", "all"],
  ])("%s unpins %s", (sql, reason) => {
    expect(unpins(sql)).toContain(reason);
  });

  it("keeps statement order, so a later statement undoes an earlier one", () => {
    expect(detect("SET ROLE x; RESET ROLE")).toEqual([
      { set: { name: "role", sql: `SET "role" TO 'x'` } },
      { pin: PinReason.SetRole },
      { reset: "role" },
      { unpin: PinReason.SetRole },
    ]);
  });

  it("does not take a quoted name for ALL", () => {
    expect(detect('DEALLOCATE "all"')).toEqual([{ deallocate: "all" }]);
    expect(unpins('DEALLOCATE "all"')).toEqual([]);
  });
});

describe("detectSessionState: the other effects", () => {
  it.each<[string, SessionEffects]>([
    [
      "SET search_path = a, 'b c'",
      [{ set: { name: "search_path", sql: `SET "search_path" TO 'a', 'b c'` } }, { pin: "set" }],
    ],
    [
      "SET statement_timeout = 5000",
      [
        { set: { name: "statement_timeout", sql: `SET "statement_timeout" TO 5000` } },
        { pin: "set" },
      ],
    ],
    [
      "SELECT set_config('app.tenant', 'x''y', false)",
      [
        {
          set: {
            name: "app.tenant",
            sql: `SELECT pg_catalog.set_config('app.tenant', 'x''y', false)`,
          },
        },
        { pin: "set" },
      ],
    ],
    ["SET x TO DEFAULT", [{ reset: "x" }]],
    ["RESET x", [{ reset: "x" }]],
    ["RESET ALL", [{ reset: "all" }, { unpin: "set" }]],
    ["DISCARD ALL", [{ discard: "all" }, { unpin: "all" }]],
    ["DISCARD TEMP", [{ discard: "temp" }, { unpin: "temp_table" }]],
    ["DISCARD PLANS", [{ discard: "plans" }]],
    ["DISCARD SEQUENCES", [{ discard: "sequences" }]],
    ["DEALLOCATE p", [{ deallocate: "p" }]],
    [
      "DEALLOCATE ALL",
      [{ deallocate: null }, { unpin: "sql_prepare" }, { unpin: "prepared_statement" }],
    ],
    ["LISTEN ch", [{ listen: "ch" }, { pin: "listen" }]],
    ["UNLISTEN ch", [{ unlisten: "ch" }]],
    ["UNLISTEN *", [{ unlisten: null }, { unpin: "listen" }]],
  ])("%s", (sql, effects) => {
    expect(detect(sql)).toEqual(effects);
  });
});
