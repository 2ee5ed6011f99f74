// fast-check generators of client byte streams for fuzz tests: valid frontend messages as
// node-postgres encodes them, units of them, and mutations (lengths rewritten, bytes flipped,
// frames inserted, truncation) applied at the original frame boundaries; and TCP-like chunking.
import fc from "fast-check";
import { serialize } from "pg-protocol";

/** The largest message the fuzz scanners accept; some rewritten lengths sit just around it. */
export const FUZZ_MAX_MESSAGE = 64 * 1024;

const name = fc.oneof(fc.constant(""), fc.stringMatching(/^[a-z_][a-z0-9_]{0,20}$/));
const sql = fc.oneof(
  fc.constantFrom("SELECT 1", "SELECT $1::int", "BEGIN", "COMMIT", "SHOW TimeZone", ""),
  fc.string({ maxLength: 60 }).map((s) => s.replaceAll("\0", " ")),
);
const value = fc.oneof(
  fc.constant(null),
  fc.string({ maxLength: 20 }),
  fc.uint8Array({ maxLength: 20 }),
);

/** One valid frontend message, as a client library would encode it. */
export const validMessage: fc.Arbitrary<Buffer> = fc
  .oneof(
    sql.map((text) => serialize.query(text)),
    fc
      .record({ name, text: sql, types: fc.array(fc.nat(5000), { maxLength: 4 }) })
      .map((o) => serialize.parse(o)),
    fc
      .record({ portal: name, statement: name, values: fc.array(value, { maxLength: 5 }) })
      .map((o) =>
        serialize.bind({
          ...o,
          values: o.values.map((v) => (v instanceof Uint8Array ? Buffer.from(v) : v)),
        }),
      ),
    fc.record({ portal: name, rows: fc.nat(1000) }).map((o) => serialize.execute(o)),
    fc
      .record({ type: fc.constantFrom("S" as const, "P" as const), name })
      .map((o) => serialize.describe(o)),
    fc
      .record({ type: fc.constantFrom("S" as const, "P" as const), name })
      .map((o) => serialize.close(o)),
    fc.constant(0).map(() => serialize.sync()),
    fc.constant(0).map(() => serialize.flush()),
    fc.uint8Array({ maxLength: 40 }).map((b) => serialize.copyData(Buffer.from(b))),
    fc.constant(0).map(() => serialize.copyDone()),
    fc.string({ maxLength: 20 }).map((s) => serialize.copyFail(s.replaceAll("\0", " "))),
  )
  .map((b) => Buffer.from(b));

/** A unit as a driver sends it: Parse/Bind/Describe/Execute... then Sync, or a lone Query. */
export const validStream = fc.array(validMessage, { minLength: 1, maxLength: 12 });

export type Mutation =
  | { kind: "truncate"; at: number }
  | { kind: "flip"; at: number; xor: number }
  | { kind: "length"; frame: number; value: number }
  | { kind: "insertFrame"; frame: number; code: number; body: Uint8Array; length: number | null }
  | { kind: "insertBytes"; at: number; bytes: Uint8Array }
  | { kind: "duplicate"; from: number; to: number };

export const position = fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true });
const interestingLength = fc.oneof(
  fc.constantFrom(
    -1,
    0,
    3,
    4,
    5,
    6,
    0x7fffffff,
    -0x80000000,
    FUZZ_MAX_MESSAGE,
    FUZZ_MAX_MESSAGE + 1,
    10001,
  ),
  fc.integer({ min: -10, max: 300 }),
);
export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  position.map((at) => ({ kind: "truncate" as const, at })),
  fc.record({
    kind: fc.constant("flip" as const),
    at: position,
    xor: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({ kind: fc.constant("length" as const), frame: fc.nat(20), value: interestingLength }),
  fc.record({
    kind: fc.constant("insertFrame" as const),
    frame: fc.nat(20),
    code: fc.oneof(
      fc.constantFrom(...[..."PBDECSHQXdcfFpy\0"].map((c) => c.charCodeAt(0))),
      fc.nat(255),
    ),
    body: fc.uint8Array({ maxLength: 40 }),
    length: fc.option(interestingLength, { nil: null }),
  }),
  fc.record({
    kind: fc.constant("insertBytes" as const),
    at: position,
    bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }),
  }),
  fc.record({ kind: fc.constant("duplicate" as const), from: position, to: position }),
);

/** Applies the mutations in order; frame boundaries are those of the original messages. */
export function mutate(messages: Buffer[], mutations: Mutation[]): Buffer {
  const starts: number[] = [];
  let offset = 0;
  for (const m of messages) {
    starts.push(offset);
    offset += m.length;
  }
  let buf = Buffer.concat(messages);
  for (const m of mutations) {
    const at = (p: number) => Math.floor(p * (buf.length + 1));
    switch (m.kind) {
      case "truncate":
        buf = buf.subarray(0, at(m.at));
        break;
      case "flip": {
        if (buf.length === 0) break;
        const i = Math.min(at(m.at), buf.length - 1);
        buf = Buffer.from(buf);
        buf[i] ^= m.xor;
        break;
      }
      case "length": {
        const s = starts[m.frame % starts.length];
        if (s + 5 > buf.length) break;
        buf = Buffer.from(buf);
        buf.writeInt32BE(m.value | 0, s + 1);
        break;
      }
      case "insertFrame": {
        const s = Math.min(starts[m.frame % starts.length], buf.length);
        const f = Buffer.alloc(5 + m.body.length);
        f[0] = m.code;
        f.writeInt32BE(m.length === null ? 4 + m.body.length : m.length | 0, 1);
        Buffer.from(m.body).copy(f, 5);
        buf = Buffer.concat([buf.subarray(0, s), f, buf.subarray(s)]);
        break;
      }
      case "insertBytes": {
        const i = at(m.at);
        buf = Buffer.concat([buf.subarray(0, i), Buffer.from(m.bytes), buf.subarray(i)]);
        break;
      }
      case "duplicate": {
        const [a, b] = [at(m.from), at(m.to)].sort((x, y) => x - y);
        buf = Buffer.concat([buf.subarray(0, b), buf.subarray(a, b), buf.subarray(b)]);
        break;
      }
    }
  }
  return buf;
}

/** Cuts `buf` into chunks at the given relative positions (as TCP might deliver it). */
export function chunks(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => Math.floor(c * buf.length)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    if (p > prev) out.push(buf.subarray(prev, p));
    prev = Math.max(prev, p);
  }
  if (prev < buf.length) out.push(buf.subarray(prev));
  return out;
}

/** What Postgres logs when a client message is malformed (or cut off) on its side. */
const BACKEND_PROTOCOL_ERRORS =
  /invalid frontend message type|invalid message length|invalid string in message|insufficient data left in message|invalid message format|no data left in message|invalid (CLOSE|DESCRIBE) message subtype/;
/** A parameter's binary value too short for its type reads the same, with this CONTEXT line. */
const PARAMETER_CONTEXT = /CONTEXT: .*parameter \$\d+/;

/**
 * The lines of a Postgres server log that show a malformed message reached a backend: structural
 * protocol errors, not a bind parameter whose binary value does not fit its type.
 */
export function backendProtocolErrors(log: string): string[] {
  const lines = log.split("\n");
  return lines.filter(
    (line, i) => BACKEND_PROTOCOL_ERRORS.test(line) && !PARAMETER_CONTEXT.test(lines[i + 1] ?? ""),
  );
}
