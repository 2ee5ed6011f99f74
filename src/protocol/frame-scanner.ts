// FrameScanner: splits a byte stream into protocol messages by their 5-byte headers, in place.
//
// Whole messages are handed to the sink as (buffer, start, end) ranges of the chunk they arrived in;
// nothing is copied unless a message is split across chunks. A split message is reassembled into a
// buffer of its exact size, except for the codes marked "streamed" (DataRow, CopyData on the
// backend side): those are passed on piece by piece so a large row is never held whole.

export interface FrameSink {
  /** A message starts. [start, end) is the whole message, or only its first piece when streamed. */
  onMessage(code: number, buf: Buffer, start: number, end: number): void;
  /** More bytes of a streamed message; `last` is true on its final piece. */
  onContinuation(buf: Buffer, start: number, end: number, last: boolean): void;
  /** The chunk has been fully scanned (flush coalesced writes here). */
  onChunkEnd(): void;
  /** A header declared an impossible length; the stream cannot be trusted any more. */
  onProtocolError(message: string): void;
}

const HEADER = 5;
/** The default: nothing streamed. Shared and never written (streamedCodes() makes new arrays). */
const NONE_STREAMED = new Uint8Array(256);

export class FrameScanner {
  /**
   * A header split across chunks, gathered in numbers rather than a Buffer: an idle connection's
   * scanner then owns no buffer at all (a 5-byte Buffer.allocUnsafe slice would keep an 8 KiB pool
   * slab alive per idle client).
   */
  private headerFill = 0;
  private headerCode = 0;
  private headerSize = 0;
  /** Reassembly buffer for a split, non-streamed message. */
  private partial: Buffer | null = null;
  private partialFill = 0;
  /** Bytes still to come of the current streamed message. */
  private streamRemaining = 0;
  private failed = false;
  /** Names the length limit in the error ("max_message_bytes" unless setLimit says otherwise). */
  private limitName = "max_message_bytes";
  /** The only message type accepted, or -1 for any (see expectOnly). */
  private onlyCode = -1;
  private onlyWhat = "";

  constructor(
    private maxMessageBytes: number,
    /** 256 flags: codes passed on piece by piece instead of reassembled. */
    private readonly streamed: Uint8Array = NONE_STREAMED,
  ) {}

  /**
   * Changes the largest message accepted from the next header on: a client is held to the small
   * limits of authentication until it has logged in. `name` names the limit in the error.
   */
  setLimit(maxMessageBytes: number, name = "max_message_bytes"): void {
    this.maxMessageBytes = maxMessageBytes;
    this.limitName = name;
  }

  /**
   * Accepts only messages of type `code` from the next header on; any other is refused at its type
   * byte, as Postgres refuses "expected SASL response, got message type 0" before reading a length.
   * `what` is the expected message, for the error. `expectOnly(-1)` accepts every type again.
   */
  expectOnly(code: number, what = ""): void {
    this.onlyCode = code;
    this.onlyWhat = what;
  }

  /** True when the scanner sits exactly between two messages. */
  get atBoundary(): boolean {
    return this.headerFill === 0 && this.partial === null && this.streamRemaining === 0;
  }

  push(chunk: Buffer, sink: FrameSink): void {
    if (this.failed) return;
    let pos = 0;
    const len = chunk.length;
    while (pos < len) {
      if (this.streamRemaining > 0) {
        const take = Math.min(this.streamRemaining, len - pos);
        this.streamRemaining -= take;
        sink.onContinuation(chunk, pos, pos + take, this.streamRemaining === 0);
        pos += take;
        continue;
      }
      if (this.partial !== null) {
        const take = Math.min(this.partial.length - this.partialFill, len - pos);
        chunk.copy(this.partial, this.partialFill, pos, pos + take);
        this.partialFill += take;
        pos += take;
        if (this.partialFill === this.partial.length) {
          const whole = this.partial;
          this.partial = null;
          sink.onMessage(whole[0], whole, 0, whole.length);
          if (this.failed) return;
        }
        continue;
      }
      if (this.headerFill > 0 || len - pos < HEADER) {
        // A header split across chunks: gather its 5 bytes first (type, then Int32 length).
        while (this.headerFill < HEADER && pos < len) {
          const b = chunk[pos++];
          if (this.headerFill === 0) {
            if (!this.checkCode(b, sink)) return;
            this.headerCode = b;
            this.headerSize = 0;
          } else this.headerSize = (this.headerSize << 8) | b; // signed, as readInt32BE
          this.headerFill++;
        }
        if (this.headerFill < HEADER) break;
        this.headerFill = 0;
        const code = this.headerCode;
        const size = this.headerSize;
        if (!this.checkLength(size, sink)) return;
        if (this.streamed[code] === 1) {
          this.streamRemaining = size - 4;
          // Deliver the header itself as the first piece (a new buffer: never reused afterwards).
          const header = Buffer.allocUnsafe(HEADER);
          header[0] = code;
          header.writeInt32BE(size, 1);
          sink.onMessage(code, header, 0, HEADER);
          if (this.failed) return;
          if (this.streamRemaining === 0) continue;
        } else {
          this.partial = Buffer.allocUnsafe(size + 1);
          this.partial[0] = code;
          this.partial.writeInt32BE(size, 1);
          this.partialFill = HEADER;
          if (this.partialFill === this.partial.length) {
            const whole = this.partial;
            this.partial = null;
            sink.onMessage(code, whole, 0, whole.length);
            if (this.failed) return;
          }
        }
        continue;
      }
      const code = chunk[pos];
      if (!this.checkCode(code, sink)) return;
      const size = chunk.readInt32BE(pos + 1);
      if (!this.checkLength(size, sink)) return;
      const end = pos + 1 + size;
      if (end <= len) {
        sink.onMessage(code, chunk, pos, end);
        if (this.failed) return;
        pos = end;
      } else if (this.streamed[code] === 1) {
        this.streamRemaining = end - len;
        sink.onMessage(code, chunk, pos, len);
        pos = len;
      } else {
        this.partial = Buffer.allocUnsafe(size + 1);
        chunk.copy(this.partial, 0, pos, len);
        this.partialFill = len - pos;
        pos = len;
      }
    }
    sink.onChunkEnd();
  }

  /** Stops scanning (the owner is closing the stream). */
  stop(): void {
    this.failed = true;
  }

  private checkLength(size: number, sink: FrameSink): boolean {
    if (size < 4 || size > this.maxMessageBytes) {
      this.failed = true;
      sink.onProtocolError(
        size < 4
          ? `invalid message length ${size}`
          : `message length ${size} exceeds ${this.limitName} (${this.maxMessageBytes})`,
      );
      return false;
    }
    return true;
  }

  private checkCode(code: number, sink: FrameSink): boolean {
    if (this.onlyCode < 0 || code === this.onlyCode) return true;
    this.failed = true;
    sink.onProtocolError(`expected ${this.onlyWhat}, got message type ${code}`);
    return false;
  }
}

/** Flags for FrameScanner's `streamed` parameter. */
export function streamedCodes(...codes: number[]): Uint8Array {
  const flags = new Uint8Array(256);
  for (const c of codes) flags[c] = 1;
  return flags;
}
