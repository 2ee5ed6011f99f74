// A client that pipelines queries behind its login while the login still waits on a server: the
// pool's first login, or the client's startup settings (`options -c ...`, statement_timeout ...)
// being tried on a server before ReadyForQuery. What it sent must run once, after its login, on
// one server, and no server may be left leased to nobody.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { until } from "../helpers/until.js";
import { queryFrame, RawClient, startupPacket, type WireMessage } from "../helpers/wire.js";

const POOL_SIZE = 2;

describe("queries pipelined behind a login", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;

  beforeAll(async () => {
    cluster = await sharedCluster();
    proxy = await startProxy(cluster, { pool_size: POOL_SIZE, auth_type: "trust" });
    // A server is idle in the pool: a login's checkout is then answered at once.
    const c = new pg.Client(proxy.pgConfig());
    await c.connect();
    await c.query("SELECT 1");
    await c.end();
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  const pool = () => {
    const p = proxy.proxy.snapshot().find((s) => s.database === "postgres");
    if (!p) throw new Error("no pool");
    return p;
  };

  /** Every server back in the pool, none active, within the pool size. */
  async function noServerLeaked(): Promise<void> {
    await until(
      () => `no active server or client, saw ${JSON.stringify(pool())}`,
      () => pool().active === 0 && pool().clientsActive === 0,
      5000,
    );
    const p = pool();
    expect(p.active).toBe(0);
    expect(p.idle + p.connecting + p.checking).toBeLessThanOrEqual(POOL_SIZE);
    // And the whole pool still serves: POOL_SIZE clients each hold a server at once.
    const clients = await Promise.all(
      Array.from({ length: POOL_SIZE }, async () => {
        const c = new pg.Client(proxy.pgConfig());
        await c.connect();
        await c.query("BEGIN");
        await c.query("SELECT 1");
        return c;
      }),
    );
    for (const c of clients) {
      await c.query("COMMIT");
      await c.end();
    }
  }

  const types = (msgs: WireMessage[]) => msgs.map((m) => m.type).join("");

  /** The messages after login (AuthenticationOk ... ReadyForQuery) until `rfq` more ReadyForQuery. */
  function afterLogin(msgs: WireMessage[]): WireMessage[] {
    const first = msgs.findIndex((m) => m.type === "Z");
    return first < 0 ? [] : msgs.slice(first + 1);
  }

  async function pipelined(opts: { split: boolean; settings: boolean }): Promise<void> {
    const c = await RawClient.connect(proxy.port);
    try {
      const params: Record<string, string> = { user: cluster.superuser, database: "postgres" };
      if (opts.settings) params.options = "-c search_path=pg_catalog,public";
      const startup = startupPacket(3, 0, params);
      const q1 = queryFrame("SELECT current_setting('search_path') AS sp");
      const q2 = queryFrame("SELECT 2 AS two");
      if (opts.split) {
        // The StartupMessage alone (its login starts a checkout), then the queries in their own
        // writes while that login waits.
        c.write(startup);
        await new Promise((r) => setImmediate(r));
        c.write(q1);
        c.write(q2);
      } else {
        c.write(Buffer.concat([startup, q1, q2]));
      }
      const msgs = await c.waitFor(
        (m) => afterLogin(m).filter((x) => x.type === "Z").length >= 2,
        10_000,
      );
      const after = afterLogin(msgs);
      expect(types(msgs).startsWith("R"), types(msgs)).toBe(true);
      expect(types(after), types(msgs)).toBe("TDCZTDCZ");
      const rows = after.filter((m) => m.type === "D").map((m) => m.body.toString("utf8", 6));
      expect(rows[0]).toBe(opts.settings ? "pg_catalog,public" : '"$user", public');
      expect(rows[1]).toBe("2");
      // Nothing more comes (a second server answering the same frames would).
      await new Promise((r) => setTimeout(r, 200));
      expect(types(afterLogin(c.messages()))).toBe("TDCZTDCZ");
    } finally {
      c.destroy();
    }
    await noServerLeaked();
  }

  it("startup settings tried on a server, queries in the StartupMessage's packet", async () => {
    for (let i = 0; i < 5; i++) await pipelined({ split: false, settings: true });
  });

  it("startup settings tried on a server, queries in writes of their own", async () => {
    for (let i = 0; i < 5; i++) await pipelined({ split: true, settings: true });
  });

  it("no startup settings, queries pipelined", async () => {
    for (let i = 0; i < 3; i++) {
      await pipelined({ split: false, settings: false });
      await pipelined({ split: true, settings: false });
    }
  });

  it("a list-valued startup setting is read as Postgres reads it, on every server", async () => {
    const c = new pg.Client({ ...proxy.pgConfig(), options: "-c search_path=pg_catalog,public" });
    await c.connect();
    const direct = new pg.Client({
      host: "127.0.0.1",
      port: cluster.port,
      user: cluster.superuser,
      password: cluster.password,
      database: "postgres",
      options: "-c search_path=pg_catalog,public",
    });
    await direct.connect();
    const holder = new pg.Client(proxy.pgConfig());
    await holder.connect();
    try {
      const want = (await direct.query("SHOW search_path")).rows[0].search_path;
      expect(want).toBe("pg_catalog,public"); // as given, a list of two schemas
      // Each of the pool's two servers in turn, the other one held in a transaction.
      const seen = new Set<number>();
      for (let i = 0; i < 2; i++) {
        await holder.query("BEGIN");
        await holder.query("SELECT 1");
        const r = await c.query(
          "SELECT current_setting('search_path') AS sp, current_schemas(false)::text AS schemas, pg_backend_pid() AS pid",
        );
        expect(r.rows[0].sp).toBe(want);
        expect(r.rows[0].schemas).toBe("{pg_catalog,public}");
        seen.add(r.rows[0].pid);
        await holder.query("COMMIT");
        // The holder takes the server the client just used.
        await c.query("BEGIN");
        await holder.query("SELECT 1");
        await c.query("COMMIT");
      }
    } finally {
      await holder.end();
      await c.end();
      await direct.end();
    }
    await noServerLeaked();
  });

  it("a client that leaves while its startup settings are tried leaks no server", async () => {
    for (let i = 0; i < 5; i++) {
      const c = await RawClient.connect(proxy.port);
      c.write(
        Buffer.concat([
          startupPacket(3, 0, {
            user: cluster.superuser,
            database: "postgres",
            options: "-c search_path=pg_catalog",
          }),
          queryFrame("SELECT pg_sleep(0.05)"),
        ]),
      );
      await new Promise((r) => setImmediate(r));
      c.destroy();
    }
    await noServerLeaked();
  });
});
