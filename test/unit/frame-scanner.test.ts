// FrameScanner: every stream split at every byte offset (pg-protocol inbound-parser.test.ts style)
// yields the same messages; whole messages are views of their chunk; streamed codes arrive piece by
// piece; impossible lengths are protocol errors wherever the header is cut.
import { describe, expect, it } from "vitest";
import { FrameScanner, type FrameSink, streamedCodes } from "../../src/protocol/frame-scanner.js";

function frame(type: string, body: Buffer | string = ""): Buffer {
  const b = typeof body === "string" ? Buffer.from(body, "utf8") : body;
  const out = Buffer.alloc(5 + b.length);
  out.write(type, 0, "latin1");
  out.writeInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

/** A header with an arbitrary declared length and no body. */
function badHeader(type: string, declared: number): Buffer {
  const out = Buffer.alloc(5);
  out.write(type, 0, "latin1");
  out.writeInt32BE(declared, 1);
  return out;
}

interface Recorded {
  /** Whole messages, streamed ones reassembled from their pieces. */
  messages: Array<{ code: string; bytes: Buffer }>;
  chunkEnds: number;
  errors: string[];
  /** Messages delivered as a view of the pushed chunk (no copy). */
  views: number;
  /** Streamed pieces seen (first piece included). */
  pieces: number;
}

class RecordingSink implements FrameSink {
  readonly r: Recorded = { messages: [], chunkEnds: 0, errors: [], views: 0, pieces: 0 };
  current: Buffer | null = null;
  private streaming: { code: string; parts: Buffer[]; left: number } | null = null;

  constructor(private readonly streamed: Set<string>) {}

  onMessage(code: number, buf: Buffer, start: number, end: number): void {
    expect(this.streaming).toBeNull();
    expect(buf[start]).toBe(code);
    if (buf === this.current) this.r.views++;
    const letter = String.fromCharCode(code);
    const piece = Buffer.from(buf.subarray(start, end));
    if (this.streamed.has(letter)) {
      this.r.pieces++;
      expect(piece.length).toBeGreaterThanOrEqual(5);
      const total = 1 + piece.readInt32BE(1);
      if (piece.length < total) {
        this.streaming = { code: letter, parts: [piece], left: total - piece.length };
        return;
      }
    } else {
      expect(piece.length).toBe(1 + piece.readInt32BE(1));
    }
    this.r.messages.push({ code: letter, bytes: piece });
  }

  onContinuation(buf: Buffer, start: number, end: number, last: boolean): void {
    const s = this.streaming;
    expect(s).not.toBeNull();
    if (s === null) return;
    this.r.pieces++;
    expect(end).toBeGreaterThan(start);
    s.parts.push(Buffer.from(buf.subarray(start, end)));
    s.left -= end - start;
    expect(s.left).toBeGreaterThanOrEqual(0);
    expect(last).toBe(s.left === 0);
    if (last) {
      this.r.messages.push({ code: s.code, bytes: Buffer.concat(s.parts) });
      this.streaming = null;
    }
  }

  onChunkEnd(): void {
    this.r.chunkEnds++;
  }

  onProtocolError(message: string): void {
    this.r.errors.push(message);
  }
}

function scan(
  chunks: Buffer[],
  streamed = "",
  max = 1 << 20,
): { r: Recorded; scanner: FrameScanner } {
  const scanner = new FrameScanner(
    max,
    streamed ? streamedCodes(...[...streamed].map((c) => c.charCodeAt(0))) : undefined,
  );
  const sink = new RecordingSink(new Set(streamed));
  for (const c of chunks) {
    sink.current = c;
    scanner.push(c, sink);
  }
  return { r: sink.r, scanner };
}

/** Cuts `stream` at the given offsets. */
function cut(stream: Buffer, offsets: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const o of offsets) {
    out.push(stream.subarray(prev, o));
    prev = o;
  }
  out.push(stream.subarray(prev));
  return out;
}

function expectMessages(r: Recorded, frames: Buffer[]): void {
  expect(r.errors).toEqual([]);
  expect(r.messages.map((m) => m.code)).toEqual(frames.map((f) => String.fromCharCode(f[0])));
  for (let i = 0; i < frames.length; i++) expect(r.messages[i].bytes.equals(frames[i])).toBe(true);
}

const BIG = Buffer.alloc(700, 0x61);

// A client's traffic: simple and extended queries, a Flush (empty body), a long Query.
const FRONTEND = [
  frame("Q", "SELECT 1\0"),
  frame("P", "s1\0SELECT $1\0\0\0"),
  frame("B", Buffer.from("\0s1\0\0\0\0\0\0\0", "latin1")),
  frame("D", "P\0"),
  frame("E", Buffer.from("\0\0\0\0\0", "latin1")),
  frame("H"),
  frame("S"),
  frame("Q", Buffer.concat([Buffer.from("SELECT '"), BIG, Buffer.from("'\0")])),
  frame("X"),
];

// A server's reply: DataRows (streamed), one large, an empty-bodied streamed message, CopyData.
const BACKEND = [
  frame("T", Buffer.from("\0\x01a\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0", "latin1")),
  frame("D", Buffer.from("\0\x01\0\0\0\x011", "latin1")),
  frame("D", Buffer.concat([Buffer.from("\0\x01\0\0\x02\xbc", "latin1"), BIG])),
  frame("d"),
  frame("d", "copy row\n"),
  frame("C", "SELECT 2\0"),
  frame("Z", "I"),
];

describe("FrameScanner", () => {
  it("yields the same client messages wherever a stream is split in two", () => {
    const stream = Buffer.concat(FRONTEND);
    for (let k = 0; k <= stream.length; k++) {
      const { r, scanner } = scan(cut(stream, [k]));
      expectMessages(r, FRONTEND);
      expect(r.chunkEnds).toBe(2);
      expect(scanner.atBoundary).toBe(true);
    }
  });

  it("yields the same client messages wherever a stream is split in three", () => {
    const frames = FRONTEND.slice(0, 7);
    const stream = Buffer.concat(frames);
    for (let i = 0; i <= stream.length; i++) {
      for (let j = i; j <= stream.length; j++) {
        const { r } = scan(cut(stream, [i, j]));
        expectMessages(r, frames);
        expect(r.chunkEnds).toBe(3);
      }
    }
  });

  it("reassembles messages fed one byte at a time", () => {
    const stream = Buffer.concat(FRONTEND);
    const offsets = Array.from({ length: stream.length - 1 }, (_, i) => i + 1);
    const { r, scanner } = scan(cut(stream, offsets));
    expectMessages(r, FRONTEND);
    expect(scanner.atBoundary).toBe(true);
  });

  it("passes whole messages as views of their chunk, copying only split ones", () => {
    const stream = Buffer.concat(FRONTEND);
    expect(scan([stream]).r.views).toBe(FRONTEND.length);
    // Cut inside the third frame: only that one is reassembled.
    const at = FRONTEND[0].length + FRONTEND[1].length + 3;
    expect(scan(cut(stream, [at])).r.views).toBe(FRONTEND.length - 1);
  });

  it("streams DataRow and CopyData piece by piece wherever a server stream is split", () => {
    const stream = Buffer.concat(BACKEND);
    for (let k = 0; k <= stream.length; k++) {
      const { r, scanner } = scan(cut(stream, [k]), "Dd");
      expectMessages(r, BACKEND);
      expect(scanner.atBoundary).toBe(true);
    }
    for (let i = 0; i <= stream.length; i += 7) {
      for (let j = i; j <= stream.length; j += 3) {
        const { r } = scan(cut(stream, [i, j]), "Dd");
        expectMessages(r, BACKEND);
      }
    }
  });

  it("never holds a streamed message whole: byte-sized chunks give byte-sized pieces", () => {
    const big = BACKEND[2];
    const offsets = Array.from({ length: big.length - 1 }, (_, i) => i + 1);
    const { r } = scan(cut(big, offsets), "D");
    expectMessages(r, [big]);
    // The 5 header bytes become one piece, then one piece per body byte.
    expect(r.pieces).toBe(1 + big.length - 5);
  });

  it("is between messages only at a boundary", () => {
    const stream = Buffer.concat(FRONTEND.slice(0, 2));
    for (let k = 0; k <= stream.length; k++) {
      const scanner = new FrameScanner(1 << 20);
      scanner.push(stream.subarray(0, k), new RecordingSink(new Set()));
      expect(scanner.atBoundary).toBe(k === 0 || k === FRONTEND[0].length || k === stream.length);
    }
  });

  for (const [what, declared] of [
    ["shorter than 4", 3],
    ["negative", -1],
    ["over the limit", 1001],
  ] as const) {
    it(`reports a length ${what} as a protocol error wherever its header is cut`, () => {
      const stream = Buffer.concat([
        frame("Q", "SELECT 1\0"),
        badHeader("Q", declared),
        frame("S"),
      ]);
      for (let k = 0; k <= stream.length; k++) {
        for (const streamed of ["", "Q"]) {
          const { r } = scan(cut(stream, [k]), streamed, 1000);
          expect(r.errors).toHaveLength(1);
          expect(r.messages.map((m) => m.code)).toEqual(["Q"]);
        }
      }
    });
  }

  it("accepts a message of exactly max_message_bytes", () => {
    const body = Buffer.alloc(1000 - 4, 0x20);
    const stream = frame("Q", body);
    for (let k = 0; k <= stream.length; k += 97) {
      const { r } = scan(cut(stream, [k, Math.min(stream.length, k + 3)]), "", 1000);
      expectMessages(r, [stream]);
    }
  });

  it("ignores input after stop()", () => {
    const scanner = new FrameScanner(1 << 20);
    const sink = new RecordingSink(new Set());
    scanner.stop();
    scanner.push(Buffer.concat(FRONTEND), sink);
    expect(sink.r.messages).toEqual([]);
    expect(sink.r.chunkEnds).toBe(0);
  });
});
