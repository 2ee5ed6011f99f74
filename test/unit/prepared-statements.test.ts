// PreparedStatementCache: which content-named statements one server has, least recently used
// first; a use is recorded without reordering the map (no churn per execute).
import { describe, expect, it } from "vitest";
import { KnownStatements, PreparedStatementCache } from "../../src/backend/prepared-statements.js";

describe("PreparedStatementCache", () => {
  it("evicts the least recently used statements, never the one kept", () => {
    const c = new PreparedStatementCache(3);
    for (const n of ["a", "b", "c"]) {
      c.expect(n);
      c.confirm(n);
    }
    expect(c.has("a")).toBe(true); // a is now the most recent
    expect(c.evictFor(1, "x")).toEqual(["b"]);
    expect(c.list()).toEqual(["c", "a"]);
    expect(c.evictFor(2, "c")).toEqual(["a"]); // c is kept: only a can go
    expect(c.list()).toEqual(["c"]);
    expect(c.has("a")).toBe(false);
  });

  it("counts Parses on their way, and forgets a failed one", () => {
    const known = new KnownStatements();
    const c = new PreparedStatementCache(2, known);
    c.expect("p");
    expect(c.has("p")).toBe(true);
    expect(c.size).toBe(0);
    c.expect("q");
    c.confirm("q");
    expect(known.has("q")).toBe(true);
    expect(c.evictFor(1, "z")).toEqual(["q"]); // pending p counts toward the capacity
    c.forget("p");
    expect(c.has("p")).toBe(false);
    expect(c.evictFor(1, "z")).toEqual([]);
  });
});
