// BackendConnection.cancel(stillWanted): the CancelRequest goes out only if, once its connection
// is open, the reason for it still holds. The listening end is a plain TCP sink that records what
// arrives: what matters here is whether the packet was sent, not what a server does with it.
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackendConnection } from "../../src/backend/backend-connection.js";
import { loopbackBackend } from "../helpers/backend-options.js";
import { until } from "../helpers/until.js";

/** Bytes each accepted connection carried, by the time it closed. */
let arrived: Promise<Buffer>[] = [];
let sink: net.Server;
let port = 0;

beforeAll(async () => {
  sink = net.createServer((sock) => {
    const chunks: Buffer[] = [];
    arrived.push(
      new Promise((resolve) => {
        sock.on("data", (c: Buffer) => chunks.push(c));
        sock.on("error", () => {});
        sock.on("close", () => resolve(Buffer.concat(chunks)));
      }),
    );
  });
  await new Promise<void>((resolve) => sink.listen(0, "127.0.0.1", resolve));
  port = (sink.address() as net.AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => sink.close(() => resolve())));

/** A connection that has its server's key (as after BackendKeyData), never logged in here. */
function connectionWithKey(): BackendConnection {
  const conn = new BackendConnection(loopbackBackend(port, { connectTimeoutMs: 1000 }));
  conn.pid = 4242;
  conn.secret = Buffer.from([1, 2, 3, 4]);
  return conn;
}

async function nextArrival(): Promise<Buffer> {
  // Bounded as the test itself is (vitest's 5 s).
  await until("a connection to the fake server", () => arrived.length > 0, 5000, 5);
  const bytes = await (arrived.shift() as Promise<Buffer>);
  arrived = [];
  return bytes;
}

describe("BackendConnection.cancel", () => {
  it("sends the CancelRequest with the server's key when it is still wanted", async () => {
    connectionWithKey().cancel(() => true);
    const bytes = await nextArrival();
    expect(bytes.length).toBe(16);
    expect(bytes.readInt32BE(0)).toBe(16);
    expect(bytes.readInt32BE(4)).toBe(80877102);
    expect(bytes.readInt32BE(8)).toBe(4242);
    expect([...bytes.subarray(12)]).toEqual([1, 2, 3, 4]);
  });

  it("drops the CancelRequest when the unit ended while its connection was opening", async () => {
    let stillMine = true;
    connectionWithKey().cancel(() => stillMine);
    // The unit finished and the lease went back (to be handed to another client) before the
    // cancel connection was open: the check runs when the packet would be written, not now.
    stillMine = false;
    const bytes = await nextArrival();
    expect(bytes.length).toBe(0);
  });

  it("sends unconditionally without a check (a server about to be closed)", async () => {
    connectionWithKey().cancel();
    expect((await nextArrival()).length).toBe(16);
  });
});
