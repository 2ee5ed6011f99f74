// ClientStatements: a client's named statements renamed by content (shared across clients, resent
// to any server), and the DEALLOCATE / DISCARD ALL a client sends about its own names.
import { beforeAll, describe, expect, it } from "vitest";
import {
  bindHead,
  ClientStatements,
  describeStatement,
  nameHash,
  spliceName,
} from "../../src/frontend/client-statements.js";
import { loadSqlParser } from "../../src/sql/parser.js";

/** Parse (F): name, query text, parameter type OIDs. */
function parse(name: string, sql: string, types: number[] = []): Buffer {
  const t = Buffer.alloc(2 + 4 * types.length);
  t.writeInt16BE(types.length, 0);
  types.forEach((oid, i) => {
    t.writeInt32BE(oid, 2 + 4 * i);
  });
  const body = Buffer.concat([Buffer.from(`${name}\0${sql}\0`), t]);
  const b = Buffer.alloc(5 + body.length);
  b[0] = 0x50;
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}

/** Registers a Parse frame as the session does (the name ends at the first NUL after the header). */
function register(s: ClientStatements, frame: Buffer, track = false) {
  return s.register(frame, 0, frame.length, frame.indexOf(0, 5), track);
}

const sql = (s: ClientStatements, text: string, outside = true) => {
  const b = Buffer.from(text);
  return s.applySql(b, 0, b.length, outside);
};

describe("ClientStatements", () => {
  beforeAll(() => loadSqlParser());

  it("names a statement by its text and parameter types, the same for every client", () => {
    const a = register(new ClientStatements(), parse("q1", "SELECT $1", [23]));
    const b = register(new ClientStatements(), parse("other", "SELECT $1", [23]));
    const c = register(new ClientStatements(), parse("q1", "SELECT $1", [25]));
    const d = register(new ClientStatements(), parse("q1", "SELECT $1 ", [23]));
    expect(a.serverName).toMatch(/^pgsc_[0-9a-f]{40}$/);
    expect(b.serverName).toBe(a.serverName);
    expect(c.serverName).not.toBe(a.serverName);
    expect(d.serverName).not.toBe(a.serverName);
    expect(a.sql).toBe("SELECT $1");
  });

  it("keeps a Parse to send any server: the server name, then the client's text and types", () => {
    const s = new ClientStatements();
    const stmt = register(s, parse("q1", "SELECT $1", [23]));
    expect(stmt.parse).toEqual(parse(stmt.serverName, "SELECT $1", [23]));
  });

  it("returns the same entry when a name is parsed again with the same body, a new one otherwise", () => {
    const s = new ClientStatements();
    const first = register(s, parse("q1", "SELECT 1"));
    expect(register(s, parse("q1", "SELECT 1"))).toBe(first);
    const second = register(s, parse("q1", "SELECT 2"));
    expect(second).not.toBe(first);
    expect(s.get("q1")).toBe(second);
    expect(s.clientNameOf(second.serverName)).toBe("q1");
    expect(s.clientNameOf(first.serverName)).toBeUndefined();
  });

  it("records what executing it does to session state only when asked", () => {
    const s = new ClientStatements();
    expect(register(s, parse("a", "SET search_path = x"), true).sessionChange).not.toBeNull();
    expect(register(s, parse("b", "SET search_path = x"), false).sessionChange).toBeNull();
    expect(register(s, parse("c", "SELECT 1"), true).sessionChange).toBeNull();
  });

  it("answers DEALLOCATE of its own names: unquoted folded to lower case (or as written), quoted exact", () => {
    const s = new ClientStatements();
    register(s, parse("q1", "SELECT 1"));
    register(s, parse("Mixed", "SELECT 2"));
    register(s, parse('Quo"ted', "SELECT 3"));
    expect(sql(s, "DEALLOCATE Q1;")).toBe("DEALLOCATE");
    expect(s.get("q1")).toBeUndefined();
    expect(sql(s, 'DEALLOCATE PREPARE "mixed"')).toBeNull(); // quoted: exact, and not ours
    expect(sql(s, "deallocate prepare Mixed")).toBe("DEALLOCATE");
    expect(sql(s, 'DEALLOCATE "Quo""ted"')).toBe("DEALLOCATE");
    expect(s.size).toBe(0);
    expect(sql(s, "DEALLOCATE nope")).toBeNull(); // the server reports 26000
  });

  it("forgets every name on DEALLOCATE ALL, and on DISCARD ALL only outside a transaction", () => {
    const s = new ClientStatements();
    register(s, parse("a", "SELECT 1"));
    expect(sql(s, "DISCARD ALL", false)).toBeNull(); // Postgres refuses it in a transaction
    expect(s.size).toBe(1);
    expect(sql(s, "  discard all;")).toBe("DISCARD ALL");
    expect(s.size).toBe(0);
    register(s, parse("b", "SELECT 1"));
    expect(sql(s, "DEALLOCATE ALL")).toBe("DEALLOCATE ALL");
    expect(s.size).toBe(0);
  });

  it("reads DISCARD ALL and DEALLOCATE with blanks and semicolons after them as one statement", () => {
    const s = new ClientStatements();
    for (const text of ["DISCARD ALL ;", "discard all ; ", "DISCARD ALL;;", "DISCARD\tALL\n;\n"]) {
      register(s, parse("a", "SELECT 1"));
      expect(sql(s, text), text).toBe("DISCARD ALL");
      expect(s.size).toBe(0);
    }
    register(s, parse("q1", "SELECT 1"));
    expect(sql(s, "DEALLOCATE q1 ;")).toBe("DEALLOCATE");
    register(s, parse("q1", "SELECT 1"));
    expect(sql(s, "DEALLOCATE ALL ; ;")).toBe("DEALLOCATE ALL");
    register(s, parse("a;", "SELECT 1"));
    expect(sql(s, 'DEALLOCATE "a;" ;')).toBe("DEALLOCATE");
    register(s, parse("a", "SELECT 1"));
    expect(sql(s, "DISCARD ALL ; SELECT 1")).toBeNull(); // two statements: the server runs them
    expect(sql(s, "DISCARD ALL ;", false)).toBeNull();
    expect(s.size).toBe(1);
  });

  it("leaves any other SQL to the server", () => {
    const s = new ClientStatements();
    register(s, parse("a", "SELECT 1"));
    expect(sql(s, "SELECT 1")).toBeNull();
    expect(sql(s, "DISCARD PLANS")).toBeNull();
    expect(sql(s, `DEALLOCATE a /*${" ".repeat(200)}*/`)).toBeNull();
    expect(s.size).toBe(1);
  });

  it("finds a statement by the bytes of its name in a frame, as get() does by string", () => {
    const s = new ClientStatements();
    const frame = Buffer.from("xx\0q1\0q10\0Q1\0");
    expect(s.lookup(frame, 3, 5)).toBeUndefined(); // nothing registered yet
    const q1 = register(s, parse("q1", "SELECT 1"));
    const q10 = register(s, parse("q10", "SELECT 2"));
    expect(s.lookup(frame, 3, 5)).toBe(q1);
    expect(s.lookup(frame, 6, 9)).toBe(q10);
    expect(s.lookup(frame, 10, 12)).toBeUndefined(); // names are exact bytes
    const again = register(s, parse("q1", "SELECT 3")); // re-Parse of a name with another body
    expect(s.lookup(frame, 3, 5)).toBe(again);
    s.delete("q1");
    expect(s.lookup(frame, 3, 5)).toBeUndefined();
    expect(s.lookup(frame, 6, 9)).toBe(q10);
    s.clear();
    expect(s.lookup(frame, 6, 9)).toBeUndefined();
  });

  it("tells apart names whose bytes hash alike, through registration and deletion", () => {
    // Two names with the same 30-bit hash (a birthday search: some 40,000 names).
    const seen = new Map<number, string>();
    let pair: [string, string] | null = null;
    for (let i = 0; pair === null; i++) {
      const name = `n${i}`;
      const h = nameHash(Buffer.from(name), 0, name.length);
      const other = seen.get(h);
      if (other !== undefined) pair = [other, name];
      else seen.set(h, name);
    }
    const [a, b] = pair;
    const find = (s: ClientStatements, n: string) => s.lookup(Buffer.from(n), 0, n.length);
    for (const first of [a, b]) {
      const second = first === a ? b : a;
      const s = new ClientStatements();
      const x = register(s, parse(first, "SELECT 1"));
      const y = register(s, parse(second, "SELECT 2"));
      expect(find(s, first)).toBe(x);
      expect(find(s, second)).toBe(y);
      s.delete(second); // the head of the chain
      expect(find(s, second)).toBeUndefined();
      expect(find(s, first)).toBe(x);
      const y2 = register(s, parse(second, "SELECT 2"));
      s.delete(first); // the tail of the chain
      expect(find(s, first)).toBeUndefined();
      expect(find(s, second)).toBe(y2);
    }
  });

  it("keeps a Bind head and a Describe under the server name", () => {
    const s = new ClientStatements();
    const stmt = register(s, parse("q1", "SELECT $1", [23]));
    const head = bindHead(stmt);
    expect(head[0]).toBe(0x42);
    expect(head.toString("latin1", 5)).toBe(`\0${stmt.serverName}\0`);
    expect(bindHead(stmt)).toBe(head); // made once
    const d = describeStatement(stmt);
    expect(d.readInt32BE(1)).toBe(d.length - 1);
    expect(d.toString("latin1", 5)).toBe(`S${stmt.serverName}\0`);
  });

  it("splices a new name into a frame and fixes its length", () => {
    const bind = Buffer.concat([
      Buffer.from([0x42, 0, 0, 0, 0]),
      Buffer.from("\0q1\0"),
      Buffer.alloc(6),
    ]);
    bind.writeInt32BE(bind.length - 1, 1);
    const nameStart = 6;
    const out = spliceName(bind, 0, bind.length, nameStart, bind.indexOf(0, nameStart), "pgsc_x");
    expect(out.readInt32BE(1)).toBe(out.length - 1);
    expect(out.toString("latin1", 5, out.length - 6)).toBe("\0pgsc_x\0");
    expect(out.subarray(out.length - 6)).toEqual(Buffer.alloc(6));
  });
});
