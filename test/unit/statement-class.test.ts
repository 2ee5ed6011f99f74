import { describe, expect, it } from "vitest";
import { detectSessionState } from "../../src/frontend/session-state.js";
import { classifyStatement } from "../../src/frontend/statement-class.js";

describe("classifyStatement (retry: safe)", () => {
  it.each([
    "SELECT 1",
    "select * from t where a = $1",
    "SHOW timezone",
    "VALUES (1), (2)",
    "TABLE accounts",
    "EXPLAIN SELECT 1",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "SELECT count(*), max(v) FROM t -- UPDATE in a comment",
    "SELECT 'insert into t' AS text",
    "SELECT c.checkpoint, array_agg(b.blob) FROM checkpoints c JOIN jsonb_each_text(c.checkpoint -> 'channel_versions') e ON true",
  ])("%s is read-only", (sql) => {
    expect(classifyStatement(sql)).toBe("read_only");
  });

  it.each([
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET a = 1",
    "DELETE FROM t",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "SELECT * FROM t FOR UPDATE",
    "SELECT nextval('s')",
    "SELECT my_function(1)",
    "EXPLAIN ANALYZE DELETE FROM t",
    "CALL proc()",
    "DO $$ BEGIN END $$",
    "SELECT pg_advisory_lock(1)",
    "COPY t FROM STDIN",
  ])("%s is a write", (sql) => {
    expect(classifyStatement(sql)).toBe("write");
  });
});

describe("detectSessionState (pinning)", () => {
  const detect = (sql: string) => {
    const b = Buffer.from(sql);
    return detectSessionState(b, 0, b.length);
  };
  it("pins session state and ignores what transaction pooling carries", () => {
    expect(detect("SET search_path = a")).toEqual({ pin: "set" });
    expect(detect("set session statement_timeout = 5")).toEqual({ pin: "set" });
    expect(detect("SET LOCAL statement_timeout = 5")).toBeNull();
    expect(detect("SET TimeZone = 'UTC'")).toBeNull(); // reported and re-applied, not pinned
    expect(detect("  /* c */ LISTEN jobs")).toEqual({ pin: "listen" });
    expect(detect("UNLISTEN *")).toEqual({ unpin: "listen" });
    expect(detect("CREATE TEMP TABLE x (a int)")).toEqual({ pin: "temp_table" });
    expect(detect("CREATE TABLE x (a int)")).toBeNull();
    expect(detect("SELECT pg_advisory_lock(1)")).toEqual({ pin: "advisory_lock" });
    expect(detect("SELECT pg_advisory_xact_lock(1)")).toBeNull();
    expect(detect("DECLARE c CURSOR WITH HOLD FOR SELECT 1")).toEqual({ pin: "hold_cursor" });
    expect(detect("PREPARE p AS SELECT 1")).toEqual({ pin: "sql_prepare" });
    expect(detect("DISCARD ALL")).toEqual({ unpin: "all" });
    expect(detect("SELECT 1")).toBeNull();
    expect(detect("INSERT INTO t VALUES (1)")).toBeNull();
  });
});
