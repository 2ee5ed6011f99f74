// ByteRun: coalesces adjacent ranges of received chunks into a single view, so consecutive frames
// (or replies) leave as one write instead of one per message. Ranges are adjacent when their bytes
// are: a range of a view of a chunk (a unit's kept frames) joins the chunk's next range.

/**
 * Copies src[start, end) into dst at `at`; returns the offset after it. Short ranges (frames of a
 * few dozen bytes) are copied byte by byte: Buffer.prototype.copy costs a typed-array view and
 * argument checks per call, more than the copy itself.
 */
export function copyBytes(
  dst: Buffer,
  at: number,
  src: Buffer,
  start: number,
  end: number,
): number {
  const n = end - start;
  if (n <= 64) {
    for (let i = 0; i < n; i++) dst[at + i] = src[start + i];
  } else src.copy(dst, at, start, end);
  return at + n;
}

export class ByteRun {
  private buf: Buffer | null = null;
  /** The run, as offsets from the start of `buf` (`end` may pass `buf`'s own end, see add()). */
  private start = 0;
  private end = 0;

  /** Bytes in the run. */
  get length(): number {
    return this.buf === null ? 0 : this.end - this.start;
  }

  /** Extends the run with [start, end) of `buf`; returns the previous run when not adjacent. */
  add(buf: Buffer, start: number, end: number): Buffer | null {
    const b = this.buf;
    if (b !== null) {
      if (b === buf) {
        if (this.end === start) {
          this.end = end;
          return null;
        }
      } else if (b.buffer === buf.buffer && b.byteOffset + this.end === buf.byteOffset + start) {
        // The same memory, right after the run (a view of the chunk, then the chunk).
        const from = b.byteOffset + this.start - buf.byteOffset;
        if (from >= 0) {
          // `buf` holds the whole run: it becomes the base, so its next ranges join at once.
          this.buf = buf;
          this.start = from;
          this.end = end;
        } else this.end = buf.byteOffset + end - b.byteOffset;
        return null;
      }
    }
    const previous = this.take();
    this.buf = buf;
    this.start = start;
    this.end = end;
    return previous;
  }

  /**
   * The run's buffer, the run lying at [from, to) of it, without ending the run; null when empty.
   * A run that grew from a view into the memory after it is first based on one view of it all.
   */
  peek(): Buffer | null {
    const b = this.buf;
    if (b === null || this.end <= b.length) return b;
    const n = this.end - this.start;
    this.buf = Buffer.from(b.buffer, b.byteOffset + this.start, n);
    this.start = 0;
    this.end = n;
    return this.buf;
  }

  /** Where the run starts in peek()'s buffer. */
  get from(): number {
    return this.start;
  }

  /** Where the run ends in peek()'s buffer. */
  get to(): number {
    return this.end;
  }

  /** Ends the run and returns its view (the chunk itself when the run covers all of it). */
  take(): Buffer | null {
    const b = this.buf;
    if (b === null) return null;
    this.buf = null;
    if (this.start === 0 && this.end === b.length) return b;
    if (this.end <= b.length) return b.subarray(this.start, this.end);
    return Buffer.from(b.buffer, b.byteOffset + this.start, this.end - this.start);
  }

  /** Copies the run into `target` at `at`, ends it, and returns the offset after the copy. */
  copyTo(target: Buffer, at: number): number {
    const b = this.buf;
    if (b === null) return at;
    this.buf = null;
    if (this.end <= b.length) return copyBytes(target, at, b, this.start, this.end);
    const n = this.end - this.start;
    Buffer.from(b.buffer, b.byteOffset + this.start, n).copy(target, at);
    return at + n;
  }

  clear(): void {
    this.buf = null;
  }
}
