import { describe, expect, it } from "vitest";
import { ByteRun } from "../../src/protocol/byte-run.js";

describe("ByteRun", () => {
  it("coalesces adjacent ranges of one chunk and returns the previous run on a gap", () => {
    const chunk = Buffer.from("abcdefghij");
    const run = new ByteRun();
    expect(run.add(chunk, 0, 3)).toBeNull();
    expect(run.add(chunk, 3, 5)).toBeNull();
    expect(run.add(chunk, 7, 9)?.toString()).toBe("abcde"); // gap at 5..7 ends the first run
    expect(run.take()?.toString()).toBe("hi");
    expect(run.take()).toBeNull();
  });

  it("returns the chunk itself when the run covers it, and starts anew for another buffer", () => {
    const a = Buffer.from("xyz");
    const b = Buffer.from("uvw");
    const run = new ByteRun();
    run.add(a, 0, 3);
    expect(run.add(b, 0, 1)).toBe(a);
    run.clear();
    expect(run.take()).toBeNull();
  });
});
