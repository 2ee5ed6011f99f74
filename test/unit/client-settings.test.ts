// ClientSettings: clients that log in to the same values share one frozen record of them (an idle
// client holds no settings of its own); each client's changes stay its own (copy on write).
import { describe, expect, it } from "vitest";
import type { BackendConnection } from "../../src/backend/backend-connection.js";
import { ServerSession } from "../../src/backend/server-session.js";
import { CancelRegistry, newCancelSecret, secretBytes } from "../../src/frontend/cancel.js";
import { ClientSettings } from "../../src/frontend/client-settings.js";

const SERVER = new Map([
  ["server_version", "15.4"],
  ["TimeZone", "UTC"],
  ["DateStyle", "ISO, MDY"],
  ["application_name", ""],
]);
const NO_EXTRA: ReadonlySet<string> = new Set();

/**
 * A server's session as we track it (the real ServerSession) with the parameters it reported;
 * report() records a ParameterStatus as BackendConnection does.
 */
class StubServer extends ServerSession {
  readonly params: Map<string, string>;
  constructor(params: ReadonlyMap<string, string>) {
    super(0, null);
    this.params = new Map(params);
  }
  report(name: string, value: string): void {
    this.params.set(name, value);
    this.settingsChanged();
  }
}

function stubServer(params: ReadonlyMap<string, string> = SERVER): BackendConnection & StubServer {
  return new StubServer(params) as BackendConnection & StubServer;
}

function loggedIn(startup: Record<string, string> = {}): ClientSettings {
  const s = new ClientSettings();
  for (const [k, v] of Object.entries(startup)) s.set(k.toLowerCase(), { name: k, value: v });
  s.loggedIn(SERVER, NO_EXTRA);
  return s;
}

describe("ClientSettings", () => {
  it("reports the server's parameters with the client's own values winning", () => {
    const s = new ClientSettings();
    s.set("application_name", { name: "application_name", value: "app" });
    const told = s.loggedIn(SERVER, NO_EXTRA);
    expect(Object.fromEntries(told)).toEqual({
      server_version: "15.4",
      TimeZone: "UTC",
      DateStyle: "ISO, MDY",
      application_name: "app",
    });
  });

  it("a client's SET, server report or RESET changes its settings only", () => {
    const a = loggedIn({ statement_timeout: "5s" });
    const b = loggedIn({ statement_timeout: "5s" });
    a.hold({ set: { name: "search_path", sql: "SET search_path = x" } });
    a.commitPending(stubServer());
    a.serverReported("TimeZone", "Europe/Paris", false, NO_EXTRA);
    expect(a.get("search_path")?.sql).toBe("SET search_path = x");
    expect(a.get("timezone")?.value).toBe("Europe/Paris");
    expect(b.get("search_path")).toBeUndefined();
    expect(b.get("timezone")?.value).toBe("UTC");
    expect(b.sqlFor(stubServer())).toBe(
      "SELECT pg_catalog.set_config('statement_timeout', '5s', false);",
    );
    // A third client logging in to the same values gets them as login left them.
    const c = loggedIn({ statement_timeout: "5s" });
    expect(c.get("timezone")?.value).toBe("UTC");
    expect(c.get("search_path")).toBeUndefined();
    // RESET ALL goes back to what login established; b and c saw nothing of it.
    a.resetAll();
    expect(a.get("search_path")).toBeUndefined();
    expect(a.get("timezone")?.value).toBe("UTC");
    expect(a.get("statement_timeout")?.value).toBe("5s");
    // RESET of one parameter set at login puts the login value back.
    b.hold({ set: { name: "statement_timeout", sql: "SET statement_timeout = 1" } });
    b.commitPending(stubServer());
    expect(b.get("statement_timeout")?.value).toBe("SET statement_timeout = 1");
    expect(c.get("statement_timeout")?.value).toBe("5s");
    b.hold({ reset: "statement_timeout" });
    b.commitPending(stubServer());
    expect(b.get("statement_timeout")?.value).toBe("5s");
  });

  it("DISCARD ALL tells the client of each reported parameter it changes back", () => {
    const a = loggedIn();
    const b = loggedIn();
    a.serverReported("TimeZone", "Asia/Tokyo", false, NO_EXTRA);
    const told: string[] = [];
    a.discardAll((name, value) => told.push(`${name}=${value}`));
    expect(told).toEqual(["TimeZone=UTC"]);
    const none: string[] = [];
    b.discardAll((name, value) => none.push(`${name}=${value}`));
    expect(none).toEqual([]);
  });

  it("a report during our own SET adopts the value and tells the client when its view changed", () => {
    const a = loggedIn({ TimeZone: "Europe/Berlin" });
    const b = loggedIn({ TimeZone: "Europe/Berlin" });
    expect(a.serverReported("TimeZone", "Europe/Berlin", true, NO_EXTRA)).toBe(false);
    expect(a.serverReported("TimeZone", "CET", true, NO_EXTRA)).toBe(true);
    expect(a.get("timezone")?.value).toBe("CET");
    expect(b.get("timezone")?.value).toBe("Europe/Berlin");
  });

  it("a server found to match a shared record is checked again once our record of it changes", () => {
    const a = loggedIn({ statement_timeout: "5s" });
    const b = loggedIn({ statement_timeout: "5s" });
    const server = stubServer();
    const setTimeout5s = "SELECT pg_catalog.set_config('statement_timeout', '5s', false);";
    expect(a.sqlFor(server)).toBe(setTimeout5s);
    expect(a.sqlFor(server)).toBe("");
    expect(b.sqlFor(server)).toBe(""); // same frozen record: remembered
    // Another client's session changed the server's time zone: it reported the new value.
    server.report("TimeZone", "Asia/Tokyo");
    expect(a.sqlFor(server)).toBe("SELECT pg_catalog.set_config('TimeZone', 'UTC', false);");
    server.report("TimeZone", "UTC");
    expect(b.sqlFor(server)).toBe("");
    // A setting recorded (another client's SET) or forgotten (a reset) is checked again too.
    server.recordSetting("statement_timeout", "SET statement_timeout = 1");
    expect(b.sqlFor(server)).toBe(setTimeout5s);
    server.forgetSettings();
    expect(a.sqlFor(server)).toBe(setTimeout5s);
    server.resetDone("DISCARD ALL");
    expect(a.sqlFor(server)).toBe(setTimeout5s);
    // A client with a setting of its own is never served from the remembered match.
    expect(b.sqlFor(server)).toBe("");
    b.hold({ set: { name: "search_path", sql: "SET search_path = x" } });
    b.commitPending(stubServer());
    expect(b.sqlFor(server)).toBe("SET search_path = x;");
    expect(a.sqlFor(server)).toBe("RESET search_path;");
  });
});

describe("cancel keys", () => {
  it("matches a 4-byte secret kept as a number and a 32-byte one kept as bytes", () => {
    const registry = new CancelRegistry();
    let cancelled = 0;
    for (const bytes of [4, 32]) {
      const target = { cancelSecret: newCancelSecret(bytes), cancelCurrent: () => cancelled++ };
      const pid = registry.issue(target);
      expect(pid).toBeGreaterThan(0);
      expect(pid).toBeLessThan(2 ** 30);
      const secret = secretBytes(target.cancelSecret);
      expect(secret.length).toBe(bytes);
      const wrong = Buffer.from(secret);
      wrong[bytes - 1] ^= 1;
      expect(registry.cancel(pid, wrong)).toBe(false);
      expect(registry.cancel(pid, secret.subarray(0, 3))).toBe(false);
      expect(registry.cancel(pid, secret)).toBe(true);
      registry.release(pid);
      expect(registry.cancel(pid, secret)).toBe(false);
    }
    expect(cancelled).toBe(2);
  });
});
