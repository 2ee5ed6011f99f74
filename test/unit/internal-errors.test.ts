// The last resort: a bug met inside a socket 'data' handler closes that one connection and nothing
// else. A client gets FATAL XX000 and is counted; a server connection is destroyed with a reason.
// The bugs are planted through the objects each side calls (a route lookup, a listener) that throw.
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { BackendConnection, type BackendListener } from "../../src/backend/backend-connection.js";
import { CancelRegistry } from "../../src/frontend/cancel.js";
import type { KnownUser } from "../../src/frontend/client-auth.js";
import { ClientSession, type SessionContext } from "../../src/frontend/client-session.js";
import { silentLogger } from "../../src/log.js";
import { Metrics } from "../../src/metrics.js";
import { BackendCode } from "../../src/protocol/codes.js";
import * as msg from "../../src/protocol/messages.js";
import { loopbackBackend } from "../helpers/backend-options.js";
import { until } from "../helpers/until.js";
import { errorFields, RawClient, startupPacket } from "../helpers/wire.js";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A listening socket whose accepted connections are handed to `onSocket`. */
async function listen(onSocket: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer(onSocket);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

describe("a bug in the client's data handler", () => {
  it("closes only that client with FATAL XX000 and counts it", async () => {
    let internalErrors = 0;
    const closed: ClientSession[] = [];
    const ctx: SessionContext = {
      log: silentLogger,
      cancels: new CancelRegistry(),
      authType: "trust",
      loginTimeoutMs: 10_000,
      maxMessageBytes: 1 << 20,
      maxPreparedStatements: 0,
      trackExtraParameters: new Set(),
      tls: null,
      draining: false,
      findUser: (name) => ({ name, password: "", admin: false }) as unknown as KnownUser,
      route: () => {
        throw new TypeError("planted bug");
      },
      sessionClosed: (s) => closed.push(s),
      events: {
        clientError() {},
        replay() {},
        pinned() {},
        statement() {},
        unitDone() {},
        bytes() {},
        internalError: () => {
          internalErrors++;
        },
      },
    };
    const port = await listen((socket) => new ClientSession(socket, ctx));
    const c = await RawClient.connect(port);
    cleanups.push(() => c.destroy());
    // Trust logs in at once; routing the login throws inside the 'data' handler.
    c.write(startupPacket(3, 0, { user: "app", database: "app" }));
    expect(await c.waitClosed(3000)).toBe(true);
    const errors = c.messages().filter((m) => m.type === "E");
    expect(errors).toHaveLength(1);
    expect(errorFields(errors[0].body)).toMatchObject({
      S: "FATAL",
      C: "XX000",
      M: "internal error in pgsidecar",
    });
    expect(internalErrors).toBe(1);
    expect(closed).toHaveLength(1);
    // The process is still here, and so is the listener: the next client gets the same answer.
    const d = await RawClient.connect(port);
    cleanups.push(() => d.destroy());
    d.write(startupPacket(3, 0, { user: "app", database: "app" }));
    expect(await d.waitClosed(3000)).toBe(true);
    expect(internalErrors).toBe(2);
  });
});

describe("a bug in a server connection's data handler", () => {
  it("destroys only that connection, with a reason, and tells its listener", async () => {
    let serverSocket: net.Socket | null = null;
    const port = await listen((s) => {
      serverSocket = s;
      s.on("error", () => {});
      // Any startup: log in at once.
      s.once("data", () => s.write(Buffer.concat([msg.authenticationOk, msg.readyForQueryIdle])));
    });
    const conn = new BackendConnection(loopbackBackend(port));
    await conn.connect();
    const lost: string[] = [];
    const listener: BackendListener = {
      forward() {},
      forwardAsync() {
        throw new TypeError("planted bug");
      },
      insert() {},
      chunkEnd() {},
      ready() {},
      lost: (reason) => lost.push(reason),
    };
    conn.listener = listener;
    // A NoticeResponse is passed to forwardAsync, which throws inside the socket's 'data' handler.
    const notice = msg.errorResponse({ severity: "NOTICE", code: "00000", message: "hello" });
    notice[0] = BackendCode.NoticeResponse;
    (serverSocket as unknown as net.Socket).write(notice);
    await until("the connection to close", () => conn.isClosed, 3000, 10);
    expect(conn.isClosed).toBe(true);
    expect(conn.internalError?.message).toBe("planted bug");
    expect(conn.closeReason).toBe("protocol_error");
    expect(lost).toEqual(["protocol_error"]);
  });
});

describe("pgsidecar_internal_errors_total", () => {
  it("is exported by side", async () => {
    const metrics = new Metrics(
      () => [],
      () => 0,
    );
    metrics.internalErrors.client += 2;
    metrics.internalErrors.server += 1;
    const text = await metrics.registry.metrics();
    expect(text).toContain('pgsidecar_internal_errors_total{side="client"} 2');
    expect(text).toContain('pgsidecar_internal_errors_total{side="server"} 1');
  });
});
