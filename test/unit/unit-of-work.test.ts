// Unit and UnitLoss with stub owners: what a unit keeps for a replay, what it holds back from the
// client and when that reaches it, and what a lost unit becomes (replayed, failed, or answered as
// an aborted transaction).
import { beforeAll, describe, expect, it } from "vitest";
import type { BackendConnection } from "../../src/backend/backend-connection.js";
import { lostConnectionError, type ProxyError } from "../../src/errors.js";
import { ClientStatements } from "../../src/frontend/client-statements.js";
import type { ClientWire } from "../../src/frontend/client-wire.js";
import { RetryPolicy } from "../../src/frontend/retry-policy.js";
import type { Route } from "../../src/frontend/session-context.js";
import { Unit } from "../../src/frontend/unit.js";
import { forEachFrame } from "../../src/frontend/unit-frames.js";
import { UnitLoss, type UnitLossOwner } from "../../src/frontend/unit-loss.js";
import { TxStatus } from "../../src/protocol/codes.js";
import { loadSqlParser } from "../../src/sql/parser.js";
import { errorFields, frame, queryFrame } from "../helpers/wire.js";

/** A client socket that records what is written, and whether reading was paused for the unit. */
class FakeWire {
  readonly written: Buffer[] = [];
  paused = false;
  write(b: Buffer): void {
    this.written.push(b);
  }
  flush(): void {}
  pauseForUnit(): void {
    this.paused = true;
  }
  resumeAfterUnit(): void {
    this.paused = false;
  }
  /** The messages written, as type letters (E with its SQLSTATE, Z with its status). */
  get types(): string[] {
    const all = Buffer.concat(this.written);
    const out: string[] = [];
    for (let pos = 0; pos < all.length; ) {
      const type = String.fromCharCode(all[pos]);
      const end = pos + 1 + all.readInt32BE(pos + 1);
      if (type === "E") out.push(`E ${errorFields(all.subarray(pos + 5, end)).C}`);
      else if (type === "Z") out.push(`Z ${String.fromCharCode(all[pos + 5])}`);
      else out.push(type);
      pos = end;
    }
    return out;
  }
}

function unitWith(limit: number, leased = false) {
  const wire = new FakeWire();
  const owner = {
    wire: wire as unknown as ClientWire,
    lease: (leased ? {} : null) as BackendConnection | null,
    retryBufferBytes: limit,
  };
  return { unit: new Unit(owner), wire, owner };
}

/** One received chunk holding `frames`, appended frame by frame as the scanner would. */
function receive(unit: Unit, ...frames: Buffer[]): void {
  const chunk = Buffer.concat(frames);
  let pos = 0;
  for (const f of frames) {
    unit.append(chunk, pos, pos + f.length);
    pos += f.length;
  }
  unit.endInputRun();
}

const row = (text: string) => frame("D", text); // any server bytes: the unit does not look into them

describe("Unit: the replay copy", () => {
  it("keeps a chunk's frames as one range and visits each frame once", () => {
    const { unit } = unitWith(1 << 20);
    unit.begin(true);
    receive(unit, queryFrame("SELECT 1"), queryFrame("SELECT 2"));
    expect(unit.keptFrames()).toHaveLength(1);
    const seen: string[] = [];
    forEachFrame(unit.keptFrames(), (code, buf, start, end) =>
      seen.push(`${String.fromCharCode(code)}:${buf.toString("utf8", start + 5, end - 1)}`),
    );
    expect(seen).toEqual(["Q:SELECT 1", "Q:SELECT 2"]);
  });

  it("waiting for a server past retry_buffer_bytes: keeps everything, stops reading the client", () => {
    const { unit, wire } = unitWith(20);
    unit.begin(true);
    receive(unit, queryFrame("SELECT 'a long enough statement'"));
    expect(wire.paused).toBe(true);
    expect(unit.overflow).toBe(false);
    expect(unit.bytes).toBeGreaterThan(20);
  });

  it("holding a server past retry_buffer_bytes: stops keeping, can no longer be replayed", () => {
    const { unit, wire } = unitWith(20, true);
    unit.begin(true);
    receive(unit, queryFrame("SELECT 'a long enough statement'"));
    expect(unit.overflow).toBe(true);
    expect(unit.keptFrames()).toEqual([]);
    expect(unit.bytes).toBeGreaterThan(20); // still its size: a loss must not take it for a small unit
    expect(wire.paused).toBe(false);
  });

  it("sends the pending range on checkout, then drops a copy too big to replay", () => {
    const { unit } = unitWith(20);
    unit.begin(true);
    const q = queryFrame("SELECT 'a long enough statement'");
    unit.append(q, 0, q.length); // the chunk is still being scanned: nothing kept yet
    const sent: number[] = [];
    unit.sendTo({ send: (code) => sent.push(code) });
    expect(sent).toEqual([0x51]);
    expect(unit.overflow).toBe(true);
  });

  it("a server found mid-chunk gets the frames so far; the chunk's next frames join the same range", () => {
    const { unit, owner } = unitWith(1 << 20);
    unit.begin(true);
    const frames = [queryFrame("SELECT 1"), queryFrame("SELECT 2"), queryFrame("SELECT 3")];
    const chunk = Buffer.concat(frames);
    const first = frames[0].length;
    unit.append(chunk, 0, first);
    const sent: string[] = [];
    unit.sendTo({
      send: (_c, buf, start, end) => sent.push(buf.toString("utf8", start + 5, end - 1)),
    });
    owner.lease = {} as BackendConnection;
    unit.append(chunk, first, first + frames[1].length);
    unit.append(chunk, first + frames[1].length, chunk.length);
    unit.endInputRun();
    expect(sent).toEqual(["SELECT 1"]);
    expect(unit.keptFrames()).toEqual([chunk]);
    expect(unit.bytes).toBe(chunk.length);
  });

  it("a unit over several chunks keeps each chunk's range, in order", () => {
    const { unit } = unitWith(1 << 20);
    unit.begin(true);
    receive(unit, queryFrame("SELECT 1"));
    receive(unit, queryFrame("SELECT 2"), queryFrame("SELECT 3"));
    const sent: string[] = [];
    unit.sendTo({
      send: (_c, buf, start, end) => sent.push(buf.toString("utf8", start + 5, end - 1)),
    });
    expect(sent).toEqual(["SELECT 1", "SELECT 2", "SELECT 3"]);
    expect(unit.keptFrames()).toHaveLength(2);
  });

  it("end() forgets the unit", () => {
    const { unit } = unitWith(1 << 20);
    unit.begin(true);
    receive(unit, queryFrame("SELECT 1"));
    expect(unit.replay()).toBe(1);
    unit.end();
    expect([unit.open, unit.keptFrames().length, unit.replays]).toEqual([false, 0, 0]);
  });
});

describe("Unit: held replies", () => {
  it("holds the server's replies until release(), in order; only then are they forwarded", () => {
    const { unit, wire } = unitWith(1 << 20, true);
    unit.begin(true);
    const chunk = Buffer.concat([row("a"), row("b")]);
    unit.forward(chunk, 0, row("a").length);
    unit.forward(chunk, row("a").length, chunk.length);
    unit.flushOut();
    expect(wire.written).toEqual([]);
    expect([unit.replied, unit.forwarded]).toEqual([true, false]);
    unit.release();
    expect(Buffer.concat(wire.written)).toEqual(chunk);
    expect(unit.forwarded).toBe(true);
    expect(unit.holding).toBe(false);
  });

  it("sends what it held once past retry_buffer_bytes, and streams the rest", () => {
    const { unit, wire } = unitWith(10, true);
    unit.begin(true);
    const big = row("more than ten bytes");
    unit.forward(big, 0, big.length);
    unit.flushOut();
    expect(Buffer.concat(wire.written)).toEqual(big);
    expect(unit.holding).toBe(false);
    expect(unit.forwarded).toBe(true);
  });

  it("a notice does not count as a reply; our own ParseComplete is held like one", () => {
    const { unit, wire } = unitWith(1 << 20, true);
    unit.begin(true);
    const notice = frame("N", "x");
    unit.forwardAsync(notice, 0, notice.length);
    expect([unit.replied, unit.forwarded]).toEqual([false, false]);
    unit.insert(frame("1"));
    unit.dropHeld(); // the server died: none of it reaches the client
    unit.release();
    expect(wire.written).toEqual([]);
    expect(unit.forwarded).toBe(false);
  });

  it("not holding (retry off, or in a transaction): replies go out at once", () => {
    const { unit, wire } = unitWith(1 << 20, true);
    unit.begin(false);
    unit.insert(frame("1"));
    expect(wire.types).toEqual(["1"]);
    expect(unit.forwarded).toBe(true);
  });
});

/** A UnitLoss whose session is a stub; `events` records what its owner was asked to do. */
function lossWith(mode: "off" | "safe" = "safe", retryBufferBytes = 1 << 20) {
  const { unit, wire } = unitWith(retryBufferBytes, true);
  const events: string[] = [];
  const route = {
    pool: { key: "db/u", giveBack: (_c: unknown, how: string) => events.push(`giveBack ${how}`) },
    mode: "transaction",
    retry: new RetryPolicy(mode, 3, 1 << 20),
    notifications: null,
  } as unknown as Route;
  const owner: UnitLossOwner = {
    id: 1,
    log: { info() {} } as unknown as UnitLossOwner["log"],
    wire: wire as unknown as ClientWire,
    unit,
    statements: new ClientStatements(),
    route,
    txStatus: TxStatus.Idle,
    letGo: () => events.push("letGo"),
    forgetUnitSettings: () => {},
    unitOver: () => {},
    idle: () => events.push("idle"),
    requestServer: () => events.push("requestServer"),
    flushClient: () => {},
    reportError: (err: ProxyError) => wire.write(err.toMessage()),
    countClientError: () => {},
    countReplay: (outcome) => events.push(`replay ${outcome}`),
    close: (reason) => events.push(`close ${reason}`),
  };
  return { loss: new UnitLoss(owner), unit, wire, owner, events };
}

function server(
  over: Partial<
    Record<"txStatus" | "owed" | "bytesSent", number> & { pinned: boolean; resetByPeer: boolean }
  > = {},
) {
  return {
    id: 7,
    txStatus: over.txStatus ?? TxStatus.Idle,
    resetByPeer: over.resetByPeer ?? false,
    bytesSent: over.bytesSent ?? 100,
    pinned: over.pinned ?? false,
    pins: new Set(over.pinned ? ["temp_table"] : []),
    owedReadyForQuery: () => over.owed ?? 1,
    forgetOwedReplies() {},
  } as unknown as BackendConnection;
}

/** Sends `frames` to the loss's intercept as a client would; returns which were consumed. */
function send(loss: UnitLoss, ...frames: Buffer[]): boolean[] {
  return frames.map((f) => loss.intercept(f[0], f, 0, f.length));
}

describe("UnitLoss", () => {
  beforeAll(() => loadSqlParser());

  it("replays a read-only unit none of whose reply reached the client", () => {
    const { loss, unit, events } = lossWith();
    unit.begin(true);
    receive(unit, queryFrame("SELECT 1"));
    loss.serverLost(server(), "network", null);
    expect(events).toEqual(["giveBack destroy", "requestServer"]);
    expect(unit.replays).toBe(1);
  });

  it("replays a unit lost between two of its chunks whole: the latest chunk's frames too", () => {
    const { loss, unit, events } = lossWith();
    unit.begin(true);
    receive(unit, queryFrame("SELECT 1"));
    receive(unit, queryFrame("SELECT 2"), queryFrame("SELECT 3"));
    loss.serverLost(server({ owed: 3 }), "network", null);
    expect(events).toEqual(["giveBack destroy", "requestServer"]);
    const sent: string[] = [];
    unit.sendTo({
      send: (_c, buf, start, end) => sent.push(buf.toString("utf8", start + 5, end - 1)),
    });
    expect(sent).toEqual(["SELECT 1", "SELECT 2", "SELECT 3"]);
  });

  it("fails a unit whose reply reached the client: 08006 for a read, the session lives on", () => {
    const { loss, unit, wire, events } = lossWith();
    unit.begin(false);
    receive(unit, queryFrame("SELECT 1"));
    unit.insert(frame("T"));
    loss.serverLost(server(), "network", null);
    expect(events).toEqual(["giveBack destroy", "replay not_retryable", "idle"]);
    expect(wire.types).toEqual(["T", "E 08006", "Z I"]);
  });

  it("a write whose outcome is unknown gets 08007 under retry off", () => {
    const { loss, unit, wire } = lossWith("off");
    unit.begin(false);
    receive(unit, queryFrame("INSERT INTO t VALUES (1)"));
    loss.serverLost(server(), "network", null);
    expect(wire.types).toEqual(["E 08007", "Z I"]);
  });

  it("a reset is no proof a unit too big to keep went unread: 08007, not 08006", () => {
    // 9 kB is more than Postgres reads at once: the server may have run part of it.
    const { loss, unit, wire } = lossWith("safe", 1024);
    unit.begin(true);
    receive(unit, queryFrame(`INSERT INTO t VALUES ('${"x".repeat(9000)}')`));
    expect(unit.overflow).toBe(true);
    loss.serverLost(server({ resetByPeer: true }), "network", null);
    expect(wire.types).toEqual(["E 08007", "Z I"]);
  });

  it("closes a pinned client whose server died: its state cannot be rebuilt", () => {
    const { loss, unit, events } = lossWith();
    unit.begin(true);
    receive(unit, queryFrame("SELECT 1"));
    loss.serverLost(server({ pinned: true }), "network", null);
    expect(events).toEqual(["giveBack destroy", "close server_lost"]);
  });

  it("a transaction lost between units: 08006 first, 25P02 next, ROLLBACK ends it", () => {
    const { loss, wire, owner } = lossWith();
    loss.serverLost(server({ txStatus: TxStatus.InTransaction, owed: 0 }), "network", null);
    expect(owner.txStatus).toBe(TxStatus.Failed);
    expect(send(loss, queryFrame("SELECT 1"), queryFrame("SELECT 2"))).toEqual([true, true]);
    expect(wire.types).toEqual(["E 08006", "Z E", "E 25P02", "Z E"]);
    wire.written.length = 0;
    expect(send(loss, queryFrame("ROLLBACK"))).toEqual([true]);
    expect(wire.types).toEqual(["C", "Z I"]);
    expect(owner.txStatus).toBe(TxStatus.Idle);
    expect(send(loss, queryFrame("SELECT 3"))).toEqual([false]);
  });

  it("a COMMIT of a lost transaction the client has not heard of is refused with 08006", () => {
    const { loss, wire } = lossWith();
    loss.serverLost(server({ txStatus: TxStatus.InTransaction, owed: 0 }), "network", null);
    send(loss, queryFrame("COMMIT"));
    expect(wire.types).toEqual(["E 08006", "Z I"]);
  });

  it("an error owed no ReadyForQuery skips the client's messages up to its Sync", () => {
    const { loss, unit, wire } = lossWith();
    unit.begin(true);
    loss.fail(lostConnectionError(false), TxStatus.Idle, 0);
    wire.written.length = 0;
    const bind = frame("B", Buffer.alloc(8));
    expect(send(loss, bind, frame("S"), queryFrame("SELECT 1"))).toEqual([true, true, false]);
    expect(wire.types).toEqual(["Z I"]);
  });
});
