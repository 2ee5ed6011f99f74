// Raw protocol clients for tests: build startup/cancel packets and frames byte by byte, read back
// the server's messages, and notice when the connection closes. For malformed-input tests.
import net from "node:net";

/** One message from the server: its type letter and body (after the 5-byte header). */
export interface WireMessage {
  type: string;
  body: Buffer;
}

/** StartupMessage (F) with an arbitrary protocol version; params in order, then the final NUL. */
export function startupPacket(
  major: number,
  minor: number,
  params: Record<string, string>,
): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(params)) parts.push(Buffer.from(`${k}\0${v}\0`, "utf8"));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeUInt16BE(major, 4);
  head.writeUInt16BE(minor, 6);
  return Buffer.concat([head, body]);
}

/** CancelRequest (F): length 16 (or more with a longer 3.2 key), code 80877102, pid, secret. */
export function cancelPacket(pid: number, secret: Buffer): Buffer {
  const b = Buffer.alloc(12 + secret.length);
  b.writeInt32BE(b.length, 0);
  b.writeInt32BE(80877102, 4);
  b.writeInt32BE(pid, 8);
  secret.copy(b, 12);
  return b;
}

/** A typed frontend message: type byte, Int32 length (body + 4), body. */
export function frame(type: string, body: Buffer | string = Buffer.alloc(0)): Buffer {
  const b = typeof body === "string" ? Buffer.from(body, "utf8") : body;
  const out = Buffer.alloc(5 + b.length);
  out.write(type, 0, "latin1");
  out.writeInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

/** Query (F). */
export function queryFrame(sql: string): Buffer {
  return frame("Q", `${sql}\0`);
}

/** The fields of an ErrorResponse / NoticeResponse body, keyed by field letter (S, V, C, M, ...). */
export function errorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < body.length && body[pos] !== 0) {
    const key = String.fromCharCode(body[pos]);
    const end = body.indexOf(0, pos + 1);
    if (end < 0) break;
    out[key] = body.toString("utf8", pos + 1, end);
    pos = end + 1;
  }
  return out;
}

/**
 * A raw TCP client. Everything the server sends is kept; `messages()` parses it as typed messages
 * (after an optional one-byte SSL answer was taken off with `takeByte()`).
 */
export class RawClient {
  readonly socket: net.Socket;
  private data: Buffer = Buffer.alloc(0);
  private consumed = 0;
  private waiters: Array<() => void> = [];
  closed = false;
  /** When the server closed (or reset) the connection, by performance.now(). */
  closedAt = 0;
  readonly closedPromise: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.data = Buffer.concat([this.data, chunk]);
      this.wake();
    });
    socket.on("error", () => {});
    this.closedPromise = new Promise((resolve) => {
      socket.on("close", () => {
        this.closed = true;
        this.closedAt = performance.now();
        this.wake();
        resolve();
      });
    });
  }

  static connect(port: number, host = "127.0.0.1"): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      socket.setNoDelay(true);
      const onError = (err: Error) => reject(err);
      socket.once("error", onError);
      socket.once("connect", () => {
        socket.off("error", onError);
        resolve(new RawClient(socket));
      });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  write(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /** All bytes received so far. */
  get received(): Buffer {
    return this.data;
  }

  /** Messages received so far (whole ones only), from the start or after takeByte(). */
  messages(): WireMessage[] {
    const out: WireMessage[] = [];
    let pos = this.consumed;
    while (pos + 5 <= this.data.length) {
      const len = this.data.readInt32BE(pos + 1);
      if (len < 4 || pos + 1 + len > this.data.length) break;
      out.push({
        type: String.fromCharCode(this.data[pos]),
        body: this.data.subarray(pos + 5, pos + 1 + len),
      });
      pos += 1 + len;
    }
    return out;
  }

  /** Waits until `pred` holds over the messages so far, or the connection closes, or timeout. */
  async waitFor(pred: (msgs: WireMessage[]) => boolean, timeoutMs = 5000): Promise<WireMessage[]> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const msgs = this.messages();
      if (pred(msgs)) return msgs;
      if (this.closed) return msgs;
      const left = deadline - performance.now();
      if (left <= 0) return msgs;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits for the first message of type `type`; undefined if it never came. */
  async waitForType(type: string, timeoutMs = 5000): Promise<WireMessage | undefined> {
    const msgs = await this.waitFor((m) => m.some((x) => x.type === type), timeoutMs);
    return msgs.find((x) => x.type === type);
  }

  /** Resolves true when the server has closed the connection within `timeoutMs`. */
  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    if (this.closed) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const r = await Promise.race([this.closedPromise.then(() => true as const), timeout]);
    clearTimeout(timer);
    return r;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
