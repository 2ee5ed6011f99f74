import { describe, expect, it } from "vitest";
import { ByteRun, copyBytes } from "../../src/protocol/byte-run.js";

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

describe("ByteRun across views of one chunk", () => {
  it("joins a range of a view with the next range of the chunk it views (the same memory)", () => {
    const chunk = Buffer.from("PPPPBBBBEEEE");
    const kept = chunk.subarray(0, 4); // a unit's kept frame: a view of the chunk
    const run = new ByteRun();
    expect(run.add(kept, 0, 4)).toBeNull();
    expect(run.add(chunk, 4, 8)).toBeNull();
    expect(run.add(chunk, 8, 12)).toBeNull();
    expect(run.length).toBe(12);
    const out = run.take();
    expect(out?.toString()).toBe("PPPPBBBBEEEE");
    expect(out).toBe(chunk); // the chunk holds the whole run: it is returned itself
  });

  it("joins a range of a chunk with the next range of a view that starts inside the run", () => {
    const chunk = Buffer.from("0123456789");
    const run = new ByteRun();
    run.add(chunk, 2, 5);
    expect(run.add(chunk.subarray(4), 1, 3)).toBeNull(); // bytes 5..7 of the chunk
    run.add(chunk.subarray(4), 3, 4); // and byte 7
    const out = run.take();
    expect(out?.toString()).toBe("234567");
    expect(out?.buffer).toBe(chunk.buffer); // a view: nothing copied
  });

  it("does not join ranges of the same memory that are not adjacent, nor other memory", () => {
    const chunk = Buffer.from("abcdefgh");
    const run = new ByteRun();
    run.add(chunk.subarray(0, 2), 0, 2);
    expect(run.add(chunk, 3, 5)?.toString()).toBe("ab");
    expect(run.add(Buffer.from("xy"), 0, 2)?.toString()).toBe("de");
    expect(run.take()?.toString()).toBe("xy");
  });

  it("copies the run into a buffer and ends it", () => {
    const chunk = Buffer.from("0123456789");
    const run = new ByteRun();
    run.add(chunk.subarray(2, 4), 0, 2);
    run.add(chunk, 4, 7);
    const target = Buffer.alloc(8, 0x2e);
    expect(run.copyTo(target, 1)).toBe(6);
    expect(target.toString()).toBe(".23456..");
    expect(run.length).toBe(0);
    expect(run.take()).toBeNull();
  });
});

describe("copyBytes", () => {
  it("copies short ranges byte by byte and long ones with Buffer.copy, alike", () => {
    for (const n of [0, 1, 64, 65, 3000]) {
      const src = Buffer.alloc(n + 10);
      for (let i = 0; i < src.length; i++) src[i] = (i * 7) & 0xff;
      const dst = Buffer.alloc(n + 20, 0xee);
      expect(copyBytes(dst, 3, src, 5, 5 + n)).toBe(3 + n);
      expect(dst.subarray(3, 3 + n)).toEqual(src.subarray(5, 5 + n));
      expect(dst[2]).toBe(0xee);
      expect(dst[3 + n]).toBe(0xee);
    }
  });
});

describe("ByteRun.peek", () => {
  it("shows the run in place without ending it, and later ranges still join it", () => {
    const chunk = Buffer.from("0123456789");
    const run = new ByteRun();
    run.add(chunk, 2, 5);
    expect(run.peek()).toBe(chunk);
    expect([run.from, run.to]).toEqual([2, 5]);
    expect(run.add(chunk, 5, 7)).toBeNull();
    expect(run.take()?.toString()).toBe("23456");
    expect(run.peek()).toBeNull();
  });

  it("re-bases a run that grew past the end of the view it started in", () => {
    const chunk = Buffer.from("0123456789");
    const run = new ByteRun();
    run.add(chunk.subarray(0, 4), 1, 4); // "123", in a view that ends at byte 4
    run.add(chunk.subarray(2), 2, 5); // "456", the memory right after it
    const base = run.peek() as Buffer;
    expect(base.toString("latin1", run.from, run.to)).toBe("123456");
    expect(base.buffer).toBe(chunk.buffer); // a view: nothing copied
    expect(run.add(chunk, 7, 8)).toBeNull(); // "7" still joins
    expect(run.take()?.toString()).toBe("1234567");
  });
});
