// frontendMessageError: well-formed messages (as node-postgres encodes them) pass, and each malformed
// one is named in Postgres's words. The malformed cases and their words were checked against a real
// Postgres 15 (it answers each with an ERROR of the same text, or drops the connection on a length).
import { serialize } from "pg-protocol";
import { describe, expect, it } from "vitest";
import {
  frontendMessageError,
  LARGE_MESSAGE_LIMIT,
  SMALL_MESSAGE_LIMIT,
} from "../../src/protocol/validate.js";

function frame(type: string, ...parts: Array<Buffer | string>): Buffer {
  const body = Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p) : p)));
  const out = Buffer.alloc(5 + body.length);
  out.write(type, 0, "latin1");
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}
const z = (s: string) => Buffer.from(`${s}\0`);
function i16(n: number): Buffer {
  const b = Buffer.alloc(2);
  if (n < 0) b.writeInt16BE(n);
  else b.writeUInt16BE(n);
  return b;
}
function i32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

/** The verdict on a message standing alone in its buffer. */
function check(message: Buffer): string | null {
  return frontendMessageError(message[0], message, 0, message.length);
}

describe("frontendMessageError", () => {
  it("accepts what node-postgres sends", () => {
    const messages = [
      serialize.query("SELECT 1"),
      serialize.query(""),
      serialize.parse({ text: "SELECT $1::int, $2", types: [23, 25] }),
      serialize.parse({ name: "s1", text: "SELECT 1" }),
      serialize.bind({ statement: "s1", portal: "p", values: ["1", null, "x", Buffer.from([0])] }),
      serialize.bind({ statement: "s1", binary: true, values: [] }),
      serialize.bind(),
      serialize.execute({ portal: "p", rows: 10 }),
      serialize.execute(),
      serialize.describe({ type: "S", name: "s1" }),
      serialize.describe({ type: "P" }),
      serialize.close({ type: "S", name: "s1" }),
      serialize.close({ type: "P", name: "" }),
      serialize.sync(),
      serialize.flush(),
      serialize.end(),
      serialize.copyData(Buffer.from("1\t2\n")),
      serialize.copyDone(),
      serialize.copyFail("stopped"),
    ];
    for (const m of messages) expect(check(Buffer.from(m)), String.fromCharCode(m[0])).toBeNull();
  });

  it("accepts a FunctionCall with formats, a NULL and a value", () => {
    const f = frame("F", i32(1598), i16(1), i16(0), i16(2), i32(-1), i32(2), "ab", i16(0));
    expect(check(f)).toBeNull();
  });

  it("reads counts as Postgres does: unsigned 16 bits", () => {
    // 0xFFFF parameter types is 65535, not -1: the message must carry them all.
    const short = frame("P", z(""), z("select 1"), i16(-1));
    expect(check(short)).toBe("insufficient data left in message");
    const full = frame("P", z(""), z("select 1"), i16(-1), Buffer.alloc(65535 * 4));
    expect(check(full)).toBeNull();
  });

  it("validates only [start, end) of a larger buffer", () => {
    const bind = frame("B", z(""), z("s1"), i16(0), i16(0), i16(0));
    const buf = Buffer.concat([Buffer.from("xxx"), bind, Buffer.from("yyy")]);
    expect(frontendMessageError(0x42, buf, 3, 3 + bind.length)).toBeNull();
    // The same Bind cut before its statement's NUL: the NUL further on in the buffer is not its own.
    const cut = Buffer.concat([frame("B", z(""), "s1"), Buffer.from([0, 0, 0, 0, 0])]);
    expect(frontendMessageError(0x42, cut, 0, cut.length - 5)).toBe("invalid string in message");
  });

  const cases: Array<[string, Buffer, string]> = [
    ["Bind with an empty body", frame("B"), "invalid string in message"],
    ["Bind whose statement name has no NUL", frame("B", z(""), "s1"), "invalid string in message"],
    [
      "Bind whose parameter length is below -1",
      frame("B", z(""), z(""), i16(0), i16(1), i32(-2), i16(0)),
      "insufficient data left in message",
    ],
    [
      "Bind whose parameter runs past the message",
      frame("B", z(""), z(""), i16(0), i16(1), i32(100), "ab", i16(0)),
      "insufficient data left in message",
    ],
    [
      "Bind with 2 parameter formats for 1 parameter",
      frame("B", z(""), z(""), i16(2), i16(0), i16(0), i16(1), i32(1), "1", i16(0)),
      "bind message has 2 parameter formats but 1 parameters",
    ],
    [
      "Bind with bytes after its result formats",
      frame("B", z(""), z(""), i16(0), i16(0), i16(1), i16(0), "x"),
      "invalid message format",
    ],
    [
      "Bind without its result format count",
      frame("B", z(""), z(""), i16(0), i16(0)),
      "insufficient data left in message",
    ],
    ["Close with subtype 'X'", frame("C", "X", z("s1")), "invalid CLOSE message subtype 88"],
    ["Close with bytes after the name", frame("C", "S", z("s1"), "zz"), "invalid message format"],
    ["Close with an empty body", frame("C"), "no data left in message"],
    ["Close whose name has no NUL", frame("C", "S", "s1"), "invalid string in message"],
    ["Describe with subtype 's'", frame("D", "s", z("")), "invalid DESCRIBE message subtype 115"],
    [
      "Describe longer than Postgres's small-message limit",
      frame("D", "S", z("n".repeat(SMALL_MESSAGE_LIMIT))),
      "invalid message length",
    ],
    ["Query with a NUL inside", frame("Q", "select 1\0select 2\0"), "invalid message format"],
    ["Query without a NUL", frame("Q", "select 1"), "invalid string in message"],
    ["Query with an empty body", frame("Q"), "invalid string in message"],
    ["Sync with a body", frame("S", "x"), "invalid message format"],
    ["Flush with a body", frame("H", "x"), "invalid message format"],
    [
      "Sync longer than the small-message limit",
      frame("S", Buffer.alloc(SMALL_MESSAGE_LIMIT)),
      "invalid message length",
    ],
    ["Execute without its row limit", frame("E", z("")), "insufficient data left in message"],
    [
      "Execute with bytes after the row limit",
      frame("E", z(""), i32(0), "x"),
      "invalid message format",
    ],
    [
      "Parse without its type count",
      frame("P", z(""), z("select 1")),
      "insufficient data left in message",
    ],
    ["Parse whose query has no NUL", frame("P", z(""), "select 1"), "invalid string in message"],
    [
      "Parse with bytes after its types",
      frame("P", z(""), z("select 1"), i16(0), "x"),
      "invalid message format",
    ],
    [
      "FunctionCall without arguments count",
      frame("F", i32(1598), i16(0)),
      "insufficient data left in message",
    ],
    [
      "FunctionCall with 2 formats for 1 argument",
      frame("F", i32(1598), i16(2), i16(0), i16(0), i16(1), i32(-1), i16(0)),
      "function call message contains 2 argument formats but 1 arguments",
    ],
    [
      "FunctionCall with argument size -5",
      frame("F", i32(1598), i16(0), i16(1), i32(-5), i16(0)),
      "invalid argument size -5 in function call message",
    ],
    ["CopyFail without a NUL", frame("f", "oops"), "invalid string in message"],
    ["an unknown message type", frame("y", "x"), "invalid frontend message type 121"],
    ["a PasswordMessage after login", frame("p", z("pw")), "invalid frontend message type 112"],
  ];
  for (const [what, message, error] of cases) {
    it(`names ${what}: ${error}`, () => {
      expect(check(message)).toBe(error);
    });
  }

  it("accepts what Postgres does not look into: a Terminate or CopyDone body", () => {
    expect(check(frame("X", "bye"))).toBeNull();
    expect(check(frame("c", "done"))).toBeNull();
    expect(check(frame("f", z("why"), "more"))).toBeNull();
  });

  it("refuses a Query longer than Postgres's large-message limit from its length alone", () => {
    // A view whose length says more than 1 GB: only end - start is looked at for that.
    const buf = Buffer.alloc(16);
    expect(frontendMessageError(0x51, buf, 0, LARGE_MESSAGE_LIMIT + 2)).toBe(
      "invalid message length",
    );
  });

  it("is linear: 65535 parameters and a 16 MB query take milliseconds", () => {
    const params: Buffer[] = [];
    for (let i = 0; i < 65535; i++) params.push(i % 2 ? i32(-1) : Buffer.concat([i32(1), z("")]));
    const bind = frame("B", z(""), z("s"), i16(1), i16(0), i16(65535), ...params, i16(0));
    const query = frame("Q", z("x".repeat(16 * 1024 * 1024)));
    const t0 = performance.now();
    expect(check(bind)).toBeNull();
    expect(check(query)).toBeNull();
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});
