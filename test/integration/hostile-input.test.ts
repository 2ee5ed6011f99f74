// Hostile client input harms only its sender (DESIGN.md section 5), against the built CLI in a child
// process, so that a crash shows as an exit: malformed messages after login get FATAL 08P01 before
// anything reaches a backend, messages before authentication are small and checked as Postgres
// checks them, and the process, the other clients and the backends all carry on.
import { readFileSync } from "node:fs";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ScramClientExchange } from "../../src/auth/scram-sha-256.js";
import { backendProtocolErrors } from "../helpers/frontend-streams.js";
import {
  httpStatus,
  type SidecarProcess,
  sidecarMetric,
  spawnSidecar,
} from "../helpers/lifecycle-process.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { errorFields, frame, RawClient, startupPacket, type WireMessage } from "../helpers/wire.js";

const z = (s: string) => Buffer.from(`${s}\0`);
function i16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
}
function i32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}
const sync = frame("S");

/**
 * Servers that died under the sidecar (rather than being closed by it): what a malformed message
 * forwarded to a backend causes, once per replay.
 */
async function serversLost(p: SidecarProcess): Promise<number> {
  let n = 0;
  for (const reason of ["network", "crashed", "server_fatal", "protocol_error", "terminated"])
    n += await sidecarMetric(p, "pgsidecar_server_connections_closed_total", { reason });
  return n;
}

function rssKb(pid: number, field: "VmRSS" | "VmHWM"): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1]);
}

/** The one ErrorResponse the client got before the close, as fields. */
async function fatalThenClose(c: RawClient, timeoutMs = 3000): Promise<Record<string, string>> {
  const closed = await c.waitClosed(timeoutMs);
  c.destroy();
  expect(closed, "the sidecar closes the connection").toBe(true);
  const errors = c.messages().filter((m) => m.type === "E");
  expect(errors).toHaveLength(1);
  return errorFields(errors[0].body);
}

describe("hostile input (CLI child process)", () => {
  let cluster: SharedCluster;
  /** auth_type trust: protocol tests after a real login. */
  let trust: SidecarProcess;
  /** auth_type scram-sha-256: authentication tests. */
  let scram: SidecarProcess;
  let logMark = 0;

  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.createUser("hostile_junk", "junk pw");
    const common = [
      "--listen",
      "127.0.0.1:0",
      "--http-listen",
      "127.0.0.1:0",
      "--upstream",
      cluster.url({ database: "postgres" }),
      "--users",
      "[{name: hostile_junk, password: junk pw}]",
      "--pool-size",
      "2",
    ];
    trust = await spawnSidecar([...common, "--auth-type", "trust"]);
    scram = await spawnSidecar(common);
    logMark = cluster.log().length;
  });
  afterAll(async () => {
    trust?.kill();
    scram?.kill();
  });

  async function loggedIn(): Promise<RawClient> {
    const c = await RawClient.connect(trust.port);
    c.write(startupPacket(3, 0, { user: "hostile_junk", database: "postgres" }));
    expect((await c.waitForType("Z"))?.body.toString()).toBe("I");
    return c;
  }

  /** The sidecar still runs, serves a new client, and no backend saw a malformed message. */
  async function stillFine(p: SidecarProcess): Promise<void> {
    expect(await httpStatus(p.httpPort, "/healthz")).toBe(200);
    const client = new pg.Client({
      host: "127.0.0.1",
      port: p.port,
      user: cluster.superuser,
      password: cluster.password,
      database: "postgres",
    });
    await client.connect();
    expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    await client.end();
    // Nothing malformed reached a backend (Postgres would have logged it).
    expect(backendProtocolErrors(cluster.log().slice(logMark))).toEqual([]);
  }

  it("answers a Bind whose statement name has no NUL with FATAL 08P01, and lives on", async () => {
    const c = await loggedIn();
    c.write(Buffer.concat([frame("B", Buffer.concat([z(""), Buffer.from("s1")])), sync]));
    const e = await fatalThenClose(c);
    expect(e).toMatchObject({ S: "FATAL", C: "08P01", M: "invalid string in message" });
    await stillFine(trust);
  });

  it("refuses an empty Bind after a named Parse before it reaches the backend", async () => {
    const lostBefore = await serversLost(trust);
    const c = await loggedIn();
    c.write(Buffer.concat([frame("P", Buffer.concat([z("s1"), z("SELECT 1"), i16(0)])), sync]));
    await c.waitFor((m) => m.filter((x) => x.type === "Z").length >= 2);
    c.write(Buffer.concat([frame("B"), sync]));
    const e = await fatalThenClose(c);
    expect(e).toMatchObject({ S: "FATAL", C: "08P01", M: "invalid string in message" });
    // No backend died of it (before: one Bind killed a backend per replay, four in all).
    expect(await serversLost(trust)).toBe(lostBefore);
    await stillFine(trust);
  });

  it("answers a malformed Close with 08P01, not CloseComplete", async () => {
    const c = await loggedIn();
    c.write(Buffer.concat([frame("C", Buffer.concat([Buffer.from("X"), z("s1")])), sync]));
    const e = await fatalThenClose(c);
    expect(e).toMatchObject({ C: "08P01", M: "invalid CLOSE message subtype 88" });
    expect(c.messages().map((m) => m.type)).not.toContain("3");
  });

  it("never forwards a Sync longer than Postgres reads (it would drop the backend)", async () => {
    const lostBefore = await serversLost(trust);
    const c = await loggedIn();
    // The Sync is refused: the Parse before it may reach a backend, the Sync never does.
    const parse = frame("P", Buffer.concat([z(""), z("SELECT 1"), i16(0)]));
    c.write(Buffer.concat([parse, frame("S", Buffer.alloc(20_000))]));
    const e = await fatalThenClose(c);
    expect(e).toMatchObject({ C: "08P01", M: "invalid message length" });
    expect(await serversLost(trust)).toBe(lostBefore);
    await stillFine(trust);
  });

  it("refuses 20 unauthenticated 8 MB messages at their header; RSS stays flat", async () => {
    const payload = Buffer.alloc(8 * 1024 * 1024, 0x61);
    const peakBefore = rssKb(scram.pid, "VmHWM");
    const clients = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const c = await RawClient.connect(scram.port);
        c.write(startupPacket(3, 0, { user: "hostile_junk", database: "postgres" }));
        await c.waitForType("R");
        return c;
      }),
    );
    const t0 = performance.now();
    for (const c of clients) {
      c.write(Buffer.concat([Buffer.from("p"), i32(payload.length + 4)]));
      c.write(payload);
    }
    const closed = await Promise.all(clients.map((c) => c.waitClosed(5000)));
    const seconds = (performance.now() - t0) / 1000;
    const grownMb = (rssKb(scram.pid, "VmHWM") - peakBefore) / 1024;
    for (const c of clients) c.destroy();
    console.log(
      `20 x 8 MB before login: closed in ${seconds.toFixed(2)} s, peak RSS +${grownMb.toFixed(1)} MB`,
    );
    expect(closed.every(Boolean)).toBe(true);
    for (const c of clients) {
      const e = errorFields(c.messages().find((m) => m.type === "E")?.body ?? Buffer.alloc(0));
      expect(e).toMatchObject({ S: "FATAL", C: "08P01" });
      expect(e.M).toContain("exceeds the limit for authentication messages (1024)");
    }
    expect(seconds).toBeLessThan(3);
    expect(grownMb).toBeLessThan(16);
    await stillFine(scram);
  });

  describe("SCRAM messages are read as Postgres reads them", () => {
    /** A client that has sent its StartupMessage and got AuthenticationSASL. */
    async function saslStarted(): Promise<RawClient> {
      const c = await RawClient.connect(scram.port);
      c.write(startupPacket(3, 0, { user: "hostile_junk", database: "postgres" }));
      const r = await c.waitForType("R");
      expect(r?.body.readInt32BE(0)).toBe(10);
      return c;
    }
    const initial = (mechanism: string, length: number, data: Buffer) =>
      frame("p", Buffer.concat([z(mechanism), i32(length), data]));
    const clientFirst = Buffer.from("n,,n=,r=abcdefghijklmnopqrstuv");

    for (const length of [1000, 0x7fffffff]) {
      it(`refuses a SASLInitialResponse whose data length says ${length} in a short message`, async () => {
        const c = await saslStarted();
        c.write(initial("SCRAM-SHA-256", length, clientFirst));
        const e = await fatalThenClose(c);
        expect(e).toMatchObject({ S: "FATAL", C: "08P01", M: "insufficient data left in message" });
        // No AuthenticationSASLContinue: the exchange never went on.
        expect(c.messages().filter((m) => m.type === "R")).toHaveLength(1);
      });
    }

    it("refuses data after the SASLInitialResponse's data", async () => {
      const c = await saslStarted();
      c.write(initial("SCRAM-SHA-256", clientFirst.length, Buffer.concat([clientFirst, z("x")])));
      const e = await fatalThenClose(c);
      expect(e).toMatchObject({ C: "08P01", M: "invalid message format" });
    });

    it("takes length -1 as no initial response: an empty challenge, then client-first", async () => {
      const c = await saslStarted();
      const s = new ScramClientExchange("junk pw");
      c.write(initial("SCRAM-SHA-256", -1, Buffer.alloc(0)));
      const empty = await c.waitFor((m) => m.filter((x) => x.type === "R").length >= 2);
      const cont = empty.filter((x) => x.type === "R")[1].body;
      expect(cont.readInt32BE(0)).toBe(11);
      expect(cont.length).toBe(4); // AuthenticationSASLContinue with no data
      c.write(frame("p", s.clientFirst()));
      const first = await c.waitFor((m) => m.filter((x) => x.type === "R").length >= 3);
      const serverFirst = first.filter((x) => x.type === "R")[2].body.toString("utf8", 4);
      c.write(frame("p", await s.serverFirst(serverFirst)));
      const z = await c.waitForType("Z");
      c.destroy();
      expect(z?.body.toString()).toBe("I");
      expect(c.messages().some((m: WireMessage) => m.type === "E")).toBe(false);
    });

    it("answers a StartupMessage sent in the middle of SCRAM at once", async () => {
      const c = await saslStarted();
      c.write(initial("SCRAM-SHA-256", clientFirst.length, clientFirst));
      await c.waitFor((m) => m.filter((x) => x.type === "R").length >= 2);
      const t0 = performance.now();
      c.write(startupPacket(3, 0, { user: "hostile_junk", database: "postgres" }));
      const e = await fatalThenClose(c);
      expect(performance.now() - t0).toBeLessThan(1000);
      expect(e).toMatchObject({
        S: "FATAL",
        C: "08P01",
        M: "expected SASL response, got message type 0",
      });
    });

    it("refuses a SASL message longer than Postgres's 1024 bytes", async () => {
      const c = await saslStarted();
      const big = Buffer.from(`n,,n=,r=${"a".repeat(1100)}`);
      c.write(initial("SCRAM-SHA-256", big.length, big));
      const e = await fatalThenClose(c);
      expect(e).toMatchObject({ S: "FATAL", C: "08P01" });
    });

    it("still logs in a well-behaved client after all of that", async () => {
      await stillFine(scram);
    });
  });
});
