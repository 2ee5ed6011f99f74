// Pool with stub servers and fake timers: checkout and waiters, query_wait_timeout, server_lifetime,
// idle timeouts, connect backoff, checks, and every way a server comes back (clean, reset, destroy).
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { StaticPassword } from "../../src/auth/upstream-password.js";
import { BackendConnection, type BackendOptions } from "../../src/backend/backend-connection.js";
import { Action } from "../../src/backend/expected-responses.js";
import {
  type CheckoutCallback,
  Pool,
  type PoolEvents,
  type PoolSettings,
} from "../../src/backend/pool.js";
import { Upstream } from "../../src/backend/upstream.js";
import { type DisconnectReason, ProxyError, ServerError } from "../../src/errors.js";
import { silentLogger } from "../../src/log.js";
import { FrontendCode, TxStatus } from "../../src/protocol/codes.js";
import { loopbackBackend } from "../helpers/backend-options.js";

/** A backend message: code, length, body. */
function message(code: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b[0] = code.charCodeAt(0);
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}

/** A BackendConnection without a socket: logs in from canned messages, records what is written. */
class StubServer extends BackendConnection {
  readonly writes: string[] = [];
  cancels = 0;
  constructor(
    options: BackendOptions,
    private readonly outcome: Error | null,
  ) {
    super(options);
  }
  override connect(): Promise<void> {
    if (this.outcome) return Promise.reject(this.outcome);
    const int32 = (n: number) =>
      Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
    for (const m of [
      message("R", int32(0)),
      message("K", Buffer.concat([int32(this.id), int32(7)])),
      message("Z", Buffer.from("I")),
    ])
      this.onMessage(m[0], m, 0, m.length);
    return Promise.resolve();
  }
  /** The SQL of each Query written (the empty query as ""). */
  override write(bytes: Buffer): boolean {
    this.writes.push(bytes.toString("utf8", 5, bytes.length - 1));
    return true;
  }
  override cancel(): void {
    this.cancels++;
  }
  /** The server finishes what it was sent: ReadyForQuery with `status`. */
  answer(status: number = TxStatus.Idle): void {
    this.lastReceivedAt = Date.now();
    const z = message("Z", Buffer.from([status]));
    this.onMessage(z[0], z, 0, z.length);
  }
}

const SETTINGS: PoolSettings = {
  poolSize: 2,
  minPoolSize: 0,
  queryWaitTimeoutMs: 1000,
  connectTimeoutMs: 1000,
  checkDelayMs: 30_000,
  checkTimeoutMs: 500,
  checkQuery: "",
  lifetimeMs: 0,
  idleTimeoutMs: 0,
  poolIdleTimeoutMs: 0,
  resetQuery: "DISCARD ALL",
  resetTimeoutMs: 500,
  keepalive: { idleMs: 30_000, intervalMs: 10_000, count: 3 },
  maxPreparedStatements: 10,
  responseTimeoutMs: 0,
};

interface Harness {
  pool: Pool;
  servers: StubServer[];
  /** Errors the next connects fail with (then they succeed). */
  failures: Error[];
  closed: Array<[number, DisconnectReason]>;
  connectFailed: string[];
  /** Checks out; the result lands in the returned object. */
  checkout(): { conn: StubServer | null; err: Error | null; done: boolean };
}

function harness(over: Partial<PoolSettings> = {}): Harness {
  const base = loopbackBackend(5432);
  const target = { ...base.target, hosts: [{ host: "stub", port: 5432, socketPath: "/stub" }] };
  const upstream = new Upstream(target, 100, 1000);
  const servers: StubServer[] = [];
  const failures: Error[] = [];
  const closed: Array<[number, DisconnectReason]> = [];
  const connectFailed: string[] = [];
  const events: PoolEvents = {
    serverOpened: () => {},
    serverClosed: (_p, conn, reason) => closed.push([conn.id, reason]),
    connectFailed: (_p, _err, reason) => connectFailed.push(reason),
    checkoutWaited: () => {},
    woke: () => {},
  };
  const pool = new Pool(
    "db",
    "app",
    new StaticPassword("pw"),
    upstream,
    { ...SETTINGS, ...over },
    silentLogger,
    events,
    (options) => {
      const s = new StubServer(options, failures.shift() ?? null);
      servers.push(s);
      return s;
    },
  );
  return {
    pool,
    servers,
    failures,
    closed,
    connectFailed,
    checkout() {
      const r = { conn: null as StubServer | null, err: null as Error | null, done: false };
      const cb: CheckoutCallback = (err, conn) => {
        Object.assign(r, { err, conn, done: true });
      };
      pool.checkout(cb);
      return r;
    },
  };
}

/** A harness with one server opened and checked out. */
async function leased(over: Partial<PoolSettings> = {}) {
  const h = harness(over);
  const a = h.checkout();
  await tick();
  return { h, conn: a.conn as StubServer };
}

/** Lets promise chains and due timers run (the clock moves by `ms`). */
const tick = (ms = 0) => vi.advanceTimersByTimeAsync(ms);

const refused = () => {
  const e = new ProxyError("connect_failed", "08006", "could not connect to server: ECONNREFUSED");
  e.cause = Object.assign(new Error("refused"), { code: "ECONNREFUSED" });
  return e;
};

describe("Pool", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  it("opens a server for the first checkout and hands the idle one (LIFO) to the next", async () => {
    const h = harness();
    const a = h.checkout();
    expect(a.done).toBe(false);
    expect(h.pool.size).toBe(1); // the slot is taken before the password and DNS
    await tick();
    expect(a.conn).toBe(h.servers[0]);
    expect(h.pool.stateOf(h.servers[0])).toBe("active");
    h.pool.giveBack(h.servers[0], "clean");
    expect(h.pool.stateOf(h.servers[0])).toBe("idle");
    const b = h.checkout();
    expect(b.conn).toBe(h.servers[0]);
    expect(h.servers).toHaveLength(1);
  });

  it("lends an idle server at once, without a waiter or timer, only when nobody waits ahead and no check is due", async () => {
    const { h, conn } = await leased({ poolSize: 1, checkDelayMs: 5_000 });
    h.pool.giveBack(conn, "clean");
    const timerStarts = vi.spyOn(globalThis, "setTimeout");
    let wait = h.pool.checkout(() => {});
    expect(wait.done).toBe(true); // answered before checkout() returned
    expect(timerStarts).not.toHaveBeenCalled(); // no query_wait_timeout timer was started
    expect(h.pool.stateOf(conn)).toBe("active");
    // With someone waiting, a server coming back goes to that waiter, never to a newcomer.
    const waiting = h.checkout();
    expect(waiting.done).toBe(false);
    h.pool.giveBack(conn, "clean");
    expect(waiting.conn).toBe(conn);
    // Past check_delay the idle server is checked first: the checkout waits for the check.
    h.pool.giveBack(conn, "clean");
    await tick(6_000);
    wait = h.pool.checkout(() => {});
    expect(wait.done).toBe(false);
    expect(h.pool.stateOf(conn)).toBe("checking");
    wait.cancel();
  });

  it("hands out the most recently used idle server first", async () => {
    const h = harness();
    const a = h.checkout();
    const b = h.checkout();
    await tick();
    h.pool.giveBack(a.conn as StubServer, "clean");
    await tick(10);
    h.pool.giveBack(b.conn as StubServer, "clean");
    expect(h.pool.idle).toEqual([a.conn, b.conn]);
    expect(h.checkout().conn).toBe(b.conn);
    expect(h.checkout().conn).toBe(a.conn);
  });

  it("serves waiters in arrival order once pool_size is reached", async () => {
    const h = harness({ poolSize: 1 });
    const first = h.checkout();
    const second = h.checkout();
    const third = h.checkout();
    await tick();
    expect(h.servers).toHaveLength(1);
    expect([first.done, second.done, third.done]).toEqual([true, false, false]);
    expect(h.pool.waiting).toBe(2);
    h.pool.giveBack(h.servers[0], "clean");
    expect([second.done, third.done]).toEqual([true, false]);
    expect(second.conn).toBe(h.servers[0]);
    h.pool.giveBack(h.servers[0], "clean");
    expect(third.conn).toBe(h.servers[0]);
  });

  it("answers a waiter 08006 after query_wait_timeout, and not before", async () => {
    const h = harness({ poolSize: 1, queryWaitTimeoutMs: 1000 });
    h.checkout();
    await tick();
    const late = h.checkout();
    await tick(999);
    expect(late.done).toBe(false);
    await tick(1);
    expect(late.done).toBe(true);
    expect(late.conn).toBeNull();
    expect((late.err as ProxyError).sqlstate).toBe("08006");
    expect(h.pool.waiting).toBe(0);
  });

  it("says 57P03 at query_wait_timeout while the server is starting up", async () => {
    const h = harness({ queryWaitTimeoutMs: 1000 });
    h.failures.push(
      new ServerError("FATAL", "57P03", "the database system is starting up", Buffer.alloc(0)),
    );
    for (let i = 0; i < 20; i++)
      h.failures.push(new ServerError("FATAL", "57P03", "starting", Buffer.alloc(0)));
    const w = h.checkout();
    await tick(1000);
    expect((w.err as ProxyError).sqlstate).toBe("57P03");
  });

  it("backs off after a failed connect: no new attempt before the delay, one after it", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0); // equal jitter at its floor: half the ceiling
    const h = harness({ queryWaitTimeoutMs: 10_000 });
    h.failures.push(refused(), refused());
    const w = h.checkout();
    await tick();
    expect(h.servers).toHaveLength(1);
    expect(h.connectFailed).toEqual(["refused"]);
    await tick(49); // first delay: 100 ms ceiling, 50 ms at the floor of the jitter
    expect(h.servers).toHaveLength(1);
    await tick(1);
    expect(h.servers).toHaveLength(2);
    await tick(99); // second delay: 200 ms ceiling, 100 ms
    expect(h.servers).toHaveLength(2);
    await tick(1);
    expect(h.servers).toHaveLength(3);
    expect(w.conn).toBe(h.servers[2]);
    expect(h.pool.upstream.state).toBe("up");
  });

  it("fails every waiter at once with a login the next attempt would repeat (28P01)", async () => {
    const h = harness();
    h.failures.push(
      new ServerError("FATAL", "28P01", "password authentication failed", Buffer.alloc(0)),
    );
    const a = h.checkout();
    const b = h.checkout();
    await tick();
    expect(h.connectFailed[0]).toBe("auth");
    expect((a.err as ServerError).sqlstate).toBe("28P01");
    expect((b.err as ServerError).sqlstate).toBe("28P01");
  });

  it("retires an idle server past server_lifetime at upkeep, and one given back past it", async () => {
    const h = harness({ lifetimeMs: 10_000 });
    const a = h.checkout();
    const b = h.checkout();
    await tick();
    h.pool.giveBack(a.conn as StubServer, "clean");
    await tick(9_000);
    h.pool.sweep();
    expect(h.pool.stateOf(a.conn as StubServer)).toBe("idle");
    await tick(1_001);
    h.pool.sweep();
    expect(h.pool.stateOf(a.conn as StubServer)).toBeNull();
    h.pool.giveBack(b.conn as StubServer, "clean");
    expect(h.closed.map(([, r]) => r)).toEqual(["lifetime", "lifetime"]);
  });

  it("closes servers idle past server_idle_timeout, keeping min_pool_size", async () => {
    const h = harness({ idleTimeoutMs: 5_000, minPoolSize: 1 });
    const a = h.checkout();
    const b = h.checkout();
    await tick();
    h.pool.giveBack(a.conn as StubServer, "clean");
    h.pool.giveBack(b.conn as StubServer, "clean");
    await tick(5_000);
    h.pool.sweep();
    expect(h.closed).toEqual([]);
    await tick(1);
    h.pool.sweep();
    expect(h.closed.map(([, r]) => r)).toEqual(["idle_timeout"]);
    expect(h.pool.idle).toHaveLength(1);
  });

  it("checks a server silent past server_check_delay before handing it out; SHOW SERVERS says checking", async () => {
    const h = harness({ checkDelayMs: 1_000, checkQuery: "SELECT 1" });
    const a = h.checkout();
    await tick();
    const conn = a.conn as StubServer;
    h.pool.giveBack(conn, "clean");
    await tick(1_001);
    const b = h.checkout();
    expect(b.done).toBe(false);
    expect(conn.writes).toEqual(["SELECT 1"]);
    expect(h.pool.stateOf(conn)).toBe("checking");
    expect([...h.pool.maintaining]).toEqual([conn]);
    conn.answer();
    expect(b.conn).toBe(conn);
    expect(h.pool.stateOf(conn)).toBe("active");
  });

  it("closes a server that does not answer its check in time and opens another for the waiter", async () => {
    const h = harness({ checkDelayMs: 1_000, checkTimeoutMs: 500 });
    const a = h.checkout();
    await tick();
    h.pool.giveBack(a.conn as StubServer, "clean");
    await tick(1_001);
    const b = h.checkout();
    await tick(499);
    expect(h.closed).toEqual([]);
    await tick(1);
    expect(h.closed).toEqual([[h.servers[0].id, "check_failed"]]);
    await tick();
    expect(b.conn).toBe(h.servers[1]);
  });

  describe("giveBack", () => {
    it("clean: a clean server goes idle without a word to it", async () => {
      const { h, conn } = await leased();
      h.pool.giveBack(conn, "clean");
      expect(conn.writes).toEqual([]);
      expect(h.pool.idle).toEqual([conn]);
    });

    it("clean: an open transaction is rolled back, then the server is idle", async () => {
      const { h, conn } = await leased();
      conn.txStatus = TxStatus.InTransaction;
      h.pool.giveBack(conn, "clean");
      expect(conn.writes).toEqual(["ROLLBACK"]);
      expect(h.pool.stateOf(conn)).toBe("checking");
      conn.answer();
      expect(h.pool.stateOf(conn)).toBe("idle");
    });

    it("clean: a pinned server gets server_reset_query, and our record of its session follows", async () => {
      const { h, conn } = await leased({ resetQuery: "DISCARD ALL" });
      conn.pin("temp_table");
      conn.recordSetting("search_path", "SET search_path = x");
      h.pool.giveBack(conn, "clean");
      expect(conn.writes).toEqual(["DISCARD ALL"]);
      expect(conn.pins.size).toBe(0);
      conn.answer();
      expect(conn.settings.size).toBe(0);
      expect(h.pool.stateOf(conn)).toBe("idle");
    });

    it("reset: server_reset_query runs after a session, then the server is idle", async () => {
      const { h, conn } = await leased({ resetQuery: "RESET ALL" });
      h.pool.giveBack(conn, "reset");
      expect(conn.writes).toEqual(["RESET ALL"]);
      conn.answer();
      expect(h.pool.idle).toEqual([conn]);
    });

    it("reset: a server that does not finish its reset in time is closed and replaced for min_pool_size", async () => {
      const h = harness({ resetTimeoutMs: 500, minPoolSize: 1 });
      const a = h.checkout();
      await tick();
      h.pool.giveBack(a.conn as StubServer, "reset");
      await tick(500);
      expect(h.closed).toEqual([[h.servers[0].id, "reset_failed"]]);
      await tick();
      expect(h.servers).toHaveLength(2);
      expect(h.pool.idle).toEqual([h.servers[1]]);
    });

    it("destroy: closed with its reason, a running statement cancelled, a replacement opened for a waiter", async () => {
      const h = harness({ poolSize: 1 });
      const a = h.checkout();
      const waiting = h.checkout();
      await tick();
      const conn = a.conn as StubServer;
      conn.expect(FrontendCode.Query, Action.Forward);
      h.pool.giveBack(conn, "destroy", "role_changed");
      expect(conn.cancels).toBe(1);
      expect(conn.isClosed).toBe(true);
      expect(h.closed).toEqual([[conn.id, "role_changed"]]);
      await tick();
      expect(waiting.conn).toBe(h.servers[1]);
    });

    it("clean: a server with unsynced extended-protocol work is destroyed (a Sync would commit it)", async () => {
      const { h, conn } = await leased();
      conn.trackClientFrame(FrontendCode.Parse);
      h.pool.giveBack(conn, "clean");
      expect(conn.writes).toEqual([]);
      expect(h.closed).toEqual([[conn.id, "client_gone"]]);
    });

    it("clean or reset: a server still owing replies (its client left mid-statement) is cancelled and destroyed", async () => {
      for (const how of ["clean", "reset"] as const) {
        const { h, conn } = await leased();
        conn.expect(FrontendCode.Query, Action.Forward);
        h.pool.giveBack(conn, how);
        expect(conn.cancels).toBe(1);
        expect(conn.writes).toEqual([]);
        expect(h.closed).toEqual([[conn.id, "client_gone"]]);
      }
    });

    it("clean or reset: a broken server is destroyed, never reused", async () => {
      const { h, conn } = await leased();
      conn.bad = true;
      h.pool.giveBack(conn, "clean");
      expect(conn.isClosed).toBe(true);
      expect(h.pool.idle).toEqual([]);
    });
  });
});
