// RetryPolicy.decide: which lost units may run again (DESIGN.md section 1). Each case names the
// evidence that the unit did not run, or that it only reads.
import { beforeAll, describe, expect, it } from "vitest";
import { ServerError } from "../../src/errors.js";
import { type LostUnit, RetryPolicy } from "../../src/frontend/retry-policy.js";
import { loadSqlParser } from "../../src/sql/parser.js";

const q = (sql: string): Buffer => {
  const body = Buffer.from(`${sql}\0`);
  const b = Buffer.alloc(5 + body.length);
  b[0] = 0x51;
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
};
/** A frontend message: code, length, then the body's NUL-terminated strings (and raw bytes). */
const frame = (code: string, ...parts: Array<string | Buffer>): Buffer => {
  const body = Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(`${p}\0`) : p)));
  const b = Buffer.alloc(5 + body.length);
  b[0] = code.charCodeAt(0);
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
};
const noParams = Buffer.from([0, 0, 0, 0, 0, 0]); // Parse: 0 types; Bind: 0 formats, 0 values, 0 results
const parse = (name: string, sql: string) => frame("P", name, sql, Buffer.from([0, 0]));
const bind = (statement: string) => frame("B", "", statement, noParams);
const execute = frame("E", "", Buffer.from([0, 0, 0, 0]));
const sync = frame("S");
const fatal = (code: string) => new ServerError("FATAL", code, "x", Buffer.alloc(0));

function lost(over: Partial<LostUnit>): LostUnit {
  return {
    unit: [q("INSERT INTO t VALUES (1)")],
    written: true,
    replied: false,
    resetBeforeRead: false,
    uncommitted: false,
    replays: 0,
    error: null,
    statementText: () => undefined,
    ...over,
  };
}

describe("RetryPolicy.decide", () => {
  beforeAll(() => loadSqlParser());
  const safe = new RetryPolicy("safe", 3, 1 << 20);

  it("never replays under off, nor a unit that outgrew retry_buffer_bytes", () => {
    expect(new RetryPolicy("off", 3, 1 << 20).decide(lost({ written: false }))).toBe(
      "not_retryable",
    );
    expect(safe.decide(lost({ unit: null, written: false }))).toBe("not_retryable");
  });

  it("gives up after retry_max replays", () => {
    expect(safe.decide(lost({ written: false, replays: 3 }))).toBe("gave_up");
  });

  it("replays a write that certainly did not run", () => {
    expect(safe.decide(lost({ written: false }))).toBe("replay");
    expect(safe.decide(lost({ resetBeforeRead: true }))).toBe("replay");
    expect(safe.decide(lost({ error: fatal("57P01") }))).toBe("replay");
    expect(safe.decide(lost({ uncommitted: true, replied: true }))).toBe("replay");
  });

  it("does not replay a write that may have run", () => {
    expect(safe.decide(lost({}))).toBe("not_retryable");
    expect(safe.decide(lost({ error: fatal("57P02") }))).toBe("not_retryable"); // a crash proves nothing
    expect(safe.decide(lost({ error: fatal("57P01"), replied: true }))).toBe("not_retryable");
    expect(safe.decide(lost({ resetBeforeRead: true, replied: true }))).toBe("not_retryable");
  });

  it("replays reads under safe and writes under all", () => {
    expect(safe.decide(lost({ unit: [q("SELECT 1")] }))).toBe("replay");
    expect(safe.decide(lost({ unit: [q("SELECT 1; DELETE FROM t")] }))).toBe("not_retryable");
    expect(new RetryPolicy("all", 3, 1 << 20).decide(lost({}))).toBe("replay");
  });

  it("replays up to retry_max, counting replays already made", () => {
    expect(safe.decide(lost({ written: false, replays: 2 }))).toBe("replay");
    expect(new RetryPolicy("all", 1, 1 << 20).decide(lost({ replays: 1 }))).toBe("gave_up");
  });

  it("does not replay a unit the server answered before its FATAL, whatever the FATAL", () => {
    expect(safe.decide(lost({ error: fatal("57P03"), replied: true }))).toBe("not_retryable");
    expect(safe.decide(lost({ error: fatal("57P03") }))).toBe("replay");
  });

  it("classifies extended-protocol units by their Parse, or by the client's named statement", () => {
    const texts: Record<string, string> = { s1: "SELECT 1", w1: "UPDATE t SET a = 1" };
    const statementText = (name: string) => texts[name];
    const read = [parse("", "SELECT 1"), bind(""), execute, sync];
    const write = [parse("", "INSERT INTO t VALUES (1)"), bind(""), execute, sync];
    expect(safe.decide(lost({ unit: read, statementText }))).toBe("replay");
    expect(safe.decide(lost({ unit: write, statementText }))).toBe("not_retryable");
    expect(safe.decide(lost({ unit: [bind("s1"), execute, sync], statementText }))).toBe("replay");
    expect(safe.decide(lost({ unit: [bind("w1"), execute, sync], statementText }))).toBe(
      "not_retryable",
    );
    // A statement the client never prepared with us: its text is unknown, so it may write.
    expect(safe.decide(lost({ unit: [bind("gone"), execute, sync], statementText }))).toBe(
      "not_retryable",
    );
  });

  it("never replays COPY FROM STDIN under safe, and counts each classification once", () => {
    const policy = new RetryPolicy("safe", 3, 1 << 20);
    const copy = [q("COPY t FROM STDIN"), frame("d", Buffer.from("1\n")), frame("c")];
    expect(policy.decide(lost({ unit: copy }))).toBe("not_retryable");
    // The data of a COPY whose statement is not in the unit (it went out with an earlier one).
    expect(policy.decide(lost({ unit: [frame("d", Buffer.from("1\n")), frame("c")] }))).toBe(
      "not_retryable",
    );
    expect(policy.decide(lost({ unit: [q("SELECT 1"), q("SELECT 2")] }))).toBe("replay");
    expect(policy.classified).toEqual({ read_only: 2, write: 1 });
  });
});
