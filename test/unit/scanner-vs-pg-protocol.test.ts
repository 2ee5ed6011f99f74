// Differential: random backend message streams, cut at random chunk boundaries, go through our
// header-only FrameScanner (as the relay configures it, and with nothing streamed) and through
// pg-protocol's Parser (node-postgres' decoder). Both must see the same messages, with the same
// type and length, in the same order; for ErrorResponse and NoticeResponse our error-field
// parsing must find the SQLSTATE, message, detail and hint pg-protocol finds.
//
// pg-protocol is the reference here, on valid streams, and not the proxy's decoder of upstream
// messages: it is not built for malformed input (brianc/node-postgres#1048), and the last block
// records where that matters to a proxy.

import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import fc from "fast-check";
import type { BackendMessage, DatabaseError } from "pg-protocol/dist/messages.js";
import { Parser } from "pg-protocol/dist/parser.js";
import { describe, expect, it } from "vitest";
import { decodeErrorFields, serverErrorFrom } from "../../src/errors.js";
import { BackendCode } from "../../src/protocol/codes.js";
import { FrameScanner, type FrameSink, streamedCodes } from "../../src/protocol/frame-scanner.js";
import * as msg from "../../src/protocol/messages.js";
import { int32 } from "../helpers/differential.js";
import { chunks, position } from "../helpers/frontend-streams.js";
import { frame } from "../helpers/wire.js";

/** One message in the stream as generated: its bytes, and the error fields it carries if any. */
interface Generated {
  bytes: Buffer;
  fields?: { code: string; message: string; detail?: string; hint?: string };
}

/** What a decoder saw: the type letter and the Int32 length of each message, in order. */
interface Seen {
  type: string;
  length: number;
  fields?: Generated["fields"];
}

const int16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const cstr = (s: string) => Buffer.from(`${s}\0`, "utf8");
/** Text without NUL, as a C string in a message must be. */
const cText = fc.string({ unit: "binary", maxLength: 30 }).map((s) => s.replaceAll("\0", "?"));
const sqlstate = fc.stringMatching(/^[0-9A-Z]{5}$/);
const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));

const errorLike = (kind: "error" | "notice") =>
  fc
    .record(
      {
        severity: fc.constantFrom("ERROR", "FATAL", "WARNING", "NOTICE") as fc.Arbitrary<
          msg.ErrorFields["severity"]
        >,
        code: sqlstate,
        message: cText,
        detail: cText,
        hint: cText,
      },
      { requiredKeys: ["severity", "code", "message"] },
    )
    .map((f): Generated => {
      const bytes = kind === "error" ? msg.errorResponse(f) : msg.noticeResponse(f);
      // errorResponse() leaves out an empty detail or hint, as Postgres does.
      return {
        bytes,
        fields: {
          code: f.code,
          message: f.message,
          detail: f.detail || undefined,
          hint: f.hint || undefined,
        },
      };
    });

const field = fc
  .tuple(cText, fc.nat(), fc.nat(0x7fff), fc.nat(), fc.integer({ min: -1, max: 0x7fff }))
  .map(([name, table, column, type, size]) =>
    Buffer.concat([
      cstr(name),
      int32(table | 0),
      int16(column),
      int32(type | 0),
      int16(size),
      int32(-1),
      int16(0),
    ]),
  );

/** A valid message a Postgres server sends, as it encodes it. */
const backendMessage: fc.Arbitrary<Generated> = fc.oneof(
  // DataRow: values of any bytes, some NULL, some large enough to span chunks.
  fc.array(fc.option(bytes(300), { nil: null }), { maxLength: 6 }).map((values) => ({
    bytes: frame(
      "D",
      Buffer.concat([
        int16(values.length),
        ...values.flatMap((v) => (v === null ? [int32(-1)] : [int32(v.length), v])),
      ]),
    ),
  })),
  fc
    .array(field, { maxLength: 4 })
    .map((fs) => ({ bytes: frame("T", Buffer.concat([int16(fs.length), ...fs])) })),
  fc.array(fc.nat(), { maxLength: 4 }).map((oids) => ({
    bytes: frame("t", Buffer.concat([int16(oids.length), ...oids.map((o) => int32(o | 0))])),
  })),
  cText.map((tag) => ({ bytes: msg.commandComplete(tag) })),
  errorLike("error"),
  errorLike("notice"),
  fc.tuple(cText, cText).map(([name, value]) => ({ bytes: msg.parameterStatus(name, value) })),
  fc.constantFrom(0x49, 0x54, 0x45).map((status) => ({ bytes: msg.readyForQuery(status) })),
  fc
    .constantFrom(
      msg.parseComplete,
      msg.bindComplete,
      msg.closeComplete,
      msg.noData,
      msg.emptyQueryResponse,
    )
    .map((b) => ({ bytes: b })),
  fc.constant({ bytes: frame("s") }), // PortalSuspended
  fc.tuple(fc.integer(), cText, cText).map(([pid, channel, payload]) => ({
    bytes: frame("A", Buffer.concat([int32(pid), cstr(channel), cstr(payload)])),
  })),
  bytes(400).map((data) => ({ bytes: frame("d", data) })), // CopyData
  fc.constant({ bytes: frame("c") }), // CopyDone
  fc
    .tuple(fc.constantFrom("G", "H"), fc.array(fc.constantFrom(0, 1), { maxLength: 4 }))
    .map(([type, formats]) => ({
      bytes: frame(
        type,
        Buffer.concat([Buffer.from([0]), int16(formats.length), ...formats.map(int16)]),
      ),
    })),
  fc
    .tuple(fc.integer(), fc.integer())
    .map(([pid, key]) => ({ bytes: msg.backendKeyData(pid, int32(key)) })),
  // The Authentication requests of a login.
  fc.constantFrom(msg.authenticationOk, msg.authenticationCleartext).map((b) => ({ bytes: b })),
  bytes(4)
    .filter((salt) => salt.length === 4)
    .map((salt) => ({ bytes: msg.authenticationMD5(salt) })),
  fc.array(fc.stringMatching(/^[A-Z0-9-]{1,20}$/), { minLength: 1, maxLength: 3 }).map((ms) => ({
    bytes: msg.authenticationSASL(ms),
  })),
  fc
    .string({ unit: "grapheme-ascii", maxLength: 60 })
    .map((d) => ({ bytes: msg.authenticationSASLContinue(d) })),
  fc
    .string({ unit: "grapheme-ascii", maxLength: 60 })
    .map((d) => ({ bytes: msg.authenticationSASLFinal(d) })),
);

/** Records what FrameScanner delivers; reassembles streamed messages to check their bytes. */
class ScannerRecorder implements FrameSink {
  readonly seen: Seen[] = [];
  readonly whole: Buffer[] = [];
  readonly errors: string[] = [];
  private pieces: Buffer[] | null = null;

  onMessage(code: number, buf: Buffer, start: number, end: number): void {
    const length = buf.readInt32BE(start + 1);
    const item: Seen = { type: String.fromCharCode(code), length };
    if (code === BackendCode.ErrorResponse || code === BackendCode.NoticeResponse) {
      // The whole message is here (neither type is streamed): decode it as the proxy does.
      const f = decodeErrorFields(buf, start, end);
      item.fields = {
        code: serverErrorFrom(buf, start, end).sqlstate,
        message: f.get("M") ?? "",
        detail: f.get("D"),
        hint: f.get("H"),
      };
    }
    this.seen.push(item);
    const piece = Buffer.from(buf.subarray(start, end));
    if (end - start < length + 1) this.pieces = [piece];
    else this.whole.push(piece);
  }

  onContinuation(buf: Buffer, start: number, end: number, last: boolean): void {
    this.pieces?.push(Buffer.from(buf.subarray(start, end)));
    if (last && this.pieces !== null) {
      this.whole.push(Buffer.concat(this.pieces));
      this.pieces = null;
    }
  }

  onChunkEnd(): void {}

  onProtocolError(message: string): void {
    this.errors.push(message);
  }
}

/** pg-protocol's message names, by type letter. */
const TYPE_OF_NAME: Record<string, string> = {
  dataRow: "D",
  rowDescription: "T",
  parameterDescription: "t",
  commandComplete: "C",
  error: "E",
  notice: "N",
  parameterStatus: "S",
  readyForQuery: "Z",
  parseComplete: "1",
  bindComplete: "2",
  closeComplete: "3",
  noData: "n",
  emptyQuery: "I",
  portalSuspended: "s",
  notification: "A",
  copyData: "d",
  copyDone: "c",
  copyInResponse: "G",
  copyOutResponse: "H",
  backendKeyData: "K",
  authenticationOk: "R",
  authenticationCleartextPassword: "R",
  authenticationMD5Password: "R",
  authenticationSASL: "R",
  authenticationSASLContinue: "R",
  authenticationSASLFinal: "R",
};

/**
 * Copies go in: to join a message split across chunks, Parser may move the rest of one chunk to
 * the start of that chunk's own memory (its in-place merge), which would rewrite `all` under the
 * other decoder. The relay must never hand it views of bytes still queued for a socket.
 */
function viaPgProtocol(pieces: Buffer[]): Seen[] {
  const seen: Seen[] = [];
  const parser = new Parser();
  for (const piece of pieces) {
    parser.parse(Buffer.from(piece), (m: BackendMessage) => {
      const item: Seen = { type: TYPE_OF_NAME[m.name] ?? `?${m.name}`, length: m.length };
      if (m.name === "error" || m.name === "notice") {
        const e = m as DatabaseError; // NoticeMessage has the same fields
        item.fields = { code: e.code ?? "", message: e.message, detail: e.detail, hint: e.hint };
      }
      seen.push(item);
    });
  }
  return seen;
}

function viaScanner(pieces: Buffer[], streamed?: Uint8Array): ScannerRecorder {
  const scanner = new FrameScanner(1 << 20, streamed);
  const sink = new ScannerRecorder();
  for (const piece of pieces) scanner.push(piece, sink);
  expect(scanner.atBoundary).toBe(true);
  return sink;
}

const stream = fc.record({
  messages: fc.array(backendMessage, { minLength: 1, maxLength: 25 }),
  cuts: fc.array(position, { maxLength: 12 }),
});

describe("FrameScanner and pg-protocol's Parser on the same backend streams", () => {
  const configurations: [string, Uint8Array | undefined][] = [
    [
      "DataRow and CopyData streamed (the relay)",
      streamedCodes(BackendCode.DataRow, BackendCode.CopyData),
    ],
    ["nothing streamed", undefined],
  ];
  for (const [name, streamed] of configurations) {
    it(`see the same messages, lengths and error fields: ${name}`, () => {
      fc.assert(
        fc.property(stream, ({ messages, cuts }) => {
          const all = Buffer.concat(messages.map((m) => m.bytes));
          const pieces = chunks(all, cuts);
          const expected: Seen[] = messages.map((m) => {
            const item: Seen = {
              type: String.fromCharCode(m.bytes[0]),
              length: m.bytes.readInt32BE(1),
            };
            if (m.fields !== undefined) item.fields = m.fields;
            return item;
          });
          const ours = viaScanner(pieces, streamed);
          expect(ours.errors).toEqual([]);
          expect(ours.seen).toEqual(expected);
          expect(ours.whole).toEqual(messages.map((m) => m.bytes));
          expect(viaPgProtocol(pieces)).toEqual(expected);
        }),
        { numRuns: 300 },
      );
    });
  }

  it("agree byte by byte on a stream cut at every offset", () => {
    const messages = [
      msg.parameterStatus("TimeZone", "UTC"),
      frame("D", Buffer.concat([int16(2), int32(-1), int32(3), Buffer.from("abc")])),
      msg.errorResponse({
        severity: "ERROR",
        code: "42P01",
        message: "no",
        detail: "d",
        hint: "h",
      }),
      msg.readyForQuery(0x49),
    ];
    const all = Buffer.concat(messages);
    const reference = viaPgProtocol([all]);
    expect(reference.map((s) => s.type).join("")).toBe("SDEZ");
    expect(reference[2].fields).toEqual({ code: "42P01", message: "no", detail: "d", hint: "h" });
    for (let at = 0; at <= all.length; at++) {
      const pieces = [all.subarray(0, at), all.subarray(at)].filter((p) => p.length > 0);
      expect(viaScanner(pieces, streamedCodes(BackendCode.DataRow)).seen).toEqual(reference);
      expect(viaPgProtocol(pieces)).toEqual(reference);
    }
  });
});

describe("why the proxy decodes upstream messages itself (pg-protocol 1.16)", () => {
  it("an ErrorResponse's severity: pg-protocol keeps only S (localized), we read V", () => {
    // A server with lc_messages=ru says ВАЖНО in S for FATAL; V is never translated.
    const e = frame(
      "E",
      Buffer.concat([
        cstr("S\u0412\u0410\u0416\u041d\u041e"),
        cstr("VFATAL"),
        cstr("C57P01"),
        cstr("Mbye"),
        Buffer.from([0]),
      ]),
    );
    expect((parseOne(e) as DatabaseError).severity).toBe("\u0412\u0410\u0416\u041d\u041e");
    expect(serverErrorFrom(e, 0, e.length).fatal).toBe(true);
  });

  it("a malformed AuthenticationCleartextPassword reads as authenticationOk", () => {
    expect(parseOne(frame("R", Buffer.from([0, 0, 0, 3, 1]))).name).toBe("authenticationOk");
  });

  it("an ErrorResponse without its final NUL hangs the parser (the event loop) for good", () => {
    const parser = createRequire(import.meta.url).resolve("pg-protocol/dist/parser.js");
    const script = `const { Parser } = require(${JSON.stringify(parser)});
      new Parser().parse(Buffer.from([0x45, 0, 0, 0, 11, 0x43, 0x58, 0x58, 0x30, 0x30, 0x30, 0]), () => {});`;
    const r = spawnSync(process.execPath, ["-e", script], { timeout: 1000 });
    expect(r.signal).toBe("SIGTERM"); // killed at the timeout, still looping
    // Ours stops at the end of the message.
    const e = frame("E", Buffer.from("CXX000\0", "latin1"));
    expect(serverErrorFrom(e, 0, e.length).sqlstate).toBe("XX000");
  });
});

/** The one message pg-protocol's Parser makes of `bytes`. */
function parseOne(bytes: Buffer): BackendMessage {
  const out: BackendMessage[] = [];
  new Parser().parse(Buffer.from(bytes), (m) => out.push(m));
  expect(out).toHaveLength(1);
  return out[0];
}
