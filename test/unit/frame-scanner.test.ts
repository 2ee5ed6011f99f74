// FrameScanner: a stream split in two at every byte offset, and in three at every pair of offsets
// (of a short stream) or at each header/body boundary and random pairs (of a long one), yields the
// same messages (pg-protocol inbound-parser.test.ts style); whole messages are views of their chunk;
// streamed codes arrive piece by piece; impossible lengths are protocol errors wherever the header
// is cut.
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
  /** Broken sink-call invariants (checked on every callback; asserted empty by problems()). */
  violations: string[];
}

/**
 * Records what the scanner delivers and checks the call protocol on every callback. The checks are
 * plain comparisons collected in `violations` rather than expect() calls: the split tests scan
 * thousands of streams, and vitest's expect costs far more than the scanner does.
 */
class RecordingSink implements FrameSink {
  readonly r: Recorded = {
    messages: [],
    chunkEnds: 0,
    errors: [],
    views: 0,
    pieces: 0,
    violations: [],
  };
  current: Buffer | null = null;
  private streaming: { code: string; parts: Buffer[]; left: number } | null = null;

  constructor(private readonly streamed: Set<string>) {}

  private check(ok: boolean, what: string): void {
    if (!ok) this.r.violations.push(what);
  }

  onMessage(code: number, buf: Buffer, start: number, end: number): void {
    this.check(this.streaming === null, "onMessage while a streamed message is unfinished");
    this.check(buf[start] === code, `onMessage code ${code} but byte ${buf[start]} at start`);
    if (buf === this.current) this.r.views++;
    const letter = String.fromCharCode(code);
    const piece = Buffer.from(buf.subarray(start, end));
    if (this.streamed.has(letter)) {
      this.r.pieces++;
      if (piece.length < 5) {
        this.r.violations.push(
          `first piece of ${letter} is ${piece.length} bytes, less than its header`,
        );
        return;
      }
      const total = 1 + piece.readInt32BE(1);
      if (piece.length < total) {
        this.streaming = { code: letter, parts: [piece], left: total - piece.length };
        return;
      }
    } else {
      const declared = piece.length >= 5 ? 1 + piece.readInt32BE(1) : -1;
      this.check(
        piece.length === declared,
        `${letter}: ${piece.length} bytes, header says ${declared}`,
      );
    }
    this.r.messages.push({ code: letter, bytes: piece });
  }

  onContinuation(buf: Buffer, start: number, end: number, last: boolean): void {
    const s = this.streaming;
    if (s === null) {
      this.r.violations.push("onContinuation without a streamed message");
      return;
    }
    this.r.pieces++;
    this.check(end > start, `empty continuation [${start}, ${end})`);
    s.parts.push(Buffer.from(buf.subarray(start, end)));
    s.left -= end - start;
    this.check(s.left >= 0, `continuation overruns its message by ${-s.left} bytes`);
    this.check(last === (s.left === 0), `last=${last} with ${s.left} bytes left`);
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

/** How what was recorded differs from `frames` (empty: the same messages, intact, in order). */
function problems(r: Recorded, frames: Buffer[]): string[] {
  const out = [...r.violations, ...r.errors.map((e) => `protocol error: ${e}`)];
  const got = r.messages.map((m) => m.code).join("");
  const want = frames.map((f) => String.fromCharCode(f[0])).join("");
  if (got !== want) out.push(`messages ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  else
    for (let i = 0; i < frames.length; i++)
      if (!r.messages[i].bytes.equals(frames[i])) out.push(`message ${i} (${got[i]}) differs`);
  return out;
}

function expectMessages(r: Recorded, frames: Buffer[]): void {
  expect(problems(r, frames)).toEqual([]);
}

/**
 * Scans `stream` cut at each offset list of `splits` and returns what went wrong, labelled with the
 * offsets (all problems are collected, then asserted once: one expect per split would dominate the
 * run time). `more` adds checks of its own for a split.
 */
function splitFailures(
  stream: Buffer,
  frames: Buffer[],
  splits: Iterable<number[]>,
  streamed = "",
  more?: (r: Recorded, scanner: FrameScanner, offsets: number[]) => string[],
): string[] {
  const failures: string[] = [];
  for (const offsets of splits) {
    const { r, scanner } = scan(cut(stream, offsets), streamed);
    const p = problems(r, frames);
    if (more) p.push(...more(r, scanner, offsets));
    if (p.length > 0) failures.push(`cut at [${offsets.join(", ")}]: ${p.join("; ")}`);
  }
  return failures;
}

/** Every single offset 0..length. */
function* everyOffset(length: number): Generator<number[]> {
  for (let k = 0; k <= length; k++) yield [k];
}

/** Every pair of offsets i <= j drawn from `points` (sorted, distinct). */
function* pairsOf(points: number[]): Generator<number[]> {
  for (let a = 0; a < points.length; a++)
    for (let b = a; b < points.length; b++) yield [points[a], points[b]];
}

/**
 * The offsets where a cut changes what the scanner must do: at each frame's start and at each of its
 * 5 header bytes, the first and last body bytes, and the end of the stream.
 */
function boundaryOffsets(frames: Buffer[]): number[] {
  const points = new Set<number>();
  let at = 0;
  for (const f of frames) {
    for (let d = 0; d <= 6; d++) points.add(at + Math.min(d, f.length));
    points.add(at + f.length - 1);
    at += f.length;
  }
  points.add(at);
  return [...points].sort((x, y) => x - y);
}

/** `n` random pairs i <= j in [0, length], from a fixed seed (a failure names its offsets). */
function* randomPairs(length: number, n: number, seed: number): Generator<number[]> {
  let s = seed >>> 0;
  const next = () => {
    // mulberry32
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let k = 0; k < n; k++) {
    const a = Math.floor(next() * (length + 1));
    const b = Math.floor(next() * (length + 1));
    yield a <= b ? [a, b] : [b, a];
  }
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

// The same reply with a short DataRow, small enough to cut at every pair of offsets.
const BACKEND_SHORT = [
  ...BACKEND.slice(0, 2),
  frame("D", Buffer.from("\0\x01\0\0\0\x0cabcdefghijkl", "latin1")),
  ...BACKEND.slice(3),
];

describe("FrameScanner", () => {
  it("yields the same client messages wherever a stream is split in two", () => {
    const stream = Buffer.concat(FRONTEND);
    const failures = splitFailures(stream, FRONTEND, everyOffset(stream.length), "", (r, s) => [
      ...(r.chunkEnds === 2 ? [] : [`${r.chunkEnds} chunk ends`]),
      ...(s.atBoundary ? [] : ["not at a boundary after the last message"]),
    ]);
    expect(failures).toEqual([]);
  });

  it("yields the same client messages wherever a stream is split in three", () => {
    const chunkEnds = (r: Recorded) => (r.chunkEnds === 3 ? [] : [`${r.chunkEnds} chunk ends`]);
    // Every pair of offsets of the short messages (each header and body boundary, every way)...
    const short = FRONTEND.slice(0, 7);
    const shortStream = Buffer.concat(short);
    const everyPair = pairsOf(Array.from({ length: shortStream.length + 1 }, (_, k) => k));
    expect(splitFailures(shortStream, short, everyPair, "", chunkEnds)).toEqual([]);
    // ...and of the whole stream, the long Query included (a multi-byte length cut at each byte),
    // every pair of its boundary offsets plus pairs at random.
    const stream = Buffer.concat(FRONTEND);
    const pairs = [...pairsOf(boundaryOffsets(FRONTEND)), ...randomPairs(stream.length, 3000, 1)];
    expect(splitFailures(stream, FRONTEND, pairs, "", chunkEnds)).toEqual([]);
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
    const atBoundary = (_r: Recorded, s: FrameScanner) =>
      s.atBoundary ? [] : ["not at a boundary after the last message"];
    const stream = Buffer.concat(BACKEND);
    expect(splitFailures(stream, BACKEND, everyOffset(stream.length), "Dd", atBoundary)).toEqual(
      [],
    );
    // Split in three: every pair of offsets of the same reply with a short DataRow, and of the long
    // one every pair of boundary offsets plus pairs at random.
    const shortStream = Buffer.concat(BACKEND_SHORT);
    const everyPair = pairsOf(Array.from({ length: shortStream.length + 1 }, (_, k) => k));
    expect(splitFailures(shortStream, BACKEND_SHORT, everyPair, "Dd", atBoundary)).toEqual([]);
    const pairs = [...pairsOf(boundaryOffsets(BACKEND)), ...randomPairs(stream.length, 3000, 2)];
    expect(splitFailures(stream, BACKEND, pairs, "Dd", atBoundary)).toEqual([]);
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
