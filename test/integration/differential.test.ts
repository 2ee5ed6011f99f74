// Differential protocol test (DESIGN.md §6): the same scripted conversations, byte for byte, sent
// to Postgres directly and through the sidecar (transaction mode and session mode, pool_size 2),
// give the same replies message by message — modulo what a pooler may legitimately change
// (backend keys, login ParameterStatus, notification pids, error source locations, user OIDs of
// re-created tables; see test/helpers/differential.ts).
//
// Every conversation runs in two write batchings: `pipeline` (all frames in one write) and
// `messages` (each frame in its own write, waiting for each step's ReadyForQuery or Flush reply).
// Before each run the conversation's setup SQL resets its own tables (names cNN), so the direct
// run and the proxied run start from the same state.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Batching,
  bind,
  close,
  copyData,
  copyDone,
  copyFail,
  describe as describeMsg,
  type Endpoint,
  execute,
  firstDifference,
  flush,
  functionCall,
  int32,
  login,
  type Mask,
  normalise,
  type ParamValue,
  parse,
  play,
  queryFrame,
  type Step,
  sync,
} from "../helpers/differential.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

type Mode = "transaction" | "session";

interface Conversation {
  name: string;
  /** SQL run as the superuser on a separate connection before each run (direct and proxied). */
  setup?: string;
  steps: Step[];
  batchings?: Batching[];
  modes?: Mode[];
  /** Keep listening this long after the last ReadyForQuery (asynchronous notifications). */
  settleMs?: number;
  masks?: Mask[];
  timeoutMs?: number;
}

// ---------------------------------------------------------------------------------------------
// Script shorthands

/** One step: these simple Queries, each in its own Query message. */
const q = (...sqls: string[]): Step => ({ frames: sqls.map(queryFrame) });
/** One step: these frames. */
const x = (...frames: Buffer[]): Step => ({ frames });
/** One step that waits (in `messages` batching) for `count` messages of `type`. */
const until = (type: string, count: number, ...frames: Buffer[]): Step => ({
  frames,
  until: { type, count },
});
/** Parse + Bind + Execute of an unnamed statement, no Sync. */
const pbe = (sql: string, values: ParamValue[] = []): Buffer[] => [
  parse("", sql),
  bind("", "", values),
  execute(),
];
/** Parse + Bind + Describe portal + Execute + Sync of an unnamed statement: one step. */
const ext = (sql: string, values: ParamValue[] = []): Step =>
  x(parse("", sql), bind("", "", values), describeMsg("P", ""), execute(), sync());

function i8(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(n, 0);
  return b;
}

const table = (name: string, cols = "id int PRIMARY KEY, v text") =>
  `DROP TABLE IF EXISTS ${name}; CREATE TABLE ${name} (${cols})`;

const INT4 = 23;
const INT8 = 20;
const TEXT = 25;
const MB = 1024 * 1024;
const INT4PL_OID = 177;

// ---------------------------------------------------------------------------------------------
// The conversations

const conversations: Conversation[] = [
  // --- simple query ---------------------------------------------------------------------------
  {
    name: "simple: one SELECT with several types",
    steps: [
      q(
        "SELECT 1 AS a, 'x'::text AS b, NULL::int AS c, 1.50::numeric(5,2) AS d, true AS e, " +
          "'2024-01-02'::date AS f, ARRAY[1,2] AS g, '{\"k\": 1}'::jsonb AS h, 'é€'::text AS i",
      ),
    ],
  },
  {
    name: "simple: multi-statement query",
    steps: [q("SELECT 1; SELECT 2 AS two, 3 AS three; VALUES (1, 'a'), (2, 'b');")],
  },
  {
    name: "simple: empty queries",
    steps: [q("", ";", "   ", "-- just a comment", "SELECT 1;;")],
  },
  {
    name: "simple: error in the middle of a multi-statement query",
    steps: [q("SELECT 1; SELECT 1/0; SELECT 2", "SELECT 3")],
  },
  {
    name: "simple: syntax error and undefined table",
    steps: [q("SELEC 1", "SELECT * FROM no_such_table_here", "SELECT 'still fine'")],
  },
  {
    name: "simple: DDL and DML command tags",
    setup: "DROP TABLE IF EXISTS c06",
    steps: [
      q(
        "CREATE TABLE c06 (id int PRIMARY KEY, v text)",
        "INSERT INTO c06 VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        "UPDATE c06 SET v = v || '!' WHERE id > 1",
        "DELETE FROM c06 WHERE id = 3",
        "SELECT * FROM c06 ORDER BY id",
        "INSERT INTO c06 VALUES (9, 'z') RETURNING id, v",
        "CREATE INDEX c06_v ON c06 (v)",
        "ALTER TABLE c06 ADD COLUMN w int",
        "TRUNCATE c06",
        "DROP TABLE c06",
      ),
    ],
  },
  {
    name: "simple: a failing statement rolls back its implicit transaction",
    setup: table("c07"),
    steps: [
      q(
        "INSERT INTO c07 VALUES (1, 'a'); INSERT INTO c07 VALUES (1, 'dup')",
        "SELECT count(*) FROM c07",
      ),
    ],
  },
  {
    name: "simple: BEGIN and COMMIT inside one query string",
    setup: table("c08"),
    steps: [
      q(
        "BEGIN; INSERT INTO c08 VALUES (1, 'a'); COMMIT; SELECT count(*) FROM c08",
        "BEGIN; INSERT INTO c08 VALUES (2, 'b')",
        "SELECT count(*) FROM c08",
        "COMMIT",
      ),
    ],
  },
  {
    name: "simple: unique violation with detail, not-null violation",
    setup: table("c09"),
    steps: [
      q(
        "INSERT INTO c09 VALUES (1, 'a')",
        "INSERT INTO c09 VALUES (1, 'b')",
        "INSERT INTO c09 VALUES (NULL, 'b')",
        "SELECT 'x'::int",
      ),
    ],
  },

  // --- extended protocol ----------------------------------------------------------------------
  {
    name: "extended: unnamed statement",
    steps: [ext("SELECT $1::int + 1 AS n, $2::text AS t", ["41", "hello"])],
  },
  {
    name: "extended: named statement reused, Describe S, Close S",
    steps: [
      x(parse("s1", "SELECT $1::int * 2 AS doubled"), describeMsg("S", "s1"), sync()),
      x(bind("", "s1", ["21"]), execute(), sync()),
      x(bind("", "s1", ["50"]), describeMsg("P", ""), execute(), sync()),
      x(close("S", "s1"), sync()),
    ],
  },
  {
    name: "extended: Describe S of an INSERT (ParameterDescription + NoData)",
    setup: table("c12"),
    steps: [
      x(
        parse("ins", "INSERT INTO c12 VALUES ($1, $2)"),
        describeMsg("S", "ins"),
        bind("", "ins", ["1", "one"]),
        describeMsg("P", ""),
        execute(),
        sync(),
      ),
      x(parse("sel", "SELECT v FROM c12 WHERE id = $1"), describeMsg("S", "sel"), sync()),
      x(bind("", "sel", ["1"]), execute(), sync()),
    ],
  },
  {
    name: "extended: binary parameters and binary results",
    steps: [
      x(
        parse("", "SELECT $1::int4 + 1 AS a, $2::int8 * 2 AS b, $3::text AS c, $4::bytea AS d", [
          INT4,
          INT8,
          TEXT,
          0,
        ]),
        bind(
          "",
          "",
          [int32(41), i8(1n << 40n), "text param", Buffer.from([0, 1, 2, 255])],
          [1, 1, 0, 1],
          [1, 1, 0, 1],
        ),
        describeMsg("P", ""),
        execute(),
        sync(),
      ),
      x(
        parse("", "SELECT $1::int4 AS a"),
        bind("", "", [int32(7)], [1], [1]),
        execute(),
        bind("", "", [null], [1], [0]),
        execute(),
        sync(),
      ),
    ],
  },
  {
    name: "extended: Execute with row limits and PortalSuspended",
    steps: [
      x(
        parse("", "SELECT g FROM generate_series(1, 5) g"),
        bind("p1", "", []),
        describeMsg("P", "p1"),
        execute("p1", 2),
        execute("p1", 2),
        execute("p1", 0),
        execute("p1", 1),
        sync(),
      ),
      x(bind("", "", []), execute("", 3), sync()),
    ],
  },
  {
    name: "extended: a portal kept across Syncs inside a transaction",
    steps: [
      q("BEGIN"),
      x(parse("", "SELECT g FROM generate_series(1, 5) g"), bind("cur", "", []), execute("cur", 2)),
      x(sync()),
      x(execute("cur", 2), sync()),
      x(execute("cur", 0), sync()),
      x(execute("cur", 0), sync()),
      q("COMMIT"),
      x(execute("cur", 1), sync()),
    ],
  },
  {
    name: "extended: Close P and Close S, Close of names that do not exist",
    steps: [
      x(
        parse("cs", "SELECT 1 AS one"),
        bind("cp", "cs", []),
        close("P", "cp"),
        execute("cp"),
        sync(),
      ),
      x(close("S", "cs"), close("S", "never_was"), close("P", "never_was"), sync()),
      x(bind("", "cs", []), execute(), sync()),
    ],
  },
  {
    name: "extended: error mid-pipeline, messages skipped until Sync",
    setup: table("c17"),
    steps: [
      x(
        ...pbe("INSERT INTO c17 VALUES (1, 'a')"),
        parse("", "SELECT nope FROM c17"),
        bind("", "", []),
        execute(),
        ...pbe("INSERT INTO c17 VALUES (2, 'b')"),
        sync(),
      ),
      ext("SELECT count(*) FROM c17"),
    ],
  },
  {
    name: "extended: error flushed before the rest of the pipeline is written",
    setup: table("c19"),
    steps: [
      until(
        "E",
        1,
        ...pbe("INSERT INTO c19 VALUES (1, 'a')"),
        parse("", "SELECT nope FROM c19"),
        bind("", "", []),
        execute(),
        flush(),
      ),
      x(...pbe("INSERT INTO c19 VALUES (2, 'b')"), describeMsg("S", ""), sync()),
      x(close("S", "never_was"), ...pbe("SELECT count(*) FROM c19"), sync()),
      x(close("S", "never_was"), sync()),
    ],
  },
  {
    name: "extended: error reaches the proxy before the client's Sync is written",
    setup: table("c20"),
    steps: [
      {
        frames: [
          ...pbe("INSERT INTO c20 VALUES (1, 'a')"),
          parse("", "SELECT nope FROM c20"),
          bind("", "", []),
          execute(),
        ],
        pauseMs: 200,
      },
      x(...pbe("INSERT INTO c20 VALUES (2, 'b')"), sync()),
      ext("SELECT count(*) FROM c20"),
    ],
  },
  {
    name: "extended: several Syncs in one write, the middle one fails",
    setup: table("c18"),
    steps: [
      x(
        ...pbe("INSERT INTO c18 VALUES (1, 'a')"),
        sync(),
        ...pbe("INSERT INTO c18 VALUES (1, 'dup')"),
        sync(),
        ...pbe("INSERT INTO c18 VALUES (2, 'b')"),
        sync(),
        ...pbe("SELECT id, v FROM c18 ORDER BY id"),
        sync(),
      ),
    ],
  },
  {
    name: "extended: Flush returns replies before Sync",
    steps: [
      until(
        "C",
        1,
        parse("", "SELECT 'flushed' AS f"),
        bind("", "", []),
        describeMsg("P", ""),
        execute(),
        flush(),
      ),
      x(sync()),
    ],
  },
  {
    name: "extended: Flush after a named Parse, then Bind/Execute",
    steps: [
      until("1", 1, parse("fl", "SELECT $1::text AS t"), flush()),
      until("2", 1, bind("", "fl", ["a"]), flush()),
      x(execute(), sync()),
      x(bind("", "fl", ["b"]), execute(), sync()),
    ],
  },
  {
    name: "extended: Sync alone, twice",
    steps: [x(sync()), x(sync(), sync())],
  },
  {
    name: "extended: empty query string",
    steps: [
      x(
        parse("", ""),
        describeMsg("S", ""),
        bind("", "", []),
        describeMsg("P", ""),
        execute(),
        sync(),
      ),
    ],
  },
  {
    name: "extended: Parse with declared parameter types",
    steps: [
      x(
        parse("typed", "SELECT $1 AS a, $2 AS b, $3::numeric AS c", [INT4, TEXT, 0]),
        describeMsg("S", "typed"),
        bind("", "typed", ["5", "five", "5.5"]),
        execute(),
        sync(),
      ),
    ],
  },
  {
    name: "extended: Bind with the wrong number of parameters, bad value",
    steps: [
      x(parse("two", "SELECT $1::int + $2::int AS s"), sync()),
      x(bind("", "two", ["1"]), execute(), sync()),
      x(bind("", "two", ["1", "x"]), execute(), sync()),
      x(bind("", "two", ["1", "2"]), execute(), sync()),
    ],
  },
  {
    name: "extended: Parse of a name that exists (42P05)",
    steps: [
      x(parse("dup", "SELECT 1"), sync()),
      x(parse("dup", "SELECT 2"), bind("", "dup", []), execute(), sync()),
      x(parse("dup", "SELECT 1"), sync()),
      x(bind("", "dup", []), execute(), sync()),
    ],
  },
  {
    name: "extended: invalid statement names (26000)",
    steps: [
      x(bind("", "nope", []), execute(), sync()),
      x(describeMsg("S", "nope"), sync()),
      x(parse("", "SELECT 1"), bind("", "also_nope", []), sync()),
      ext("SELECT 'after'"),
    ],
  },
  {
    name: "extended: Describe and Execute of an unknown portal (34000)",
    steps: [
      x(describeMsg("P", "ghost"), sync()),
      x(execute("ghost"), sync()),
      x(describeMsg("P", ""), sync()),
      ext("SELECT 'after'"),
    ],
  },
  {
    name: "extended: the unnamed statement is replaced by the next Parse",
    steps: [
      x(
        parse("", "SELECT 'first' AS w"),
        parse("", "SELECT 'second' AS w"),
        bind("", "", []),
        execute(),
        sync(),
      ),
    ],
  },
  {
    name: "extended: a Query after Parse/Bind/Execute without Sync",
    steps: [x(...pbe("SELECT 1 AS a"), queryFrame("SELECT 2 AS b")), ext("SELECT 3 AS c")],
  },
  {
    name: "extended: Parse error, Bind to the failed unnamed statement",
    steps: [
      x(parse("", "SELEC 1"), bind("", "", []), execute(), sync()),
      x(bind("", "", []), execute(), sync()),
    ],
  },

  // --- transactions ---------------------------------------------------------------------------
  {
    name: "tx: BEGIN, inserts, COMMIT",
    setup: table("c30"),
    steps: [
      q(
        "BEGIN",
        "INSERT INTO c30 VALUES (1, 'a')",
        "INSERT INTO c30 VALUES (2, 'b')",
        "SELECT count(*) FROM c30",
        "COMMIT",
        "SELECT count(*) FROM c30",
      ),
    ],
  },
  {
    name: "tx: error inside (25P02), COMMIT answers ROLLBACK",
    setup: table("c31"),
    steps: [
      q(
        "BEGIN",
        "INSERT INTO c31 VALUES (1, 'a')",
        "SELECT 1/0",
        "SELECT 1",
        "INSERT INTO c31 VALUES (2, 'b')",
        "COMMIT",
        "SELECT count(*) FROM c31",
      ),
    ],
  },
  {
    name: "tx: error inside, ROLLBACK",
    setup: table("c32"),
    steps: [
      q("BEGIN", "INSERT INTO c32 VALUES (1, 'a')", "SELECT nope", "ROLLBACK", "SELECT 'clean'"),
    ],
  },
  {
    name: "tx: savepoints, ROLLBACK TO and RELEASE",
    setup: table("c33"),
    steps: [
      q(
        "BEGIN",
        "SAVEPOINT a",
        "INSERT INTO c33 VALUES (1, 'a')",
        "SAVEPOINT b",
        "SELECT 1/0",
        "SELECT 1",
        "ROLLBACK TO SAVEPOINT b",
        "INSERT INTO c33 VALUES (2, 'b')",
        "RELEASE SAVEPOINT b",
        "ROLLBACK TO a",
        "INSERT INTO c33 VALUES (3, 'c')",
        "RELEASE a",
        "COMMIT",
        "SELECT id FROM c33 ORDER BY id",
      ),
    ],
  },
  {
    name: "tx: savepoint misuse and transaction-state warnings",
    steps: [
      q(
        "SAVEPOINT x",
        "RELEASE x",
        "ROLLBACK TO x",
        "ROLLBACK",
        "COMMIT",
        "BEGIN",
        "BEGIN",
        "ROLLBACK TO nonexistent",
        "ROLLBACK",
        "BEGIN; SAVEPOINT s; RELEASE s; RELEASE s",
        "ROLLBACK",
      ),
    ],
  },
  {
    name: "tx: transaction through the extended protocol",
    setup: table("c35"),
    steps: [
      ext("BEGIN"),
      ext("INSERT INTO c35 VALUES ($1, $2)", ["1", "a"]),
      ext("SELECT 1/0"),
      ext("SELECT 1"),
      ext("COMMIT"),
      ext("SELECT count(*) FROM c35"),
    ],
  },
  {
    name: "tx: implicit transaction of a pipeline is rolled back by an error",
    setup: table("c36"),
    steps: [
      x(
        ...pbe("INSERT INTO c36 VALUES (1, 'a')"),
        ...pbe("INSERT INTO c36 VALUES (2, 'b')"),
        ...pbe("INSERT INTO c36 VALUES (2, 'dup')"),
        sync(),
      ),
      ext("SELECT count(*) FROM c36"),
    ],
  },
  {
    name: "tx: read-only transaction refuses a write (25006)",
    setup: table("c37"),
    steps: [
      q(
        "BEGIN READ ONLY",
        "INSERT INTO c37 VALUES (1, 'a')",
        "ROLLBACK",
        "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SHOW transaction_isolation",
        "COMMIT",
      ),
    ],
  },
  {
    name: "tx: SET LOCAL lasts only for the transaction",
    steps: [
      q(
        "BEGIN",
        "SET LOCAL statement_timeout = '7s'",
        "SHOW statement_timeout",
        "COMMIT",
        "SHOW statement_timeout",
      ),
    ],
  },
  {
    name: "tx: BEGIN and COMMIT spread over pipelined Syncs",
    setup: table("c39"),
    steps: [
      x(
        ...pbe("BEGIN"),
        sync(),
        ...pbe("INSERT INTO c39 VALUES (1, 'a')"),
        sync(),
        ...pbe("SELECT nope"),
        sync(),
        ...pbe("SELECT 1"),
        sync(),
        ...pbe("ROLLBACK"),
        sync(),
        ...pbe("SELECT count(*) FROM c39"),
        sync(),
      ),
    ],
  },

  // --- prepared statements --------------------------------------------------------------------
  {
    name: "prepared: named statement used across transactions",
    setup: table("c40"),
    steps: [
      x(parse("ins40", "INSERT INTO c40 VALUES ($1, $2)"), sync()),
      x(bind("", "ins40", ["1", "a"]), execute(), sync()),
      q("BEGIN"),
      x(bind("", "ins40", ["2", "b"]), execute(), sync()),
      q("COMMIT"),
      x(bind("", "ins40", ["3", "c"]), execute(), sync()),
      q("BEGIN"),
      x(bind("", "ins40", ["3", "dup"]), execute(), sync()),
      q("ROLLBACK"),
      x(bind("", "ins40", ["4", "d"]), execute(), sync()),
      q("SELECT id, v FROM c40 ORDER BY id"),
    ],
  },
  {
    name: "prepared: Close S, Bind fails, re-Parse with other text",
    steps: [
      x(parse("s41", "SELECT 'old' AS which"), sync()),
      x(bind("", "s41", []), execute(), sync()),
      x(close("S", "s41"), sync()),
      x(bind("", "s41", []), execute(), sync()),
      x(parse("s41", "SELECT 'new' AS which, 2 AS n"), sync()),
      x(bind("", "s41", []), describeMsg("P", ""), execute(), sync()),
    ],
  },
  {
    name: "prepared: Close S and re-Parse in the same pipeline",
    steps: [
      x(
        parse("s42", "SELECT 1 AS v"),
        bind("", "s42", []),
        execute(),
        close("S", "s42"),
        parse("s42", "SELECT 2 AS v"),
        bind("", "s42", []),
        execute(),
        sync(),
      ),
    ],
  },
  {
    name: "prepared: DEALLOCATE by simple Query",
    steps: [
      x(parse("s43", "SELECT 43 AS n"), parse("t43", "SELECT 'other' AS n"), sync()),
      q("DEALLOCATE s43"),
      x(bind("", "s43", []), execute(), sync()),
      x(bind("", "t43", []), execute(), sync()),
      q("DEALLOCATE s43"),
      q("DEALLOCATE PREPARE t43"),
      x(bind("", "t43", []), execute(), sync()),
      x(parse("s43", "SELECT 'again' AS n"), bind("", "s43", []), execute(), sync()),
      q("DEALLOCATE ALL"),
      x(bind("", "s43", []), execute(), sync()),
    ],
  },
  {
    name: "prepared: DISCARD ALL by simple Query",
    steps: [
      x(parse("s44", "SELECT 44 AS n"), sync()),
      q("SET application_name = 'changed'"),
      q("DISCARD ALL"),
      x(bind("", "s44", []), execute(), sync()),
      q("SHOW application_name"),
      q("BEGIN", "DISCARD ALL", "ROLLBACK"),
      x(parse("s44", "SELECT 'back' AS n"), bind("", "s44", []), execute(), sync()),
    ],
  },
  {
    name: "prepared: DEALLOCATE through the extended protocol (psycopg)",
    steps: [
      x(parse("s45", "SELECT 45 AS n"), bind("", "s45", []), execute(), sync()),
      x(parse("", "DEALLOCATE s45"), bind("", "", []), describeMsg("P", ""), execute(), sync()),
      x(bind("", "s45", []), execute(), sync()),
      x(parse("", "DEALLOCATE s45"), bind("", "", []), execute(), sync()),
      x(parse("s45", "SELECT 'reparsed' AS n"), bind("", "s45", []), execute(), sync()),
    ],
  },
  {
    name: "prepared: DEALLOCATE ALL and DISCARD ALL through the extended protocol",
    steps: [
      x(parse("a46", "SELECT 1 AS n"), parse("b46", "SELECT 2 AS n"), sync()),
      x(parse("", "DEALLOCATE ALL"), bind("", "", []), execute(), sync()),
      x(bind("", "a46", []), execute(), sync()),
      x(parse("c46", "SELECT 3 AS n"), sync()),
      x(parse("", "DISCARD ALL"), bind("", "", []), execute(), sync()),
      x(bind("", "c46", []), execute(), sync()),
      ext("SELECT 'alive'"),
    ],
  },
  {
    name: "prepared: SQL PREPARE / EXECUTE / DEALLOCATE",
    steps: [
      q(
        "PREPARE q47(int) AS SELECT $1 + 1 AS n",
        "EXECUTE q47(41)",
        "PREPARE q47 AS SELECT 1",
        "DEALLOCATE q47",
        "EXECUTE q47(1)",
      ),
    ],
  },
  {
    name: "prepared: same name, same text on a pipeline with several Syncs",
    steps: [
      x(
        parse("s48", "SELECT $1::int AS n"),
        bind("", "s48", ["1"]),
        execute(),
        sync(),
        bind("", "s48", ["2"]),
        execute(),
        sync(),
        close("S", "s48"),
        sync(),
        bind("", "s48", ["3"]),
        execute(),
        sync(),
      ),
    ],
  },

  // --- COPY ---------------------------------------------------------------------------------
  {
    name: "copy: FROM STDIN",
    setup: table("c50"),
    steps: [
      x(
        queryFrame("COPY c50 FROM STDIN"),
        copyData("1\ta\n"),
        copyData("2\tb\n3\t"),
        copyData("c\n"),
        copyDone(),
      ),
      q("SELECT * FROM c50 ORDER BY id"),
    ],
  },
  {
    name: "copy: TO STDOUT, text and csv",
    setup: `${table("c51")}; INSERT INTO c51 VALUES (1, 'a'), (2, NULL), (3, 'tab\there')`,
    steps: [
      q("COPY c51 TO STDOUT"),
      q("COPY (SELECT id, v FROM c51 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)"),
      q("COPY (SELECT 1 AS a) TO STDOUT; SELECT 2 AS b"),
    ],
  },
  {
    name: "copy: COPY FROM STDIN in the middle of a multi-statement query",
    setup: table("c57"),
    steps: [
      x(
        queryFrame("SELECT 1 AS before; COPY c57 FROM STDIN; SELECT count(*) FROM c57"),
        copyData("1\ta\n2\tb\n"),
        copyDone(),
      ),
      q("SELECT count(*) FROM c57"),
    ],
  },
  {
    name: "copy: CopyFail",
    setup: table("c52"),
    steps: [
      x(queryFrame("COPY c52 FROM STDIN"), copyData("1\ta\n"), copyFail("client gave up")),
      q("SELECT count(*) FROM c52"),
    ],
  },
  {
    name: "copy: bad data, then trailing CopyData/CopyDone are ignored",
    setup: table("c53"),
    steps: [
      x(
        queryFrame("COPY c53 FROM STDIN"),
        copyData("1\ta\n"),
        copyData("x\tb\n"),
        copyData("3\tc\n"),
        copyDone(),
      ),
      q("SELECT count(*) FROM c53"),
    ],
  },
  {
    name: "copy: COPY of a missing table, with data behind it",
    steps: [
      x(queryFrame("COPY no_such_c54 FROM STDIN"), copyData("1\ta\n"), copyDone()),
      q("SELECT 'after'"),
    ],
  },
  {
    name: "copy: through the extended protocol",
    setup: table("c55"),
    steps: [
      x(
        parse("", "COPY c55 FROM STDIN"),
        bind("", "", []),
        execute(),
        copyData("1\tx\n2\ty\n"),
        copyDone(),
        sync(),
      ),
      x(parse("", "COPY c55 TO STDOUT"), bind("", "", []), execute(), sync()),
      x(
        parse("", "COPY c55 FROM STDIN"),
        bind("", "", []),
        execute(),
        copyData("9\tz\n"),
        copyFail("nope"),
        sync(),
      ),
      q("SELECT count(*) FROM c55"),
    ],
  },
  {
    name: "copy: 2 MB in 64 kB CopyData messages",
    setup: table("c56"),
    steps: [
      x(
        queryFrame("COPY c56 FROM STDIN"),
        ...Array.from({ length: 32 }, (_, i) => {
          const rows: string[] = [];
          for (let r = 0; r < 64; r++) rows.push(`${i * 64 + r}\t${"v".repeat(1000)}`);
          return copyData(`${rows.join("\n")}\n`);
        }),
        copyDone(),
      ),
      q("SELECT count(*), sum(length(v)) FROM c56"),
    ],
  },

  // --- notices, SET/SHOW, LISTEN/NOTIFY -------------------------------------------------------
  {
    name: "notices: RAISE NOTICE/WARNING/EXCEPTION in DO",
    steps: [
      q(
        "DO $$BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful' USING HINT = 'a hint'; END$$",
        "DO $$BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = '22012', DETAIL = 'some detail'; END$$",
        "DROP TABLE IF EXISTS no_such_c60",
      ),
      x(
        ...pbe("DO $$BEGIN RAISE NOTICE 'extended notice'; END$$"),
        ...pbe("DROP TABLE IF EXISTS no_such_c60"),
        sync(),
      ),
    ],
  },
  {
    name: "notices: client_min_messages hides notices",
    steps: [
      q(
        "SET client_min_messages = warning",
        "DO $$BEGIN RAISE NOTICE 'hidden'; RAISE WARNING 'shown'; END$$",
        "RESET client_min_messages",
        "DO $$BEGIN RAISE NOTICE 'shown again'; END$$",
      ),
    ],
  },
  {
    name: "set: application_name, ParameterStatus, SHOW and RESET",
    steps: [
      q(
        "SHOW application_name",
        "SET application_name = 'renamed'",
        "SHOW application_name",
        "RESET application_name",
        "SHOW application_name",
      ),
    ],
  },
  {
    name: "set: TimeZone, DateStyle, IntervalStyle shape output",
    steps: [
      q(
        "SET TimeZone = 'America/New_York'",
        "SET DateStyle = 'SQL, DMY'",
        "SET IntervalStyle = 'iso_8601'",
        "SELECT '2024-03-04 05:06:07+00'::timestamptz AS t, '1 day 2 hours'::interval AS i",
        "SHOW TimeZone",
      ),
      ext("SELECT '2024-03-04 05:06:07+00'::timestamptz AS t"),
      q("RESET ALL", "SHOW DateStyle"),
    ],
  },
  {
    name: "set: set_config, search_path, SET in a failed transaction",
    setup: "DROP SCHEMA IF EXISTS c64 CASCADE; CREATE SCHEMA c64; CREATE TABLE c64.t (a int)",
    steps: [
      q(
        "SELECT set_config('application_name', 'via_set_config', false)",
        "SET search_path = c64, public",
        "SHOW search_path",
        "SELECT count(*) FROM t",
        "BEGIN",
        "SET search_path = public",
        "SELECT 1/0",
        "SET search_path = nowhere",
        "ROLLBACK",
        "SHOW search_path",
        "SET no_such_setting = 1",
        "SET work_mem = 'lots'",
      ),
    ],
  },
  {
    name: "set: SET in the extended protocol",
    steps: [
      ext("SET application_name = 'ext_set'"),
      ext("SHOW application_name"),
      ext("SELECT current_setting('application_name')"),
    ],
  },
  {
    name: "listen: LISTEN/NOTIFY to self",
    settleMs: 300,
    steps: [
      q(
        "LISTEN c66",
        "NOTIFY c66, 'hello'",
        "SELECT pg_notify('c66', 'two')",
        "UNLISTEN c66",
        "NOTIFY c66, 'not heard'",
        "SELECT 'end'",
      ),
    ],
  },
  {
    name: "listen: NOTIFY inside a transaction arrives at COMMIT",
    settleMs: 300,
    steps: [
      q(
        "LISTEN c67",
        "BEGIN",
        "NOTIFY c67, 'one'",
        "NOTIFY c67, 'one'",
        "NOTIFY c67, 'two'",
        "SELECT 'in tx'",
        "COMMIT",
        "BEGIN",
        "NOTIFY c67, 'rolled back'",
        "ROLLBACK",
        "UNLISTEN *",
      ),
    ],
  },

  // --- large messages -------------------------------------------------------------------------
  {
    name: "large: 10k rows, simple query",
    steps: [q("SELECT g, 'row ' || g AS label FROM generate_series(1, 10000) g")],
  },
  {
    name: "large: 10k rows, extended, fetched in chunks",
    steps: [
      x(
        parse("", "SELECT g, repeat('z', 50) AS pad FROM generate_series(1, 10000) g"),
        bind("big", "", []),
        execute("big", 4000),
        execute("big", 4000),
        execute("big", 4000),
        sync(),
      ),
    ],
  },
  {
    name: "large: 1 MB parameter, unnamed statement",
    steps: [
      x(
        parse("", "SELECT length($1::text) AS n, md5($1::text) AS h"),
        bind("", "", ["x".repeat(MB)]),
        execute(),
        sync(),
      ),
    ],
  },
  {
    name: "large: 1 MB parameter, named statement",
    steps: [
      x(parse("big71", "SELECT length($1::text) AS n, md5($1::text) AS h"), sync()),
      x(bind("", "big71", ["y".repeat(MB)]), execute(), sync()),
      x(bind("", "big71", ["small"]), execute(), sync()),
    ],
  },
  {
    name: "large: 2 MB simple query",
    steps: [q(`SELECT length('${"q".repeat(2 * MB)}') AS n`), q("SELECT 'after'")],
  },
  {
    name: "large: 2 MB parameter, bigger than one TCP write, pipelined with small units",
    steps: [
      x(
        ...pbe("SELECT 'before'"),
        sync(),
        parse("", "SELECT length($1::text) AS n"),
        bind("", "", ["w".repeat(2 * MB)]),
        execute(),
        sync(),
        ...pbe("SELECT 'after'"),
        sync(),
      ),
    ],
  },

  // --- function call, cursors, pinning state --------------------------------------------------
  {
    name: "fastpath: FunctionCall int4pl, text and binary, unknown OID",
    steps: [
      x(functionCall(INT4PL_OID, ["2", "3"])),
      x(functionCall(INT4PL_OID, [int32(40), int32(2)], [1], 1)),
      x(functionCall(INT4PL_OID, [null, "1"])),
      x(functionCall(4_000_000_000, ["1"])),
      q("SELECT 'after'"),
    ],
  },
  {
    name: "cursor: DECLARE, FETCH, MOVE, CLOSE in a transaction",
    steps: [
      q(
        "BEGIN",
        "DECLARE cur75 CURSOR FOR SELECT g FROM generate_series(1, 10) g",
        "FETCH 3 FROM cur75",
        "MOVE 2 IN cur75",
        "FETCH NEXT FROM cur75",
        "CLOSE cur75",
        "FETCH 1 FROM cur75",
        "ROLLBACK",
        "DECLARE outside CURSOR FOR SELECT 1",
      ),
    ],
  },
  {
    name: "cursor: WITH HOLD cursor outlives its transaction",
    steps: [
      q(
        "DECLARE hold76 CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 5) g",
        "FETCH 2 FROM hold76",
        "SELECT 'between'",
        "FETCH ALL FROM hold76",
        "CLOSE hold76",
      ),
    ],
  },
  {
    name: "pinned: temporary table",
    steps: [
      q(
        "CREATE TEMP TABLE tmp77 (a int)",
        "INSERT INTO tmp77 SELECT generate_series(1, 3)",
        "SELECT sum(a) FROM tmp77",
        "DROP TABLE tmp77",
        "SELECT * FROM tmp77",
      ),
    ],
  },
  {
    name: "pinned: session advisory lock",
    steps: [
      q(
        "SELECT pg_advisory_lock(7878)",
        "SELECT pg_try_advisory_lock(7878) AS again",
        "SELECT pg_advisory_unlock(7878)",
        "SELECT pg_advisory_unlock(7878)",
        "SELECT pg_advisory_unlock_all()",
      ),
    ],
  },
  {
    name: "misc: statement_timeout cancels a query (57014)",
    steps: [
      q(
        "SET statement_timeout = '100ms'",
        "SELECT pg_sleep(2)",
        "SELECT 'after'",
        "RESET statement_timeout",
      ),
    ],
  },
  {
    name: "misc: identity values, RETURNING through the extended protocol",
    setup:
      "DROP TABLE IF EXISTS c80; CREATE TABLE c80 (id int GENERATED ALWAYS AS IDENTITY, v text)",
    steps: [
      x(
        parse("ins80", "INSERT INTO c80 (v) VALUES ($1) RETURNING id, v"),
        describeMsg("S", "ins80"),
        bind("", "ins80", ["a"]),
        execute(),
        bind("", "ins80", ["b"]),
        execute(),
        sync(),
      ),
      q("INSERT INTO c80 (id, v) VALUES (1, 'x')"),
      ext("SELECT id, v FROM c80 ORDER BY id"),
    ],
  },
];

// ---------------------------------------------------------------------------------------------

/**
 * Differences from Postgres the sidecar still has, each with its reason. Startup parameters are
 * applied to pooled servers with SET, so a RESET / RESET ALL / DISCARD ALL returns the server to
 * its own default instead of the client's startup value (issue 13, "every startup parameter
 * honoured"); a second Parse of an existing statement name is accepted instead of 42P05;
 * notifications in transaction mode are fanned out by a LISTEN connection (HUB_ORDER).
 */
const STARTUP_RESET = "RESET returns to the server's default, not the client's startup value";
const HUB_ORDER =
  "in transaction mode notifications come from the pool's LISTEN connection: after the ReadyForQuery of the statement that caused them, not before it (and an UNLISTEN pipelined behind a NOTIFY takes effect when the pipeline ends)";
const KNOWN_DIFFERENCES = new Map<string, { modes: string[]; why: string }>([
  ["listen: LISTEN/NOTIFY to self", { modes: ["transaction"], why: HUB_ORDER }],
  [
    "listen: NOTIFY inside a transaction arrives at COMMIT",
    { modes: ["transaction"], why: HUB_ORDER },
  ],
  ["extended: Parse of a name that exists (42P05)", { modes: ["transaction"], why: "no 42P05" }],
  [
    "prepared: DISCARD ALL by simple Query",
    { modes: ["transaction", "session"], why: STARTUP_RESET },
  ],
  [
    "prepared: DEALLOCATE ALL and DISCARD ALL through the extended protocol",
    { modes: ["session"], why: STARTUP_RESET },
  ],
  [
    "set: application_name, ParameterStatus, SHOW and RESET",
    { modes: ["transaction", "session"], why: STARTUP_RESET },
  ],
  [
    "set: TimeZone, DateStyle, IntervalStyle shape output",
    { modes: ["transaction", "session"], why: STARTUP_RESET },
  ],
]);

describe("differential: Postgres directly vs through the sidecar", () => {
  let cluster: SharedCluster;
  const proxies = new Map<Mode, TestProxy>();
  let direct: Endpoint;
  const via = (mode: Mode): Endpoint => {
    const p = proxies.get(mode);
    if (!p) throw new Error(`no ${mode} proxy`);
    return { ...direct, port: p.port };
  };

  beforeAll(async () => {
    cluster = await sharedCluster();
    direct = {
      port: cluster.port,
      user: cluster.superuser,
      password: cluster.password,
      database: "postgres",
      params: { application_name: "difftest" },
    };
    proxies.set("transaction", await startProxy(cluster, { pool_size: 2 }));
    proxies.set("session", await startProxy(cluster, { pool_size: 2, pool_mode: "session" }));
  });
  afterAll(async () => {
    for (const p of proxies.values()) await p.stop();
  });

  /** Resets the conversation's state, logs in, plays it; the normalised replies. */
  async function converse(conv: Conversation, ep: Endpoint, batching: Batching) {
    if (conv.setup) await cluster.query(conv.setup);
    const conn = await login(ep);
    try {
      const msgs = await play(conn, conv.steps, {
        batching,
        settleMs: conv.settleMs,
        timeoutMs: conv.timeoutMs,
      });
      return normalise(msgs, conv.masks);
    } finally {
      await conn.end();
    }
  }

  it("has at least 50 conversations, uniquely named", () => {
    for (const name of KNOWN_DIFFERENCES.keys()) {
      expect(conversations.map((c) => c.name)).toContain(name);
    }
    expect(conversations.length).toBeGreaterThanOrEqual(50);
    expect(new Set(conversations.map((c) => c.name)).size).toBe(conversations.length);
  });

  for (const conv of conversations) {
    describe(conv.name, () => {
      for (const batching of conv.batchings ?? (["pipeline", "messages"] as const)) {
        for (const mode of conv.modes ?? (["transaction", "session"] as const)) {
          // A known difference is still run: it.fails turns red the day the difference is gone.
          const known = KNOWN_DIFFERENCES.get(conv.name);
          const run = known?.modes.includes(mode) ? it.fails : it;
          const title =
            run === it
              ? `${batching}, ${mode} mode`
              : `${batching}, ${mode} mode (known difference: ${known?.why})`;
          run(title, async () => {
            const want = await converse(conv, direct, batching);
            let got: string[];
            try {
              got = await converse(conv, via(mode), batching);
            } catch (e) {
              throw new Error(
                `through the sidecar: ${(e as Error).message}\n--- direct replies ---\n${want.join("\n")}`,
              );
            }
            const diff = firstDifference(want, got, ["direct", `${mode}`]);
            if (diff) throw new Error(diff);
          });
        }
      }
    });
  }
});
