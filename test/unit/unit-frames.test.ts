// The cold-path readers of a unit's frames and the replies a session builds itself.
import { beforeAll, describe, expect, it } from "vitest";
import { decodeErrorFields } from "../../src/errors.js";
import { asFatal, renameStatements } from "../../src/frontend/replies.js";
import { countSyncs, listenCommand, unitTexts } from "../../src/frontend/unit-frames.js";
import * as msg from "../../src/protocol/messages.js";
import { loadSqlParser } from "../../src/sql/parser.js";

const frame = (type: string, body: Buffer): Buffer => {
  const b = Buffer.alloc(5 + body.length);
  b[0] = type.charCodeAt(0);
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
};
const z = (s: string) => Buffer.from(`${s}\0`);
const query = (sql: string) => frame("Q", z(sql));
const parse = (name: string, sql: string) =>
  frame("P", Buffer.concat([z(name), z(sql), Buffer.from([0, 0])]));
const bind = (stmt: string) =>
  frame("B", Buffer.concat([z(""), z(stmt), Buffer.from([0, 0, 0, 0, 0, 0])]));
const sync = () => frame("S", Buffer.alloc(0));

describe("unit frames", () => {
  beforeAll(() => loadSqlParser());

  it("counts one ReadyForQuery per Sync, Query and FunctionCall", () => {
    const unit = [
      Buffer.concat([parse("", "SELECT 1"), bind(""), sync(), query("SELECT 2")]),
      sync(),
    ];
    expect(countSyncs(unit)).toBe(3);
  });

  it("reads the SQL of Query, Parse and the named statement a Bind runs, null when unknown", () => {
    const unit = [
      Buffer.concat([query("BEGIN"), parse("s1", "INSERT 1"), bind("s1"), bind("nope"), sync()]),
    ];
    const known = new Map([["s1", "INSERT INTO t VALUES (1)"]]);
    expect(unitTexts(unit, (n) => known.get(n))).toEqual([
      "BEGIN",
      "INSERT 1",
      "INSERT INTO t VALUES (1)",
      null,
    ]);
  });

  it("recognises a lone LISTEN / UNLISTEN, and nothing else", () => {
    const at = (sql: string) => {
      const b = Buffer.from(sql);
      return listenCommand(b, 0, b.length);
    };
    expect(at("LISTEN jobs")).toEqual({ listen: "jobs" });
    expect(at('  listen "Mixed Case";')).toEqual({ listen: "Mixed Case" });
    expect(at("UNLISTEN *")).toEqual({ unlisten: null });
    expect(at("unlisten jobs")).toEqual({ unlisten: "jobs" });
    expect(at("LISTEN a; LISTEN b")).toBeNull();
    expect(at("LISTEN a; SELECT 1")).toBeNull();
    expect(at("SELECT 1")).toBeNull();
    expect(at("update t set listen = 1")).toBeNull();
  });
});

describe("replies", () => {
  it("names the client's statement in a server error, with the length fixed", () => {
    const server = `pgsc_${"a".repeat(40)}`;
    const err = msg.errorResponse({
      severity: "ERROR",
      code: "08P01",
      message: `bind message supplies 1 parameters, but prepared statement "${server}" requires 2`,
    });
    const out = renameStatements(err, (n) => (n === server ? "two" : undefined));
    expect(out.readInt32BE(1)).toBe(out.length - 1);
    expect(decodeErrorFields(out, 0, out.length).get("M")).toBe(
      'bind message supplies 1 parameters, but prepared statement "two" requires 2',
    );
    // A name the client does not know stays as it is.
    expect(renameStatements(err, () => undefined).equals(err)).toBe(true);
  });

  it("turns a server's ERROR into the FATAL Postgres sends at login", () => {
    const err = msg.errorResponse({ severity: "ERROR", code: "22023", message: "invalid value" });
    const f = decodeErrorFields(asFatal(err), 0, asFatal(err).length);
    expect([f.get("S"), f.get("V"), f.get("C"), f.get("M")]).toEqual([
      "FATAL",
      "FATAL",
      "22023",
      "invalid value",
    ]);
  });
});
