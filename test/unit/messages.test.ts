// The messages the proxy originates, byte for byte against encoders written from the protocol
// documentation (protocol-message-formats.html): the frontend ones now come from pg-protocol's
// serializer, and must be exactly what the hand-written builders they replaced sent.
import fc from "fast-check";
import { serialize } from "pg-protocol";
import { describe, expect, it, vi } from "vitest";
import * as msg from "../../src/protocol/messages.js";
import { close, flush, int32, parse, sync, terminate } from "../helpers/differential.js";
import { cancelPacket, frame, queryFrame, startupPacket } from "../helpers/wire.js";

const cstr = (s: string) => Buffer.from(`${s}\0`, "utf8");

/** Text as the proxy may be given it: any code point, lone surrogates and NULs included. */
const text = fc.string({
  unit: fc.oneof(
    { weight: 6, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
    { weight: 1, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map(String.fromCharCode) },
    { weight: 1, arbitrary: fc.constant("\0") },
  ),
  maxLength: 40,
});
// pg-protocol edge cases: a missing or "" name is the unnamed statement (one NUL), as ours was;
// Bind's null parameter (-1) does not concern us, the proxy originates no Bind.
/** Statement names: "" (the unnamed statement) often, never over 63 characters (see below). */
const statementName = fc.oneof(fc.constant(""), fc.string({ unit: "binary", maxLength: 63 }));
const oid = fc.integer({ min: 0, max: 0x7fffffff });

describe("messages to the upstream (pg-protocol's serializer)", () => {
  it("Query", () => {
    fc.assert(fc.property(text, (sql) => msg.query(sql).equals(queryFrame(sql))));
    expect(msg.emptyQuery).toEqual(Buffer.from([0x51, 0, 0, 0, 5, 0]));
  });

  it("Parse, with the unnamed statement, no types and types", () => {
    fc.assert(
      fc.property(statementName, text, fc.array(oid, { maxLength: 5 }), (name, sql, types) =>
        msg.parse(name, sql, types).equals(parse(name, sql, types)),
      ),
    );
  });

  it("Parse takes OIDs signed (as read with readInt32BE) or unsigned: the same bytes", () => {
    const unsigned = [0, 23, 0x80000000, 0xffffffff];
    const signed = unsigned.map((n) => n | 0);
    expect(msg.parse("s", "q", signed)).toEqual(parse("s", "q", unsigned));
    expect(msg.parse("s", "q", Int32Array.from(signed))).toEqual(parse("s", "q", unsigned));
  });

  it("Parse warns on stderr about a name over 63 characters, and still sends it whole", () => {
    const warn = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      const name = "n".repeat(64);
      expect(msg.parse(name, "SELECT 1", [])).toEqual(parse(name, "SELECT 1"));
      expect(warn).toHaveBeenCalled();
    } finally {
      warn.mockRestore();
    }
  });

  it("Close of a statement or a portal", () => {
    fc.assert(
      fc.property(fc.constantFrom("S" as const, "P" as const), statementName, (kind, name) =>
        msg.close(kind, name).equals(close(kind, name)),
      ),
    );
  });

  it("PasswordMessage, SASLInitialResponse and SASLResponse", () => {
    fc.assert(
      fc.property(text, text, (a, b) => {
        const bytes = Buffer.from(b, "utf8");
        return (
          msg.passwordMessage(a).equals(frame("p", cstr(a))) &&
          msg
            .saslInitialResponse(a, b)
            .equals(frame("p", Buffer.concat([cstr(a), int32(bytes.length), bytes]))) &&
          msg.saslResponse(b).equals(frame("p", bytes))
        );
      }),
    );
    // An empty initial response is a length of 0, not -1 ("no data").
    expect(msg.saslInitialResponse("SCRAM-SHA-256", "")).toEqual(
      frame("p", Buffer.concat([cstr("SCRAM-SHA-256"), int32(0)])),
    );
  });

  it("Sync, Flush, Terminate and SSLRequest", () => {
    expect(msg.syncMessage).toEqual(sync());
    expect(msg.flushMessage).toEqual(flush());
    expect(msg.terminateMessage).toEqual(terminate());
    expect(msg.sslRequestPacket).toEqual(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]));
  });
});

describe("messages pg-protocol cannot build as we need them (hand-written)", () => {
  it("StartupMessage: exactly our parameters; pg-protocol's adds client_encoding=UTF8", () => {
    const params = { user: "u", database: "d", application_name: "a\u00e9" };
    expect(msg.startupMessage(params)).toEqual(startupPacket(3, 0, params));
    expect(serialize.startup(params)).toEqual(
      startupPacket(3, 0, { ...params, client_encoding: "UTF8" }),
    );
  });

  it("CancelRequest: any key length; pg-protocol's takes a 4-byte key only", () => {
    const key4 = Buffer.from([0x80, 0, 0, 1]);
    expect(msg.cancelRequest(42, key4)).toEqual(cancelPacket(42, key4));
    expect(serialize.cancel(42, key4.readInt32BE(0))).toEqual(cancelPacket(42, key4));
    const key32 = Buffer.alloc(32, 7);
    expect(msg.cancelRequest(-1, key32)).toEqual(cancelPacket(-1, key32));
  });
});
