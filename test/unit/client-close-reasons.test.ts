// Every client close carries the reason of the code path that closed it (the log field and the
// pgsidecar_client_connections_closed_total label), never one guessed from a SQLSTATE.
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { CancelRegistry } from "../../src/frontend/cancel.js";
import type { KnownUser } from "../../src/frontend/client-auth.js";
import { ClientSession, type SessionContext } from "../../src/frontend/client-session.js";
import { silentLogger } from "../../src/log.js";
import { Metrics } from "../../src/metrics.js";
import type { ClientCloseReason } from "../../src/reasons.js";
import { until } from "../helpers/until.js";
import { cancelPacket, errorFields, frame, RawClient, startupPacket } from "../helpers/wire.js";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

interface Harness {
  port: number;
  sessions: ClientSession[];
  closed: ClientCloseReason[];
}

/**
 * Sessions behind a listening socket, with no pool: the admin console (database `pgsidecar`)
 * logs in without a server, any other database does not exist.
 */
async function start(overrides: Partial<SessionContext> = {}): Promise<Harness> {
  const h: Harness = { port: 0, sessions: [], closed: [] };
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
    findUser: (name) => ({ name, password: "secret", admin: true }) as unknown as KnownUser,
    route: () => null,
    openAdmin: () => true,
    adminQuery: () => [],
    sessionClosed: (_s, reason) => h.closed.push(reason),
    events: {
      clientError() {},
      replay() {},
      pinned() {},
      statement() {},
      unitDone() {},
      bytes() {},
      internalError() {},
    },
    ...overrides,
  };
  const server = net.createServer((socket) => h.sessions.push(new ClientSession(socket, ctx)));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => server.close());
  h.port = (server.address() as net.AddressInfo).port;
  return h;
}

async function connect(h: Harness, database = "pgsidecar"): Promise<RawClient> {
  const c = await RawClient.connect(h.port);
  cleanups.push(() => c.destroy());
  c.write(startupPacket(3, 0, { user: "admin", database }));
  return c;
}

async function loggedIn(h: Harness): Promise<RawClient> {
  const c = await connect(h);
  expect(await c.waitForType("Z")).toBeDefined();
  return c;
}

/** The FATAL's SQLSTATE the client got before the close. */
function fatalCode(c: RawClient): string | undefined {
  const e = c.messages().find((m) => m.type === "E");
  return e && errorFields(e.body).C;
}

describe("client close reasons", () => {
  it("Terminate is client_exit; a socket closed without it is client_gone", async () => {
    const h = await start();
    const a = await loggedIn(h);
    a.write(frame("X"));
    expect(await a.waitClosed(3000)).toBe(true);
    const b = await loggedIn(h);
    b.destroy();
    await until("both closes", () => h.closed.length === 2);
    expect(h.closed).toEqual(["client_exit", "client_gone"]);
  });

  it("a CancelRequest connection is cancel_request", async () => {
    const h = await start();
    const c = await RawClient.connect(h.port);
    cleanups.push(() => c.destroy());
    c.write(cancelPacket(1, Buffer.alloc(4)));
    expect(await c.waitClosed(3000)).toBe(true);
    await until("the close", () => h.closed.length === 1);
    expect(h.closed).toEqual(["cancel_request"]);
  });

  it("a login while draining is shutdown (57P01), not login_failed", async () => {
    const h = await start({ draining: true });
    const c = await connect(h);
    expect(await c.waitClosed(3000)).toBe(true);
    expect(fatalCode(c)).toBe("57P01");
    expect(h.closed).toEqual(["shutdown"]);
  });

  it("a wrong password and an unknown database are login_failed", async () => {
    const h = await start({ authType: "password" });
    const c = await connect(h);
    await c.waitForType("R");
    c.write(frame("p", "wrong\0"));
    expect(await c.waitClosed(3000)).toBe(true);
    expect(fatalCode(c)).toBe("28P01");
    const trusted = await start();
    const d = await connect(trusted, "nowhere");
    expect(await d.waitClosed(3000)).toBe(true);
    expect(fatalCode(d)).toBe("3D000");
    expect([...h.closed, ...trusted.closed]).toEqual(["login_failed", "login_failed"]);
  });

  it("client_login_timeout is login_timeout, before and after the StartupMessage", async () => {
    const h = await start({ authType: "password", loginTimeoutMs: 50 });
    const silent = await RawClient.connect(h.port);
    cleanups.push(() => silent.destroy());
    const midAuth = await connect(h);
    expect(await silent.waitClosed(3000)).toBe(true);
    expect(await midAuth.waitClosed(3000)).toBe(true);
    expect(h.closed).toEqual(["login_timeout", "login_timeout"]);
  });

  it("client_idle_timeout is idle_timeout (57P05), not protocol_error", async () => {
    const h = await start();
    const c = await loggedIn(h);
    h.sessions[0].closeIfIdleFor(1000, Date.now() + 5000);
    expect(await c.waitClosed(3000)).toBe(true);
    expect(fatalCode(c)).toBe("57P05");
    expect(h.closed).toEqual(["idle_timeout"]);
  });

  it("a malformed startup packet and a message out of turn are protocol_error", async () => {
    const h = await start({ authType: "password" });
    const c = await RawClient.connect(h.port);
    cleanups.push(() => c.destroy());
    c.write(startupPacket(3, 0, { database: "pgsidecar" })); // no user
    expect(await c.waitClosed(3000)).toBe(true);
    const d = await connect(h);
    await d.waitForType("R");
    d.write(frame("Q", "SELECT 1\0"));
    expect(await d.waitClosed(3000)).toBe(true);
    expect(fatalCode(d)).toBe("08P01");
    expect(h.closed).toEqual(["protocol_error", "protocol_error"]);
  });
});

describe("pgsidecar_client_connections_closed_total", () => {
  it("exports every reason from 0, and counts by reason", async () => {
    const metrics = new Metrics(
      () => [],
      () => 0,
    );
    metrics.clientsClosed.inc({ reason: "client_exit" });
    const text = await metrics.registry.metrics();
    expect(text).toContain('pgsidecar_client_connections_closed_total{reason="client_exit"} 1');
    expect(text).toContain('pgsidecar_client_connections_closed_total{reason="idle_timeout"} 0');
  });
});
