// Differential protocol testing: a raw wire client that logs in (SCRAM-SHA-256, md5, cleartext or
// trust), plays a script of frontend messages in a chosen write batching, records every backend
// message until the expected ReadyForQuery count, and renders the replies in a normalised,
// readable form so that the same conversation held with Postgres and with the sidecar can be
// compared message by message.
//
// Normalisation (what may legitimately differ between Postgres and a pooler in front of it):
// - everything up to and including the first ReadyForQuery of login (Authentication*,
//   ParameterStatus, BackendKeyData) is dropped; later ParameterStatus messages are kept;
// - the pid inside NotificationResponse becomes <pid>;
// - ErrorResponse/NoticeResponse lose F (file), L (line) and R (routine); the rest is kept and
//   shown in a fixed field order;
// - OIDs of user objects (>= 16384: table OIDs in RowDescription, user type OIDs) become T1, T2...
//   in order of first appearance, because the same table is dropped and re-created between runs;
// - per conversation, extra regex masks for values that depend on time or pids.
// The client's SCRAM is written here from RFC 5802 with node:crypto, independent of src/auth.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import net from "node:net";
import { errorFields, frame, startupPacket, type WireMessage } from "./wire.js";

export { errorFields, frame, queryFrame, startupPacket, type WireMessage } from "./wire.js";

// ---------------------------------------------------------------------------------------------
// Frontend message builders (everything the scripts need beyond wire.ts)

function int16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n, 0);
  return b;
}

export function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

/** A parameter value for Bind/FunctionCall: null, text, or raw bytes (send those with format 1). */
export type ParamValue = string | Buffer | null;

function paramBytes(values: readonly ParamValue[]): Buffer[] {
  const out: Buffer[] = [int16(values.length)];
  for (const v of values) {
    if (v === null) {
      out.push(int32(-1));
      continue;
    }
    const b = typeof v === "string" ? Buffer.from(v, "utf8") : v;
    out.push(int32(b.length), b);
  }
  return out;
}

/** Parse (P): statement name ("" = unnamed), query, parameter type OIDs (0 = unspecified). */
export function parse(name: string, sql: string, paramTypes: readonly number[] = []): Buffer {
  return frame(
    "P",
    Buffer.concat([cstr(name), cstr(sql), int16(paramTypes.length), ...paramTypes.map(uint32)]),
  );
}

/**
 * Bind (B): portal ("" = unnamed), statement, parameter values, parameter format codes (one for
 * all or one per value; default all text) and result format codes (default all text).
 */
export function bind(
  portal: string,
  statement: string,
  values: readonly ParamValue[] = [],
  paramFormats: readonly number[] = [],
  resultFormats: readonly number[] = [],
): Buffer {
  return frame(
    "B",
    Buffer.concat([
      cstr(portal),
      cstr(statement),
      int16(paramFormats.length),
      ...paramFormats.map(int16),
      ...paramBytes(values),
      int16(resultFormats.length),
      ...resultFormats.map(int16),
    ]),
  );
}

/** Describe (D) of a statement ('S') or portal ('P'). */
export function describe(kind: "S" | "P", name: string): Buffer {
  return frame("D", Buffer.concat([Buffer.from(kind, "latin1"), cstr(name)]));
}

/** Execute (E) of a portal with a row limit (0 = all rows). */
export function execute(portal = "", maxRows = 0): Buffer {
  return frame("E", Buffer.concat([cstr(portal), int32(maxRows)]));
}

/** Close (C) of a statement ('S') or portal ('P'). */
export function close(kind: "S" | "P", name: string): Buffer {
  return frame("C", Buffer.concat([Buffer.from(kind, "latin1"), cstr(name)]));
}

export function sync(): Buffer {
  return frame("S");
}

export function flush(): Buffer {
  return frame("H");
}

export function terminate(): Buffer {
  return frame("X");
}

/** CopyData (d). */
export function copyData(data: string | Buffer): Buffer {
  return frame("d", data);
}

/** CopyDone (c). */
export function copyDone(): Buffer {
  return frame("c");
}

/** CopyFail (f) with an error message. */
export function copyFail(reason: string): Buffer {
  return frame("f", cstr(reason));
}

/** FunctionCall (F): function OID, argument values (with formats like Bind), result format. */
export function functionCall(
  oid: number,
  values: readonly ParamValue[],
  argFormats: readonly number[] = [],
  resultFormat = 0,
): Buffer {
  return frame(
    "F",
    Buffer.concat([
      uint32(oid),
      int16(argFormats.length),
      ...argFormats.map(int16),
      ...paramBytes(values),
      int16(resultFormat),
    ]),
  );
}

/** The simple-protocol + extended-protocol codes that are each owed one ReadyForQuery. */
const OWES_READY = new Set(["Q", "S", "F"]);

/** How many ReadyForQuery the frames are owed (one per Query, Sync and FunctionCall). */
export function readyCount(frames: readonly Buffer[]): number {
  let n = 0;
  for (const f of frames) if (OWES_READY.has(String.fromCharCode(f[0]))) n++;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Connection

export interface Endpoint {
  host?: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** Extra startup parameters (application_name, ...). */
  params?: Record<string, string>;
}

/** One step of a script: frames sent together, and in `messages` batching what to wait for. */
export interface Step {
  frames: Buffer[];
  /**
   * In `messages` batching, after writing the step: wait until this many messages of this type
   * were received in this step (e.g. after a Flush). Default: the step's ReadyForQuery count.
   */
  until?: { type: string; count: number };
  /**
   * In `messages` batching, wait this long after the step (e.g. so that the server's reply to an
   * unfinished pipeline reaches the proxy before the rest of it is written).
   */
  pauseMs?: number;
}

/**
 * `pipeline`: every frame of every step in one write, then wait for all ReadyForQuery.
 * `messages`: each frame in its own write; at each step's end, wait for that step's replies.
 */
export type Batching = "pipeline" | "messages";

export class WireTimeout extends Error {
  override readonly name = "WireTimeout";
}

/** A raw protocol connection with incremental parsing of backend messages. */
export class WireConn {
  private buf: Buffer = Buffer.alloc(0);
  private readonly parsed: WireMessage[] = [];
  private waiters: Array<() => void> = [];
  closed = false;
  /** Set when the peer closed the socket or it failed. */
  closeReason = "";

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      let pos = 0;
      while (pos + 5 <= this.buf.length) {
        const len = this.buf.readInt32BE(pos + 1);
        if (pos + 1 + len > this.buf.length) break;
        this.parsed.push({
          type: String.fromCharCode(this.buf[pos]),
          // copy: the chunk buffers are not kept alive by their slices
          body: Buffer.from(this.buf.subarray(pos + 5, pos + 1 + len)),
        });
        pos += 1 + len;
      }
      this.buf = this.buf.subarray(pos);
      this.wake();
    });
    socket.on("error", (e) => {
      this.closeReason ||= `socket error: ${e.message}`;
    });
    socket.on("close", () => {
      this.closed = true;
      this.closeReason ||= "closed by peer";
      this.wake();
    });
  }

  static connect(port: number, host = "127.0.0.1"): Promise<WireConn> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      socket.setNoDelay(true);
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new WireConn(socket));
      });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  /** All messages received so far (login included). */
  get messages(): readonly WireMessage[] {
    return this.parsed;
  }

  /** Writes and resolves once the bytes were handed to the kernel. */
  write(bytes: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.destroyed) {
        reject(new Error(`write after close (${this.closeReason})`));
        return;
      }
      this.socket.write(bytes, (err) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * Waits until `pred` holds over the messages so far; throws WireTimeout (with `describe()` of
   * what came) on timeout, or if the connection closed first.
   */
  async waitFor(
    pred: (msgs: readonly WireMessage[]) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (pred(this.parsed)) return;
      const left = deadline - performance.now();
      if (this.closed || left <= 0) {
        const why = this.closed ? `connection closed (${this.closeReason})` : `${timeoutMs} ms`;
        throw new WireTimeout(
          `waiting for ${what}: ${why}; received ${this.parsed.length} messages:\n${tail(this.parsed)}`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits `ms` and returns (to collect asynchronous messages such as notifications). */
  async settle(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
  }

  async end(): Promise<void> {
    if (!this.socket.destroyed) {
      await this.write(terminate()).catch(() => {});
      this.socket.end();
    }
    this.socket.destroy();
  }
}

function tail(msgs: readonly WireMessage[], n = 30): string {
  const from = Math.max(0, msgs.length - n);
  const lines = msgs.slice(from).map((m, i) => `  #${from + i} ${renderRaw(m)}`);
  return (from > 0 ? [`  ... ${from} earlier`, ...lines] : lines).join("\n");
}

function count(msgs: readonly WireMessage[], type: string, from = 0): number {
  let n = 0;
  for (let i = from; i < msgs.length; i++) if (msgs[i].type === type) n++;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Login

function hmac(key: Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data).digest();
}

function scramAttrs(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of s.split(",")) {
    const eq = part.indexOf("=");
    if (eq > 0) out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

/** SASLInitialResponse / SASLResponse (p). */
function saslFrame(mechanism: string | null, data: string): Buffer {
  const d = Buffer.from(data, "utf8");
  return frame("p", mechanism === null ? d : Buffer.concat([cstr(mechanism), int32(d.length), d]));
}

/**
 * Connects and logs in; resolves after the first ReadyForQuery. Throws with the server's error on
 * a failed login.
 */
export async function login(ep: Endpoint, timeoutMs = 10_000): Promise<WireConn> {
  const conn = await WireConn.connect(ep.port, ep.host);
  try {
    await conn.write(
      startupPacket(3, 0, { user: ep.user, database: ep.database, ...(ep.params ?? {}) }),
    );
    let seen = 0;
    let clientFirstBare = "";
    let clientNonce = "";
    let expectedServerSig: Buffer | undefined;
    for (;;) {
      await conn.waitFor((m) => m.length > seen, timeoutMs, "login");
      const m = conn.messages[seen++];
      if (m.type === "E") {
        throw new Error(`login failed: ${JSON.stringify(errorFields(m.body))}`);
      }
      if (m.type === "Z") return conn;
      if (m.type !== "R") continue;
      const code = m.body.readInt32BE(0);
      switch (code) {
        case 0: // AuthenticationOk
          break;
        case 3: // cleartext
          await conn.write(frame("p", cstr(ep.password)));
          break;
        case 5: {
          const salt = m.body.subarray(4, 8);
          const inner = createHash("md5")
            .update(ep.password + ep.user)
            .digest("hex");
          const outer = createHash("md5")
            .update(Buffer.concat([Buffer.from(inner, "latin1"), salt]))
            .digest("hex");
          await conn.write(frame("p", cstr(`md5${outer}`)));
          break;
        }
        case 10: {
          const mechs = m.body.subarray(4).toString("utf8").split("\0").filter(Boolean);
          if (!mechs.includes("SCRAM-SHA-256")) {
            throw new Error(`no SCRAM-SHA-256 among ${mechs.join(", ")}`);
          }
          clientNonce = randomBytes(18).toString("base64");
          clientFirstBare = `n=,r=${clientNonce}`;
          await conn.write(saslFrame("SCRAM-SHA-256", `n,,${clientFirstBare}`));
          break;
        }
        case 11: {
          const serverFirst = m.body.subarray(4).toString("utf8");
          const a = scramAttrs(serverFirst);
          if (!a.r?.startsWith(clientNonce)) throw new Error("SCRAM: server nonce mismatch");
          const salted = pbkdf2Sync(
            ep.password.normalize("NFKC"),
            Buffer.from(a.s ?? "", "base64"),
            Number(a.i),
            32,
            "sha256",
          );
          const clientKey = hmac(salted, "Client Key");
          const storedKey = createHash("sha256").update(clientKey).digest();
          const withoutProof = `c=biws,r=${a.r}`;
          const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
          const sig = hmac(storedKey, authMessage);
          const proof = Buffer.alloc(32);
          for (let i = 0; i < 32; i++) proof[i] = clientKey[i] ^ sig[i];
          expectedServerSig = hmac(hmac(salted, "Server Key"), authMessage);
          await conn.write(saslFrame(null, `${withoutProof},p=${proof.toString("base64")}`));
          break;
        }
        case 12: {
          const v = scramAttrs(m.body.subarray(4).toString("utf8")).v ?? "";
          if (!expectedServerSig || !Buffer.from(v, "base64").equals(expectedServerSig)) {
            throw new Error("SCRAM: bad server signature");
          }
          break;
        }
        default:
          throw new Error(`unsupported authentication request ${code}`);
      }
    }
  } catch (e) {
    conn.socket.destroy();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Playing a script

export interface PlayOptions {
  batching: Batching;
  /** Per wait; default 10 s. */
  timeoutMs?: number;
  /** After the last ReadyForQuery, keep listening this long for asynchronous messages. */
  settleMs?: number;
}

/**
 * Plays `steps` on a logged-in connection and returns the messages received after login (the
 * first ReadyForQuery), raw.
 */
export async function play(
  conn: WireConn,
  steps: readonly Step[],
  opts: PlayOptions,
): Promise<WireMessage[]> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const start = conn.messages.length;
  const totalReady = steps.reduce((n, s) => n + readyCount(s.frames), 0);
  if (opts.batching === "pipeline") {
    await conn.write(Buffer.concat(steps.flatMap((s) => s.frames)));
  } else {
    let owed = 0;
    for (const [i, step] of steps.entries()) {
      const stepStart = conn.messages.length;
      for (const f of step.frames) {
        await conn.write(f);
        // Give each message its own trip through the event loop, so each is its own TCP segment.
        await new Promise((r) => setImmediate(r));
      }
      owed += readyCount(step.frames);
      const until = step.until;
      if (until) {
        await conn.waitFor(
          (m) => count(m, until.type, stepStart) >= until.count,
          timeoutMs,
          `step ${i + 1}: ${until.count} × '${until.type}'`,
        );
      }
      const want = owed;
      await conn.waitFor(
        (m) => count(m, "Z", start) >= want,
        timeoutMs,
        `step ${i + 1}: ReadyForQuery #${want}`,
      );
      if (step.pauseMs) await conn.settle(step.pauseMs);
    }
  }
  await conn.waitFor(
    (m) => count(m, "Z", start) >= totalReady,
    timeoutMs,
    `${totalReady} ReadyForQuery`,
  );
  if (opts.settleMs) await conn.settle(opts.settleMs);
  return conn.messages.slice(start);
}

// ---------------------------------------------------------------------------------------------
// Rendering and normalisation

const NAMES: Record<string, string> = {
  "1": "ParseComplete",
  "2": "BindComplete",
  "3": "CloseComplete",
  A: "NotificationResponse",
  C: "CommandComplete",
  c: "CopyDone",
  D: "DataRow",
  d: "CopyData",
  E: "ErrorResponse",
  G: "CopyInResponse",
  H: "CopyOutResponse",
  I: "EmptyQueryResponse",
  K: "BackendKeyData",
  N: "NoticeResponse",
  n: "NoData",
  R: "Authentication",
  S: "ParameterStatus",
  s: "PortalSuspended",
  T: "RowDescription",
  t: "ParameterDescription",
  V: "FunctionCallResponse",
  v: "NegotiateProtocolVersion",
  W: "CopyBothResponse",
  Z: "ReadyForQuery",
};

/** Error/notice fields in the order shown; F, L and R (source file, line, routine) are dropped. */
const FIELD_ORDER = "SVCMDHPpqWstcdnF";
const DROPPED_FIELDS = new Set(["F", "L", "R"]);

/** A readable rendering of bytes: quoted text if printable, else hex; long values summarised. */
function showBytes(b: Buffer): string {
  const printable = b.every((x) => x >= 0x20 || x === 0x0a || x === 0x09);
  const text = printable ? JSON.stringify(b.toString("utf8")) : `0x${b.toString("hex")}`;
  if (text.length <= 160) return text;
  const sha = createHash("sha1").update(b).digest("hex").slice(0, 12);
  return `${text.slice(0, 60)}… (${b.length} bytes, sha1 ${sha})`;
}

class Reader {
  pos = 0;
  constructor(readonly b: Buffer) {}
  i16(): number {
    const v = this.b.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(): number {
    const v = this.b.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  i32(): number {
    const v = this.b.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  str(): string {
    const end = this.b.indexOf(0, this.pos);
    const s = this.b.toString("utf8", this.pos, end < 0 ? this.b.length : end);
    this.pos = end < 0 ? this.b.length : end + 1;
    return s;
  }
  bytes(n: number): Buffer {
    const v = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
}

/** Maps user-object OIDs (>= 16384) to T1, T2, ... in order of first appearance. */
class OidNames {
  private readonly names = new Map<number, string>();
  name(oid: number): string {
    if (oid < 16384) return String(oid);
    let n = this.names.get(oid);
    if (!n) {
      n = `T${this.names.size + 1}`;
      this.names.set(oid, n);
    }
    return n;
  }
}

function renderFields(body: Buffer): string {
  const f = errorFields(body);
  const keys = Object.keys(f)
    .filter((k) => !DROPPED_FIELDS.has(k))
    .sort((a, b) => {
      const ia = FIELD_ORDER.indexOf(a);
      const ib = FIELD_ORDER.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
    });
  return keys.map((k) => `${k}=${JSON.stringify(f[k])}`).join(" ");
}

function renderWith(m: WireMessage, oids: OidNames): string {
  const name = NAMES[m.type] ?? `'${m.type}'`;
  const r = new Reader(m.body);
  try {
    switch (m.type) {
      case "1":
      case "2":
      case "3":
      case "c":
      case "I":
      case "n":
      case "s":
        return m.body.length === 0 ? name : `${name} ${showBytes(m.body)}`;
      case "A": {
        r.i32();
        const channel = r.str();
        return `${name} pid=<pid> channel=${JSON.stringify(channel)} payload=${JSON.stringify(r.str())}`;
      }
      case "C":
        return `${name} ${JSON.stringify(r.str())}`;
      case "D": {
        const n = r.i16();
        const vals: string[] = [];
        for (let i = 0; i < n; i++) {
          const len = r.i32();
          vals.push(len < 0 ? "NULL" : showBytes(r.bytes(len)));
        }
        return `${name} [${vals.join(", ")}]`;
      }
      case "d":
        return `${name} ${showBytes(m.body)}`;
      case "E":
      case "N":
        return `${name} ${renderFields(m.body)}`;
      case "G":
      case "H":
      case "W": {
        const overall = m.body[0];
        r.pos = 1;
        const n = r.i16();
        const fmts: number[] = [];
        for (let i = 0; i < n; i++) fmts.push(r.i16());
        return `${name} format=${overall} columns=[${fmts.join(",")}]`;
      }
      case "K":
        return `${name} <key>`;
      case "R":
        return `${name} ${r.i32()}`;
      case "S":
        return `${name} ${r.str()}=${JSON.stringify(r.str())}`;
      case "T": {
        const n = r.i16();
        const cols: string[] = [];
        for (let i = 0; i < n; i++) {
          const col = r.str();
          const table = oids.name(r.u32());
          const attnum = r.i16();
          const type = oids.name(r.u32());
          const typlen = r.i16();
          const typmod = r.i32();
          const format = r.i16();
          cols.push(
            `${col}(table=${table}#${attnum} type=${type}/${typlen}/${typmod} fmt=${format})`,
          );
        }
        return `${name} [${cols.join(", ")}]`;
      }
      case "t": {
        const n = r.i16();
        const types: string[] = [];
        for (let i = 0; i < n; i++) types.push(oids.name(r.u32()));
        return `${name} [${types.join(", ")}]`;
      }
      case "V": {
        const len = r.i32();
        return `${name} ${len < 0 ? "NULL" : showBytes(r.bytes(len))}`;
      }
      case "Z":
        return `${name} ${m.body.toString("latin1")}`;
      default:
        return `${name} ${showBytes(m.body)}`;
    }
  } catch {
    return `${name} (malformed) ${showBytes(m.body)}`;
  }
}

function renderRaw(m: WireMessage): string {
  return renderWith(m, new OidNames());
}

/** Masks for values that legitimately differ: [pattern, replacement] on each rendered line. */
export type Mask = readonly [RegExp, string];

/**
 * The normalised, rendered form of a conversation's replies (received after login): one string
 * per message, BackendKeyData dropped, user OIDs named in order of appearance, masks applied.
 */
export function normalise(msgs: readonly WireMessage[], masks: readonly Mask[] = []): string[] {
  const oids = new OidNames();
  const out: string[] = [];
  for (const m of msgs) {
    if (m.type === "K") continue;
    let line = renderWith(m, oids);
    for (const [re, rep] of masks) line = line.replace(re, rep);
    out.push(line);
  }
  return out;
}

/**
 * A line diff of two renderings (longest common subsequence): "  " both, "- " only in `a`,
 * "+ " only in `b`. Runs of more than 6 equal lines are elided.
 */
function lineDiff(a: readonly string[], b: readonly string[]): string[] {
  const n = a.length;
  const m = b.length;
  // lcs[i][j]: length of the LCS of a[i..] and b[j..]
  const lcs: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out: Array<[" " | "-" | "+", string]> = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      out.push([" ", a[i]]);
      i++;
      j++;
    } else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) out.push(["-", a[i++]]);
    else out.push(["+", b[j++]]);
  }
  const lines: string[] = [];
  for (let k = 0; k < out.length; ) {
    if (out[k][0] !== " ") {
      lines.push(`${out[k][0]} ${out[k][1]}`);
      k++;
      continue;
    }
    let e = k;
    while (e < out.length && out[e][0] === " ") e++;
    const run = out.slice(k, e);
    const head = k === 0 ? 0 : 3;
    const tailN = e === out.length ? 0 : 3;
    if (run.length > head + tailN + 1) {
      for (const [, l] of run.slice(0, head)) lines.push(`  ${l}`);
      lines.push(`  ... ${run.length - head - tailN} equal`);
      for (const [, l] of run.slice(run.length - tailN)) lines.push(`  ${l}`);
    } else for (const [, l] of run) lines.push(`  ${l}`);
    k = e;
  }
  return lines;
}

/**
 * Undefined if the two renderings are equal; else a readable report: the first differing message
 * with both sides, then (for conversations of up to 400 messages) a line diff of the whole.
 */
export function firstDifference(
  direct: readonly string[],
  proxied: readonly string[],
  labels: [string, string] = ["direct", "proxy"],
): string | undefined {
  const n = Math.max(direct.length, proxied.length);
  let i = 0;
  while (i < n && direct[i] === proxied[i]) i++;
  if (i === n) return undefined;
  const width = Math.max(labels[0].length, labels[1].length);
  const pad = (s: string) => s.padEnd(width);
  const lines: string[] = [
    `first difference at message #${i} (${labels[0]}: ${direct.length} messages, ${labels[1]}: ${proxied.length})`,
    `  ${pad(labels[0])}  ${direct[i] ?? "(nothing)"}`,
    `  ${pad(labels[1])}  ${proxied[i] ?? "(nothing)"}`,
  ];
  if (n <= 400) {
    lines.push(`diff (- ${labels[0]} only, + ${labels[1]} only):`);
    for (const l of lineDiff(direct, proxied)) lines.push(`  ${l}`);
    return lines.join("\n");
  }
  const from = Math.max(0, i - 3);
  for (let j = from; j < Math.min(n, i + 6); j++) {
    if (direct[j] === proxied[j]) {
      lines.push(`  #${j} ${pad("both")}  ${direct[j]}`);
      continue;
    }
    lines.push(`  #${j} ${pad(labels[0])}  ${direct[j] ?? "(nothing)"}`);
    lines.push(`  #${j} ${pad(labels[1])}  ${proxied[j] ?? "(nothing)"}`);
  }
  if (i + 6 < n) lines.push("  ...");
  return lines.join("\n");
}
