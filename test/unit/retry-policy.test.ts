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
});
