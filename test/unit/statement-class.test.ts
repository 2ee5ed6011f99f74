import { beforeAll, describe, expect, it } from "vitest";
import { classifyStatement } from "../../src/frontend/statement-class.js";
import { loadSqlParser, MAX_PARSE_BYTES } from "../../src/sql/parser.js";

beforeAll(async () => {
  await loadSqlParser();
});

describe("classifyStatement (retry: safe)", () => {
  it.each([
    "SELECT 1",
    "select * from t where a = $1",
    "SELECT 1;",
    "  SELECT 1 ;  ",
    "SHOW timezone",
    "SHOW ALL",
    "VALUES (1), (2)",
    "TABLE accounts",
    "EXPLAIN SELECT 1",
    "EXPLAIN (FORMAT JSON, COSTS false) SELECT * FROM t WHERE a = $1",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
    "WITH a AS (WITH b AS (SELECT 1 AS v) SELECT v FROM b) SELECT * FROM a",
    "SELECT 1 UNION SELECT 2 INTERSECT SELECT 3 EXCEPT SELECT 4",
    "SELECT count(*), max(v) FROM t -- UPDATE in a comment",
    "SELECT count(*) /* DELETE FROM t; /* nested */ still a comment */ FROM t",
    "SELECT 'insert into t' AS text",
    "SELECT 'a; DELETE FROM t' AS s",
    "SELECT $$; DELETE FROM t$$ AS s",
    "SELECT $tag$ $$; DELETE FROM t $$ $tag$",
    "SELECT E'a\\'; DELETE FROM t' AS s",
    'SELECT "SET", "delete" FROM "UPDATE"',
    "SELECT pg_catalog.now(), now(), current_timestamp, current_user, coalesce(a, 0) FROM t",
    "SELECT a FROM t WHERE b = ANY($1) AND c IN (SELECT c FROM u) ORDER BY a LIMIT 10 OFFSET 5",
    "SELECT extract(year FROM d), trim(s), substring(s FROM 2), d AT TIME ZONE 'UTC' FROM t",
    "SELECT x::int + 1, CAST(y AS text), z || 'a', j -> 'k' ->> 'l' FROM t",
    "SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t",
    "SELECT * FROM generate_series(1, 10) AS g",
    "SELECT * FROM t TABLESAMPLE SYSTEM (10)",
    "SELECT EXISTS (SELECT 1 FROM t WHERE a = 1)",
    "SELECT c.checkpoint, array_agg(b.blob) FROM checkpoints c JOIN jsonb_each_text(c.checkpoint -> 'channel_versions') e ON true",
    "-- just a comment",
    "",
  ])("%s is read-only", (sql) => {
    expect(classifyStatement(sql)).toBe("read_only");
  });

  it.each([
    // more than one statement, whatever hides the second one
    "SHOW x; DELETE FROM t",
    "EXPLAIN SELECT 1; INSERT INTO t VALUES (1)",
    "SELECT '--'; DELETE FROM t",
    "SELECT E'a\\'b'; UPDATE t SET a=1",
    "SELECT 1; EXECUTE ins",
    "SELECT 1; SELECT 2",
    "SELECT '/*'; DELETE FROM t; SELECT '*/'",
    "SELECT $$x$$; DELETE FROM t",
    // standard_conforming_strings off: `'a\', '` is one literal and the DELETE runs
    "SELECT 'a\\', '; DELETE FROM t; --'",
    "SELECT '\\d+' ~ 'x'",
    // functions that are not side-effect-free built-ins
    "SELECT app.now()",
    "SELECT public.count(*) FROM t",
    'SELECT "NOW"()',
    "SELECT nextval('s')",
    "SELECT currval('s')",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_try_advisory_lock(1)",
    "SELECT set_config('a.b','x',false)",
    "SELECT myfunc()",
    "SELECT my_function(1)",
    "SELECT * FROM myfunc()",
    "SELECT a FROM t WHERE b = (SELECT f(b))",
    "SELECT * FROM t WHERE a IN (SELECT a FROM u WHERE v = nextval('s'))",
    "WITH x AS (SELECT txid_current()) SELECT * FROM x",
    "SELECT pg_notify('c', 'p')",
    "SELECT lo_unlink(1)",
    "SELECT pg_terminate_backend(1)",
    "SELECT 1 UNION SELECT nextval('s')",
    "SELECT * FROM t TABLESAMPLE my_method (10)",
    // locking, INTO, data-modifying CTEs
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t FOR SHARE SKIP LOCKED",
    "SELECT * FROM (SELECT * FROM t FOR NO KEY UPDATE) s",
    "SELECT * FROM t WHERE a IN (SELECT a FROM u FOR KEY SHARE)",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "WITH u AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM u",
    "WITH i AS (INSERT INTO t VALUES (1) RETURNING a) SELECT * FROM i",
    "WITH a AS (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) SELECT * FROM a",
    "SELECT 1 INTO t2",
    "SELECT * INTO TEMP t2 FROM t",
    // EXPLAIN that runs, or explains something other than a SELECT
    "EXPLAIN ANALYZE DELETE FROM t",
    "EXPLAIN ANALYZE SELECT 1",
    "EXPLAIN ANALYSE SELECT 1",
    "EXPLAIN (ANALYZE) SELECT 1",
    "EXPLAIN (ANALYZE false) SELECT 1",
    "EXPLAIN DELETE FROM t",
    "EXPLAIN EXECUTE p",
    "EXPLAIN SELECT nextval('s')",
    // other statements
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET a = 1",
    "DELETE FROM t",
    "MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE",
    "FETCH ALL FROM c",
    "MOVE NEXT IN c",
    "COMMIT PREPARED 'x'",
    "COMMIT",
    "BEGIN",
    "EXECUTE ins",
    "CALL proc()",
    "DO $$ BEGIN END $$",
    "COPY t FROM STDIN",
    "COPY (SELECT 1) TO STDOUT",
    "SET search_path = a",
    "CREATE TABLE t (a int)",
    "LOCK TABLE t",
    "NOTIFY c",
    "PREPARE p AS SELECT 1",
    "DECLARE c CURSOR FOR SELECT 1",
    // what does not parse
    "SELECT FROM WHERE",
    "SELEC 1",
    "SELECT 'unterminated",
    "SELECT 1 /* unterminated",
  ])("%s is a write", (sql) => {
    expect(classifyStatement(sql)).toBe("write");
  });

  it("does not parse text over the size bound, and calls it a write", () => {
    const sql = `SELECT '${"x".repeat(MAX_PARSE_BYTES)}'`;
    expect(classifyStatement(sql)).toBe("write");
  });
});
