// BufferWriter: builds one protocol message; the 5-byte header is reserved and filled at flush.

export class BufferWriter {
  private buf: Buffer;
  private pos = 5;

  constructor(initialSize = 256) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  private ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + extra));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  int8(value: number): this {
    this.ensure(1);
    this.buf[this.pos++] = value;
    return this;
  }

  int16(value: number): this {
    this.ensure(2);
    this.buf.writeInt16BE(value, this.pos);
    this.pos += 2;
    return this;
  }

  int32(value: number): this {
    this.ensure(4);
    this.buf.writeInt32BE(value, this.pos);
    this.pos += 4;
    return this;
  }

  /** A NUL-terminated string. */
  cstring(value: string): this {
    const len = Buffer.byteLength(value);
    this.ensure(len + 1);
    this.buf.write(value, this.pos, "utf8");
    this.pos += len;
    this.buf[this.pos++] = 0;
    return this;
  }

  bytes(value: Uint8Array): this {
    this.ensure(value.length);
    this.buf.set(value, this.pos);
    this.pos += value.length;
    return this;
  }

  /** Finishes a typed message: type byte + Int32 length (which counts itself, not the type). */
  flush(code: number): Buffer {
    this.buf[0] = code;
    this.buf.writeInt32BE(this.pos - 1, 1);
    return this.buf.subarray(0, this.pos);
  }

  /** Finishes an untyped startup-phase packet (no type byte; length counts itself). */
  flushUntyped(): Buffer {
    const out = this.buf.subarray(1, this.pos);
    out.writeInt32BE(out.length, 0);
    return out;
  }
}
