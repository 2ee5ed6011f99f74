// Unit: one unit of work of a client, from its first frame until its last ReadyForQuery. It keeps
// the client's frames (sent on checkout, and again on replay), holds the server's replies back
// until the unit's ReadyForQuery while a replay is still possible, and knows how much of the
// reply reached the client (DESIGN.md section 3, steps 1, 5 and 8).

import type { BackendConnection } from "../backend/backend-connection.js";
import { ByteRun } from "../protocol/byte-run.js";
import type { ClientWire } from "./client-wire.js";
import { type FrameSink, forEachFrameIn } from "./unit-frames.js";

/** What a unit needs of its session. */
export interface UnitOwner {
  readonly wire: ClientWire;
  readonly lease: BackendConnection | null;
  /** retry_buffer_bytes of the session's route: the most a unit, or its held replies, keeps. */
  readonly retryBufferBytes: number;
}

const NO_FRAMES: readonly Buffer[] = [];

export class Unit {
  private isOpen = false;
  private tooBig = false;
  private wasForwarded = false;
  private wasReplied = false;
  /** Some reply to the unit, the server's or one we answered (ParseComplete...), was emitted. */
  private answered = false;
  private isHolding = false;
  private replayCount = 0;
  private began = 0;
  /**
   * The client frames kept: the ranges in `frames` (created when a second range comes, from
   * another chunk), then the latest range in `input`. A unit in one chunk is kept as that one
   * range, with nothing allocated.
   */
  private frames: Buffer[] | null = null;
  private keptBytes = 0;
  private readonly input = new ByteRun();
  /** Bytes of every frame of the unit, kept or not. */
  private unitBytes = 0;
  private held: Buffer[] | null = null;
  private heldBytes = 0;
  /** Reply ranges for the client, written (or held) at the chunk's end. */
  private readonly output = new ByteRun();

  constructor(private readonly owner: UnitOwner) {}

  /** A unit is in progress (from its first frame until its last ReadyForQuery). */
  get open(): boolean {
    return this.isOpen;
  }

  /** The unit grew past retry_buffer_bytes: it can no longer be replayed. */
  get overflow(): boolean {
    return this.tooBig;
  }

  /** Some of the unit's response already reached the client. */
  get forwarded(): boolean {
    return this.wasForwarded;
  }

  /** The server replied to some of the unit (forwarded or held). */
  get replied(): boolean {
    return this.wasReplied;
  }

  /** Replies are held until the unit's ReadyForQuery (see hold()). */
  get holding(): boolean {
    return this.isHolding;
  }

  /** Replays of this unit so far. */
  get replays(): number {
    return this.replayCount;
  }

  /** Seconds since the unit's first frame. */
  get seconds(): number {
    return (performance.now() - this.began) / 1000;
  }

  /** The frames kept, as ranges of whole frames (none once the unit overflowed). A cold path. */
  keptFrames(): readonly Buffer[] {
    if (this.tooBig) return NO_FRAMES;
    const latest = this.input.take();
    if (latest !== null) this.push(latest);
    return this.frames ?? NO_FRAMES;
  }

  /** Bytes of the unit's frames so far, kept or not. */
  get bytes(): number {
    return this.unitBytes;
  }

  /** The unit's first frame: `holding` where a replay is possible (outside a transaction). */
  begin(holding: boolean): void {
    this.isOpen = true;
    this.began = performance.now();
    this.wasForwarded = false;
    this.wasReplied = false;
    this.answered = false;
    this.isHolding = holding;
    this.tooBig = false;
    this.replayCount = 0;
    this.unitBytes = 0;
  }

  /** The unit goes to another server; returns the attempt's number. */
  replay(): number {
    return ++this.replayCount;
  }

  /** The unit is answered by us (an error): replies are no longer held. */
  stopHolding(): void {
    this.isHolding = false;
  }

  /** Records a client frame (coalescing ranges of one chunk). */
  append(buf: Buffer, start: number, end: number): void {
    this.unitBytes += end - start;
    const previous = this.input.add(buf, start, end);
    if (previous !== null) this.keep(previous);
  }

  /** The chunk ended: the replay copy is checked against retry_buffer_bytes. */
  endInputRun(): void {
    if (this.tooBig && this.owner.lease !== null) this.input.clear();
    else this.checkSize();
  }

  /** Adds an earlier range of client frames to the replay copy while the unit may be replayed. */
  private keep(range: Buffer): void {
    if (this.tooBig && this.owner.lease !== null) return; // no longer replayable: nothing to keep
    this.push(range);
    this.checkSize();
  }

  /** Bytes of the replay copy: the ranges kept, and the latest one. */
  private get keptSize(): number {
    return this.keptBytes + this.input.length;
  }

  /** Past retry_buffer_bytes, a unit holding a server stops keeping a copy. */
  private checkSize(): void {
    if (this.keptSize <= this.owner.retryBufferBytes) return;
    if (this.owner.lease !== null) this.stopKeeping();
    else this.owner.wire.pauseForUnit(); // unread until a server takes what it has
  }

  private push(range: Buffer): void {
    if (this.frames === null) this.frames = [range];
    else this.frames.push(range);
    this.keptBytes += range.length;
  }

  /** Too big to replay: stop keeping it. */
  private stopKeeping(): void {
    this.tooBig = true;
    this.frames = null;
    this.keptBytes = 0;
    this.input.clear();
  }

  /**
   * A server was found: every frame the unit holds goes to `sink`, whatever its size (the range
   * of the chunk being scanned stays pending, and the chunk's next frames join it). Past
   * retry_buffer_bytes the copy is then dropped.
   */
  sendTo(sink: FrameSink): void {
    const frames = this.frames;
    if (frames !== null) {
      for (let i = 0; i < frames.length; i++) {
        const range = frames[i];
        forEachFrameIn(range, 0, range.length, sink);
      }
    }
    const input = this.input;
    const latest = input.peek();
    if (latest !== null) forEachFrameIn(latest, input.from, input.to, sink);
    if (this.keptSize > this.owner.retryBufferBytes) this.stopKeeping();
  }

  /** The unit is over (done, failed or given up): nothing is kept any more. */
  end(): void {
    this.frames = null;
    this.keptBytes = 0;
    this.input.clear();
    this.tooBig = false;
    this.isOpen = false;
    this.replayCount = 0;
  }

  // --- replies ---------------------------------------------------------------------------------

  /** Server bytes that answer the unit. */
  forward(buf: Buffer, start: number, end: number): void {
    this.wasReplied = true;
    this.answered = true;
    if (!this.isHolding) this.wasForwarded = true;
    const previous = this.output.add(buf, start, end);
    if (previous !== null) this.emit(previous);
  }

  /** Server bytes that are not part of the unit's response: they do not prevent a replay. */
  forwardAsync(buf: Buffer, start: number, end: number): void {
    const { wasForwarded, wasReplied, answered } = this;
    this.forward(buf, start, end);
    this.wasForwarded = wasForwarded;
    this.wasReplied = wasReplied;
    this.answered = answered;
  }

  /** A server reply we rewrote (a renamed statement in an error): part of the response. */
  forwardRewritten(bytes: Buffer): void {
    this.wasReplied = true;
    this.answered = true;
    if (!this.isHolding) this.wasForwarded = true;
    this.flushOut();
    this.emit(bytes);
  }

  /**
   * Our own answer (ParseComplete of a statement the server has): the server has not replied,
   * so a FATAL that follows is still its first reply (a backend terminated while idle).
   */
  insert(bytes: Buffer): void {
    this.answered = true;
    this.flushOut();
    if (this.isHolding) {
      this.hold(bytes);
      return;
    }
    this.wasForwarded = true;
    this.owner.wire.write(bytes);
  }

  /** Bytes for the client in stream order that are no reply of the unit (a notification). */
  emitAside(bytes: Buffer): void {
    this.flushOut();
    this.emit(bytes);
  }

  /** The reply ranges of the chunk so far leave (or are held). */
  flushOut(): void {
    const range = this.output.take();
    if (range !== null) this.emit(range);
  }

  /** A reply range leaves for the client, or is held back until the unit's ReadyForQuery. */
  private emit(range: Buffer): void {
    if (this.isHolding) this.hold(range);
    else this.owner.wire.write(range);
  }

  /**
   * Keeps a reply range back until the unit's ReadyForQuery, so that a unit whose server dies
   * mid-reply can still be replayed (chunks are never reused, so this copies nothing). Past
   * retry_buffer_bytes the held part is sent and the rest streams.
   */
  private hold(range: Buffer): void {
    if (this.held === null) this.held = [range];
    else this.held.push(range);
    this.heldBytes += range.length;
    if (this.heldBytes > this.owner.retryBufferBytes) this.releaseHeld();
  }

  /** Sends what was held and stops holding for the rest of the unit. */
  releaseHeld(): void {
    this.isHolding = false;
    const held = this.held;
    if (held === null) return;
    if (this.answered) this.wasForwarded = true;
    this.held = null;
    this.heldBytes = 0;
    for (const range of held) this.owner.wire.write(range);
  }

  /** Everything emitted so far reaches the client now, and the rest streams. */
  release(): void {
    if (this.held === null) {
      // Nothing held from earlier chunks (a reply in one chunk): this chunk's range leaves as it
      // is, without an array to hold it in first.
      const range = this.output.take();
      if (range !== null) {
        if (this.isHolding && this.answered) this.wasForwarded = true;
        this.owner.wire.write(range);
      }
      this.isHolding = false;
      return;
    }
    this.flushOut();
    this.releaseHeld();
  }

  /** The server died: what it said about this unit never reaches the client. */
  dropHeld(): void {
    this.output.clear();
    this.held = null;
    this.heldBytes = 0;
  }
}
