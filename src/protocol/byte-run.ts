// ByteRun: coalesces adjacent ranges of one received chunk into a single view, so consecutive
// frames (or replies) leave as one write instead of one per message.

export class ByteRun {
  private buf: Buffer | null = null;
  private start = 0;
  private end = 0;

  /** Extends the run with [start, end) of `buf`; returns the previous run when not adjacent. */
  add(buf: Buffer, start: number, end: number): Buffer | null {
    if (this.buf === buf && this.end === start) {
      this.end = end;
      return null;
    }
    const previous = this.take();
    this.buf = buf;
    this.start = start;
    this.end = end;
    return previous;
  }

  /** Ends the run and returns its view (the chunk itself when the run covers all of it). */
  take(): Buffer | null {
    const b = this.buf;
    if (b === null) return null;
    this.buf = null;
    return this.start === 0 && this.end === b.length ? b : b.subarray(this.start, this.end);
  }

  clear(): void {
    this.buf = null;
  }
}
