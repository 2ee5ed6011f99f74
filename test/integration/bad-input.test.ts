// Malformed and hostile client input over raw TCP: bad startup packets, protocol versions and
// negotiation, framing violations after login, silent clients, and a flood of garbage connections.
// Each is answered as Postgres would (ErrorResponse then close, or a quiet close where Postgres
// only logs) and the sidecar keeps serving.
import { randomBytes, randomInt } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { until } from "../helpers/until.js";
import {
  errorFields,
  frame,
  queryFrame,
  RawClient,
  startupPacket,
  type WireMessage,
} from "../helpers/wire.js";

const MAX_MESSAGE_BYTES = 1024 * 1024;
const LOGIN_TIMEOUT_MS = 1000;

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
}

/** The SQLSTATE of the only ErrorResponse among `msgs` (fails if there is not exactly one). */
function onlyErrorCode(msgs: WireMessage[]): string {
  const errors = msgs.filter((m) => m.type === "E");
  expect(errors).toHaveLength(1);
  return errorFields(errors[0].body).C;
}

describe("bad client input", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  let user: string;

  beforeAll(async () => {
    cluster = await sharedCluster();
    user = cluster.superuser;
    await cluster.createUser("badinput_junk", "junk pw");
    proxy = await startProxy(cluster, {
      pool_size: 2,
      auth_type: "trust",
      max_message_bytes: "1MB",
      client_login_timeout: "1s",
      users: [{ name: "badinput_junk", password: "junk pw" }],
    });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  /** A raw client that has logged in (trust) and seen ReadyForQuery. */
  async function loggedIn(): Promise<RawClient> {
    const c = await RawClient.connect(proxy.port);
    c.write(startupPacket(3, 0, { user, database: "postgres" }));
    const z = await c.waitForType("Z");
    expect(z?.body.toString("latin1")).toBe("I");
    return c;
  }

  /** Expects one ErrorResponse with `sqlstate` and then a close by the sidecar. */
  async function expectErrorThenClose(c: RawClient, sqlstate: string): Promise<void> {
    const closed = await c.waitClosed(5000);
    c.destroy();
    expect(closed).toBe(true);
    const msgs = c.messages();
    expect(onlyErrorCode(msgs)).toBe(sqlstate);
    expect(errorFields(msgs.find((m) => m.type === "E")?.body ?? Buffer.alloc(0)).S).toBe("FATAL");
  }

  async function expectStillServing(): Promise<void> {
    const c = new pg.Client({ ...proxy.pgConfig(), connectionTimeoutMillis: 5000 });
    c.on("error", () => {});
    await c.connect();
    expect((await c.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    await c.end();
  }

  /** Expects a close with nothing sent: Postgres logs these startup errors and tells no client. */
  async function expectQuietClose(c: RawClient): Promise<void> {
    const closed = await c.waitClosed(2000);
    c.destroy();
    expect(closed).toBe(true);
    expect(c.received.length).toBe(0);
  }

  // These two once got FATAL 08P01. Postgres 15's ProcessStartupPacket reports an impossible
  // length to its log only (COMMERROR) and closes: the sidecar now does the same
  // (startup-fidelity.test.ts compares both with Postgres itself).
  it("closes quietly on a startup packet shorter than 8 bytes", async () => {
    const c = await RawClient.connect(proxy.port);
    c.write(int32(4));
    await expectQuietClose(c);
  });

  it("closes quietly on a startup packet body over 10000 bytes, from its length alone", async () => {
    const c = await RawClient.connect(proxy.port);
    // The limit is on the body after the length word: 10004 is a valid length, 10005 is not.
    c.write(Buffer.concat([int32(10005), int32(196608)]));
    await expectQuietClose(c);
  });

  for (const [major, minor] of [
    [2, 0],
    [4, 0],
  ]) {
    it(`rejects protocol ${major}.${minor} with 0A000 and closes`, async () => {
      const c = await RawClient.connect(proxy.port);
      c.write(startupPacket(major, minor, { user, database: "postgres" }));
      await expectErrorThenClose(c, "0A000");
      const m = errorFields(c.messages()[0].body).M;
      expect(m).toContain(`unsupported frontend protocol ${major}.${minor}`);
    });
  }

  it("answers 3.9999 with _pq_ options by NegotiateProtocolVersion (3.2, option listed), then logs in", async () => {
    const c = await RawClient.connect(proxy.port);
    c.write(
      startupPacket(3, 9999, {
        user,
        database: "postgres",
        "_pq_.test_protocol_negotiation": "on",
      }),
    );
    const msgs = await c.waitFor((m) => m.some((x) => x.type === "Z"));
    c.write(queryFrame("SELECT 'negotiated' AS s"));
    const all = await c.waitFor((m) => m.filter((x) => x.type === "Z").length >= 2);
    c.destroy();
    expect(all.find((m) => m.type === "D")?.body.toString("utf8", 6)).toBe("negotiated");
    expect(msgs[0].type).toBe("v");
    const v = msgs[0].body;
    expect(v.readInt32BE(0)).toBe(2);
    const count = v.readInt32BE(4);
    const names = v.toString("utf8", 8).split("\0").filter(Boolean);
    expect(names).toContain("_pq_.test_protocol_negotiation");
    expect(names).toHaveLength(count);
    // Authentication proceeds: AuthenticationOk (trust), ParameterStatus..., BackendKeyData, RFQ.
    expect(msgs[1].type).toBe("R");
    expect(msgs[1].body.readInt32BE(0)).toBe(0);
    expect(msgs.some((m) => m.type === "E")).toBe(false);
    const key = msgs.find((m) => m.type === "K");
    // Protocol 3.2 keys are longer than 4 bytes (Postgres 18 sends 32).
    expect((key?.body.length ?? 0) - 4).toBeGreaterThan(4);
    expect(msgs.at(-1)?.type).toBe("Z");
  });

  it("never sends NegotiateProtocolVersion to a 3.0 client, with or without _pq_ options", async () => {
    const variants: Record<string, string>[] = [
      { user, database: "postgres" },
      { user, database: "postgres", "_pq_.test_protocol_negotiation": "on" },
    ];
    for (const params of variants) {
      const c = await RawClient.connect(proxy.port);
      c.write(startupPacket(3, 0, params));
      const msgs = await c.waitFor((m) => m.some((x) => x.type === "Z" || x.type === "E"));
      c.destroy();
      expect(msgs.map((m) => m.type)).not.toContain("v");
      expect(msgs[0].type).toBe("R");
      expect(msgs.at(-1)?.type).toBe("Z");
      const key = msgs.find((m) => m.type === "K");
      expect(key?.body.length).toBe(8);
    }
  });

  it("rejects a message length below 4 after login with 08P01 and closes", async () => {
    const c = await loggedIn();
    c.write(Buffer.concat([Buffer.from("Q"), int32(3)]));
    await expectErrorThenClose(c, "08P01");
  });

  it("rejects a message longer than max_message_bytes with 08P01 and closes", async () => {
    const c = await loggedIn();
    // Only the header: the length alone is the violation.
    c.write(Buffer.concat([Buffer.from("Q"), int32(MAX_MESSAGE_BYTES + 1)]));
    await expectErrorThenClose(c, "08P01");
  });

  it("accepts a message just under max_message_bytes", async () => {
    const c = await loggedIn();
    const pad = MAX_MESSAGE_BYTES - 4 - 64;
    c.write(queryFrame(`SELECT length('${"x".repeat(pad)}') AS n`));
    const msgs = await c.waitFor((m) => m.filter((x) => x.type === "Z").length >= 2, 10_000);
    c.destroy();
    expect(msgs.some((m) => m.type === "E")).toBe(false);
    const row = msgs.find((m) => m.type === "D");
    // DataRow: Int16 columns, Int32 length, value.
    expect(row?.body.toString("utf8", 6)).toBe(String(pad));
  });

  it("rejects an unknown message type with 08P01 and closes", async () => {
    const c = await loggedIn();
    c.write(frame("y", "hello"));
    await expectErrorThenClose(c, "08P01");
  });

  it("survives a client that sends a truncated message and closes", async () => {
    const before = proxy.proxy.sessions.size;
    const c = await loggedIn();
    c.write(Buffer.concat([Buffer.from("Q"), int32(100), Buffer.from("SELECT 1")]));
    c.socket.end();
    await c.waitClosed(5000);
    c.destroy();
    await expectStillServing();
    await until("the session to end", () => proxy.proxy.sessions.size <= before, 3000, 50);
    expect(proxy.proxy.sessions.size).toBe(before);
  });

  it("closes a client that connects and never speaks after client_login_timeout", async () => {
    const c = await RawClient.connect(proxy.port);
    const t0 = performance.now();
    const closed = await c.waitClosed(LOGIN_TIMEOUT_MS + 3000);
    c.destroy();
    expect(closed).toBe(true);
    const after = c.closedAt - t0;
    expect(after).toBeGreaterThan(LOGIN_TIMEOUT_MS - 200);
    expect(after).toBeLessThan(LOGIN_TIMEOUT_MS + 1500);
  });

  it("closes a client that stops halfway through its startup packet after client_login_timeout", async () => {
    const c = await RawClient.connect(proxy.port);
    const t0 = performance.now();
    c.write(startupPacket(3, 0, { user, database: "postgres" }).subarray(0, 11));
    const closed = await c.waitClosed(LOGIN_TIMEOUT_MS + 3000);
    c.destroy();
    expect(closed).toBe(true);
    expect(c.closedAt - t0).toBeLessThan(LOGIN_TIMEOUT_MS + 1500);
  });

  it("keeps serving a well-behaved client while 1000 connections send random bytes", async () => {
    const good = new pg.Client({ ...proxy.pgConfig(), connectionTimeoutMillis: 5000 });
    good.on("error", () => {});
    await good.connect();
    const baseline = proxy.proxy.sessions.size;
    let stop = false;
    let ok = 0;
    let slowest = 0;
    const failures: string[] = [];
    const worker = (async () => {
      while (!stop) {
        const t0 = performance.now();
        try {
          const n = randomInt(1_000_000);
          const r = await good.query("SELECT $1::int AS n", [n]);
          if (r.rows[0].n !== n) failures.push(`wrong row ${JSON.stringify(r.rows)}`);
          else ok++;
        } catch (err) {
          failures.push((err as Error).message);
          await new Promise((r) => setTimeout(r, 20));
        }
        slowest = Math.max(slowest, performance.now() - t0);
      }
    })();

    const TOTAL = 1000;
    const BATCH = 100;
    let refused = 0;
    /** Connections that got something other than ErrorResponse before logging in. */
    const unexpected: string[] = [];
    const flood = async (i: number) => {
      let c: RawClient;
      try {
        c = await RawClient.connect(proxy.port);
      } catch {
        refused++;
        return;
      }
      const kind = i % 5;
      let bytes: Buffer;
      if (kind <= 1) {
        // Pure noise.
        bytes = randomBytes(randomInt(1, 600));
      } else if (kind === 2) {
        // A plausible startup length with a random version code and body.
        const len = randomInt(8, 600);
        bytes = Buffer.concat([int32(len), randomBytes(len - 4)]);
      } else if (kind === 3) {
        // Protocol 3.0 with a body that is not name/value pairs.
        const body = randomBytes(randomInt(1, 300));
        bytes = Buffer.concat([int32(8 + body.length), int32(196608), body]);
      } else {
        // Logged in (as its own user, so the good client's pool is not the one exhausted), then
        // frames with random types, lengths and bodies.
        c.write(startupPacket(3, 0, { user: "badinput_junk", database: "postgres" }));
        await c.waitForType("Z", 3000);
        const frames: Buffer[] = [];
        for (let f = randomInt(1, 4); f > 0; f--) {
          const body = randomBytes(randomInt(0, 100));
          frames.push(
            Buffer.concat([
              randomBytes(1),
              int32(randomInt(0, 2) ? 4 + body.length : randomInt(-5, 2e6)),
              body,
            ]),
          );
        }
        bytes = Buffer.concat(frames);
      }
      if (randomInt(2) === 0) {
        c.write(bytes);
      } else {
        // Split in two writes, to land across chunk boundaries.
        const cut = randomInt(bytes.length);
        c.write(bytes.subarray(0, cut));
        await new Promise((r) => setTimeout(r, randomInt(1, 20)));
        c.write(bytes.subarray(cut));
      }
      if (randomInt(3) === 0) c.socket.end();
      await c.waitClosed(kind === 4 ? 500 : LOGIN_TIMEOUT_MS + 1500);
      if (kind !== 4) {
        for (const m of c.messages()) if (m.type !== "E") unexpected.push(`${kind}:${m.type}`);
      }
      c.destroy();
    };
    for (let done = 0; done < TOTAL; done += BATCH) {
      await Promise.all(Array.from({ length: BATCH }, (_, j) => flood(done + j)));
    }
    stop = true;
    await worker;

    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(20);
    expect(slowest).toBeLessThan(3000);
    expect(refused).toBe(0);
    expect(unexpected).toEqual([]);
    expect((await good.query("SELECT 'still here' AS s")).rows).toEqual([{ s: "still here" }]);
    await good.end();

    // Every garbage session is gone, and new clients are served.
    await until(
      "the garbage sessions to end",
      () => proxy.proxy.sessions.size < baseline,
      5000,
      50,
    );
    expect(proxy.proxy.sessions.size).toBe(baseline - 1);
    await expectStillServing();

    // The garbage sessions' servers are within pool_size and none is left inside a transaction.
    let states: string[] = [];
    const junkServersIdle = async () => {
      const rows = await cluster.query(
        "SELECT state FROM pg_stat_activity WHERE usename = 'badinput_junk' AND pid <> pg_backend_pid()",
      );
      states = rows.map((r) => r.state as string);
      return states.every((st) => st === "idle");
    };
    await until("the junk servers to be idle", junkServersIdle, 5000, 100);
    expect(states.length).toBeLessThanOrEqual(2);
    expect(states.filter((st) => st !== "idle")).toEqual([]);
  });

  it("serves new clients after all of the above", async () => {
    await expectStillServing();
    const c = await loggedIn();
    c.write(queryFrame("SELECT 'fine' AS s"));
    const msgs = await c.waitFor((m) => m.filter((x) => x.type === "Z").length >= 2);
    c.destroy();
    expect(msgs.some((m) => m.type === "E")).toBe(false);
    expect(msgs.find((m) => m.type === "D")?.body.toString("utf8", 6)).toBe("fine");
  });
});
