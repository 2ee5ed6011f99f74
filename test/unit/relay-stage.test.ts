// Relay: a renamed Bind leaves with the frames around it in one write, copied into the relay's
// staging buffer; bytes already written are never overwritten while the server's socket may
// still read them (queued or corked), and the buffer is reused once it cannot.
import { describe, expect, it } from "vitest";
import type { BackendConnection } from "../../src/backend/backend-connection.js";
import { ClientStatements } from "../../src/frontend/client-statements.js";
import { Relay, type RelayOwner } from "../../src/frontend/relay.js";
import { frame } from "../helpers/wire.js";

const parse = (name: string, sql: string) =>
  frame("P", Buffer.concat([Buffer.from(`${name}\0${sql}\0`), Buffer.alloc(2)]));

/** Bind of `stmt` to the unnamed portal with one text parameter. */
function bind(stmt: string, param: string): Buffer {
  const p = Buffer.from(param);
  const tail = Buffer.alloc(2 + 2 + 4 + p.length + 2);
  let at = tail.writeInt16BE(0, 0); // no format codes
  at = tail.writeInt16BE(1, at); // one parameter
  at = tail.writeInt32BE(p.length, at);
  at += p.copy(tail, at);
  tail.writeInt16BE(0, at); // no result format codes
  return frame("B", Buffer.concat([Buffer.from(`\0${stmt}\0`), tail]));
}

const execute = frame("E", Buffer.from("\0\0\0\0\0"));
const sync = frame("S", Buffer.alloc(0));

function setup() {
  const writes: Array<{ ref: Buffer; copy: Buffer }> = [];
  const conn = {
    queued: 0,
    unsynced: false,
    skipping: false,
    pinned: false,
    txStatus: 0x49,
    get queuedBytes() {
      return this.queued;
    },
    trackClientFrame() {},
    expect() {},
    expectParse() {},
    hasStatement: () => true,
    evictFor: () => [],
    cork() {},
    uncork() {},
    write(bytes: Buffer) {
      writes.push({ ref: bytes, copy: Buffer.from(bytes) });
      return true;
    },
  };
  const statements = new ClientStatements();
  const p = parse("s1", "SELECT $1");
  const stmt = statements.register(p, 0, p.length, p.indexOf(0, 5), false);
  const owner = {
    lease: conn as unknown as BackendConnection,
    unit: { open: true, holding: false, begin() {}, append() {} },
    loss: { intercept: () => false },
    statements,
    namesStatements: true,
    awaiting: false,
    txStatus: 0x49,
  } as unknown as RelayOwner;
  const relay = new Relay(owner);
  /** One client chunk through the relay, as the session scans it. */
  const chunk = (...frames: Buffer[]) => {
    const buf = Buffer.concat(frames);
    relay.beginChunk();
    let pos = 0;
    while (pos < buf.length) {
      const end = pos + 1 + buf.readInt32BE(pos + 1);
      relay.receive(buf[pos], buf, pos, end);
      pos = end;
    }
    relay.flush();
    relay.endChunk();
  };
  /** What the server should get for a Bind of s1 with `param`, then Execute and Sync. */
  const expected = (param: string) => {
    const b = bind(stmt.serverName, param);
    return Buffer.concat([b, execute, sync]);
  };
  return { conn, writes, chunk, expected };
}

describe("Relay staging of renamed Binds", () => {
  it("sends a renamed Bind with the frames after it in one write", () => {
    const { writes, chunk, expected } = setup();
    chunk(bind("s1", "42"), execute, sync);
    expect(writes).toHaveLength(1);
    expect(writes[0].ref).toEqual(expected("42"));
  });

  it("never overwrites bytes a socket may still read, and reuses the buffer once it cannot", () => {
    const { conn, writes, chunk, expected } = setup();
    chunk(bind("s1", "1"), execute, sync);
    conn.queued = 100; // the first write is still queued
    chunk(bind("s1", "22222"), execute, sync);
    chunk(bind("s1", "333"), execute, sync);
    for (const w of writes) expect(w.ref).toEqual(w.copy); // nothing written was changed
    expect(writes.map((w) => w.ref.toString("latin1"))).toEqual(
      ["1", "22222", "333"].map((p) => expected(p).toString("latin1")),
    );
    conn.queued = 0; // the kernel has it all: the buffer starts over
    chunk(bind("s1", "4"), execute, sync);
    const last = writes[writes.length - 1].ref;
    expect(last).toEqual(expected("4"));
    expect(last.byteOffset).toBe(writes[0].ref.byteOffset);
    expect(last.buffer).toBe(writes[0].ref.buffer);
  });

  it("sends a Bind with large parameters as its head, then a view of the client's bytes", () => {
    const { writes, chunk, expected } = setup();
    const big = "x".repeat(5000);
    chunk(bind("s1", big), execute, sync);
    expect(Buffer.concat(writes.map((w) => w.ref))).toEqual(expected(big));
    expect(writes).toHaveLength(2);
  });
});
