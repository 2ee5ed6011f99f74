// RelayOutput: how a client's frames reach its leased server, the base of Relay (which decides
// what each frame is). A client chunk leaves in one write: its frames as one range of the chunk,
// or, around a rewritten frame (a renamed Bind as the statement's prebuilt head and the client's
// bytes after its name, an injected Parse, a prebuilt Describe), copied into a staging buffer
// that is reused only once the server's socket reports nothing queued. Nothing is allocated per
// message. A full server buffer stops reading the client (DESIGN.md section 3, steps 3-4).

import type { BackendConnection } from "../backend/backend-connection.js";
import { ByteRun, copyBytes } from "../protocol/byte-run.js";
import { bindHead, type ClientStatement } from "./client-statements.js";
import type { ClientWire } from "./client-wire.js";

/** Frames up to this size are copied next to a rewritten frame (one write); larger go as views. */
const STAGE_COPY_MAX = 2048;
/** Size of the relay's staging buffer for rewritten frames. */
const STAGE_SIZE = 16384;

/** What the output reads of its session: the server it writes to, the client it stops reading. */
export interface RelayOutputOwner {
  readonly lease: BackendConnection | null;
  readonly wire: ClientWire;
}

/**
 * A base class and not a part object (as SessionBase is ClientSession's): the relay's one object
 * holds these fields, and its hot path calls these methods on itself.
 */
export class RelayOutput<O extends RelayOutputOwner> {
  /** Frames to the server are coalesced: one range per client chunk unless one is rewritten. */
  private readonly run = new ByteRun();
  /**
   * Rewritten frames (a renamed Bind, an injected Parse) and the small client frames around them
   * are copied here, so that a chunk still leaves in one write. [0, stageStart) was written,
   * [stageStart, stageEnd) is not yet. Bytes are never overwritten while a write of them may be
   * queued: the buffer is reused from its start only when its holder's socket queue is empty.
   * While it has unwritten bytes the run is empty, and the other way round.
   */
  private stage: Buffer | null = null;
  private stageStart = 0;
  private stageEnd = 0;
  /** The server the stage's written bytes went to. */
  private stageHolder: BackendConnection | null = null;
  /** A client chunk is being scanned: server writes are corked until its end. */
  private scanning = false;
  private corked: BackendConnection | null = null;

  constructor(protected readonly owner: O) {}

  /** A client chunk is scanned from here to endChunk(). */
  beginChunk(): void {
    this.scanning = true;
  }

  endChunk(): void {
    this.scanning = false;
    this.uncork();
  }

  /** A bug broke off the chunk: nothing more is written for it. */
  abortChunk(): void {
    this.scanning = false;
  }

  /** The end of a client chunk's frames: the pending range leaves, in one write. */
  flush(): void {
    if (this.corked === null && this.scanning) {
      // Nothing written yet for this chunk: its one pending buffer (a range or the staged bytes,
      // never both) needs no cork around it.
      this.scanning = false;
      this.flushPending();
      this.scanning = true;
      return;
    }
    this.flushPending();
    this.uncork();
  }

  /**
   * What is pending leaves now, unless a chunk is scanned: then the chunk's next frames join it
   * (one write at the chunk's end).
   */
  protected flushOutsideChunk(): void {
    if (this.scanning) return;
    this.flushPending();
    this.uncork();
  }

  /** Client frame bytes that go as they are. */
  protected emitRange(buf: Buffer, start: number, end: number): void {
    const n = end - start;
    if (this.stageEnd > this.stageStart) {
      // After a rewritten frame: a small frame is copied beside it, a large one goes as a view.
      const stage = this.stage as Buffer;
      if (n <= STAGE_COPY_MAX && this.stageEnd + n <= stage.length) {
        this.stageEnd = copyBytes(stage, this.stageEnd, buf, start, end);
        return;
      }
      this.flushStage();
    }
    const previous = this.run.add(buf, start, end);
    if (previous !== null) this.write(previous);
  }

  /** Bytes of our own making (a Parse, a Describe, a Close): after what is pending, in order. */
  protected emit(bytes: Buffer): void {
    if (bytes.length > STAGE_COPY_MAX) {
      this.flushPending();
      this.write(bytes);
      return;
    }
    const conn = this.owner.lease;
    if (conn === null) return;
    const at = this.reserve(bytes.length);
    this.stageEnd = copyBytes(this.stage as Buffer, at, bytes, 0, bytes.length);
  }

  /**
   * A client Bind to the unnamed portal of a renamed statement: our head (type, length, portal,
   * server name) and the client's frame after its statement name, buf[restStart, end), copied
   * into the stage with what is pending (one write for the chunk, nothing allocated).
   */
  protected stageBind(stmt: ClientStatement, buf: Buffer, restStart: number, end: number): void {
    const head = bindHead(stmt);
    const rest = end - restStart;
    const copyRest = rest <= STAGE_COPY_MAX;
    let at = this.reserve(head.length + (copyRest ? rest : 0));
    const stage = this.stage as Buffer;
    const length = head.length + rest - 1;
    copyBytes(stage, at, head, 0, head.length);
    stage[at + 1] = length >>> 24;
    stage[at + 2] = (length >>> 16) & 0xff;
    stage[at + 3] = (length >>> 8) & 0xff;
    stage[at + 4] = length & 0xff;
    at += head.length;
    if (copyRest) {
      this.stageEnd = copyBytes(stage, at, buf, restStart, end);
      return;
    }
    this.stageEnd = at;
    this.flushStage();
    this.run.add(buf, restStart, end); // the run is empty: nothing returned
  }

  /**
   * Room for `n` more bytes in the stage, after what is pending: a small pending range is copied
   * in first (one write), a large one is written. Returns where the `n` bytes go.
   */
  private reserve(n: number): number {
    const pending = this.run.length;
    if (pending > STAGE_COPY_MAX) this.flushRun();
    const take = pending > STAGE_COPY_MAX ? 0 : pending;
    let stage = this.stage;
    if (stage !== null && this.stageStart === this.stageEnd && this.stageEnd > 0) {
      // Everything staged was written: start over once no socket may still be reading it.
      const holder = this.stageHolder;
      if (holder === null || holder.queuedBytes === 0) {
        this.stageStart = 0;
        this.stageEnd = 0;
        this.stageHolder = null;
      }
    }
    if (stage === null || this.stageEnd + take + n > stage.length) {
      this.flushStage();
      stage = Buffer.allocUnsafeSlow(Math.max(STAGE_SIZE, take + n));
      this.stage = stage;
      this.stageStart = 0;
      this.stageEnd = 0;
      this.stageHolder = null;
    }
    if (take > 0) this.stageEnd = this.run.copyTo(stage, this.stageEnd);
    return this.stageEnd;
  }

  /** The stage's unwritten bytes leave (as a view of it). */
  private flushStage(): void {
    if (this.stageEnd === this.stageStart) return;
    const conn = this.owner.lease;
    const stage = this.stage as Buffer;
    const bytes = stage.subarray(this.stageStart, this.stageEnd);
    this.stageStart = this.stageEnd;
    if (conn === null) return;
    const holder = this.stageHolder;
    if (holder !== null && holder !== conn && holder.queuedBytes > 0) {
      // Two sockets may read the stage: it is left to them, and a new one is made when needed.
      this.write(bytes);
      this.stage = null;
      this.stageStart = 0;
      this.stageEnd = 0;
      this.stageHolder = null;
      return;
    }
    this.stageHolder = conn;
    this.write(bytes);
  }

  private flushRun(): void {
    const range = this.run.take();
    if (range !== null) this.write(range);
  }

  /** Whatever is pending (a range or staged bytes; never both) leaves. */
  private flushPending(): void {
    this.flushRun();
    this.flushStage();
  }

  private write(bytes: Buffer): void {
    const conn = this.owner.lease;
    if (conn === null) return;
    // Everything one client chunk produces (a rewritten Bind, an injected Parse, the ranges
    // between them) leaves in one writev at the chunk's end.
    if (this.scanning) this.cork(conn);
    // A full server buffer: the client is not read until that server drains (or is gone: a
    // dead server never drains, so loss and release unblock too).
    if (!conn.write(bytes)) this.owner.wire.serverFull(conn);
  }

  /** Writes to `conn` wait for uncork() (the end of the chunk, or of sendUnit()). */
  protected cork(conn: BackendConnection): void {
    if (this.corked === conn) return;
    this.uncork();
    conn.cork();
    this.corked = conn;
  }

  private uncork(): void {
    const conn = this.corked;
    if (conn === null) return;
    this.corked = null;
    conn.uncork();
  }
}
