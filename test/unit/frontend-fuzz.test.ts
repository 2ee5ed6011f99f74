// Property-based: random and mutated client streams through FrameScanner + frontendMessageError.
// Streams start as valid extended/simple-protocol sequences (node-postgres's encoder), then lengths
// are rewritten, bytes flipped, frames inserted, streams truncated and cut into random chunks.
// Nothing may throw, and whatever the validator accepts can be read the way the relay reads it.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FrameScanner, type FrameSink } from "../../src/protocol/frame-scanner.js";
import { frontendMessageError } from "../../src/protocol/validate.js";
import {
  chunks,
  FUZZ_MAX_MESSAGE,
  mutate,
  mutation,
  position,
  validStream,
} from "../helpers/frontend-streams.js";

const RUNS = 10_000;

/**
 * The relay's reads of an accepted message, with the invariants they rely on: every NUL it looks
 * for is inside the message, and a Query's text ends at its last byte. (Plain checks: expect() is
 * too slow for 10,000 streams.)
 */
function readLikeTheRelay(code: number, buf: Buffer, start: number, end: number): void {
  const body = start + 5;
  const inside = (i: number) => i >= body && i < end;
  const must = (ok: boolean, what: string) => {
    if (!ok) throw new Error(`accepted ${String.fromCharCode(code)}: ${what}`);
  };
  switch (code) {
    case 0x51: // Query
      must(buf.indexOf(0, body) === end - 1, "the text ends at the last byte");
      break;
    case 0x50: // Parse
    case 0x42: {
      // Bind: portal (or statement name, for Parse), then the statement (or query)
      const first = buf.indexOf(0, body);
      must(inside(first), "first string inside");
      must(inside(buf.indexOf(0, first + 1)), "second string inside");
      break;
    }
    case 0x44: // Describe
    case 0x43: // Close
      must(buf[body] === 0x53 || buf[body] === 0x50, "S or P");
      must(buf.indexOf(0, body + 1) === end - 1, "the name ends at the last byte");
      break;
  }
}

/** Scans `parts` the way ClientSession does; returns the verdicts. Throws if anything throws. */
function scan(parts: Buffer[]): { accepted: number; refused: number; framingError: boolean } {
  const result = { accepted: 0, refused: 0, framingError: false };
  const scanner = new FrameScanner(FUZZ_MAX_MESSAGE);
  const sink: FrameSink = {
    onMessage(code, buf, start, end) {
      if (end > buf.length) throw new Error("a message past its buffer");
      const error = frontendMessageError(code, buf, start, end);
      if (error === null) {
        readLikeTheRelay(code, buf, start, end);
        result.accepted++;
      } else {
        result.refused++;
        scanner.stop(); // the session closes the client at its first malformed message
      }
    },
    onContinuation() {
      throw new Error("nothing is streamed on the client side");
    },
    onChunkEnd() {},
    onProtocolError() {
      result.framingError = true;
    },
  };
  for (const part of parts) scanner.push(part, sink);
  return result;
}

describe("client stream fuzzing (FrameScanner + frontendMessageError)", () => {
  it(`accepts every message of ${RUNS} valid streams, however they are cut`, () => {
    fc.assert(
      fc.property(validStream, fc.array(position, { maxLength: 8 }), (messages, cuts) => {
        const r = scan(chunks(Buffer.concat(messages), cuts));
        expect(r).toEqual({ accepted: messages.length, refused: 0, framingError: false });
      }),
      { numRuns: RUNS },
    );
  });

  it(`never throws on ${RUNS} mutated streams, and reads only inside accepted messages`, () => {
    let refusedStreams = 0;
    let framingErrors = 0;
    fc.assert(
      fc.property(
        validStream,
        fc.array(mutation, { minLength: 1, maxLength: 5 }),
        fc.array(position, { maxLength: 8 }),
        (messages, mutations, cuts) => {
          const r = scan(chunks(mutate(messages, mutations), cuts));
          if (r.refused > 0) refusedStreams++;
          if (r.framingError) framingErrors++;
        },
      ),
      { numRuns: RUNS },
    );
    // The mutations do reach the validator (not only the framing checks).
    expect(refusedStreams).toBeGreaterThan(RUNS / 10);
    expect(framingErrors).toBeGreaterThan(RUNS / 20);
  });

  it(`never throws on ${RUNS} streams of random bytes`, () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.array(position, { maxLength: 4 }),
        (bytes, cuts) => {
          scan(chunks(Buffer.from(bytes), cuts));
        },
      ),
      { numRuns: RUNS },
    );
  });
});
