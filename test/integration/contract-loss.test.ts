// The promise where a backend dies mid-conversation (DESIGN.md section 1): savepoints after a loss,
// pipelines with several Syncs, a COMMIT whose outcome is unknown, and pinned session state.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bind,
  errorFields,
  execute,
  login,
  parse,
  sync,
  type WireConn,
} from "../helpers/differential.js";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { until } from "../helpers/until.js";

describe("the promise when a backend dies mid-conversation", () => {
  let cluster: PgCluster;
  let proxy: TestProxy;

  beforeAll(async () => {
    cluster = await startCluster();
    await cluster.query(`
      CREATE TABLE sp (v text);
      CREATE TABLE pl (v int);
      CREATE TABLE cm (v int);
      CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$;
      CREATE CONSTRAINT TRIGGER cm_slow AFTER INSERT ON cm DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION slow();
      CREATE TABLE ac (v int);
      CREATE TRIGGER ac_slow AFTER INSERT ON ac FOR EACH ROW EXECUTE FUNCTION slow();
      CREATE ROLE tenant NOLOGIN;
      GRANT SELECT ON sp TO tenant;`);
    proxy = await startProxy(cluster, { pool_size: 4 });
  });
  afterAll(async () => {
    await proxy?.stop();
    await cluster?.destroy();
  });

  const connect = async () => {
    const c = new pg.Client(proxy.pgConfig());
    c.on("error", () => {}); // asserted where expected
    await c.connect();
    return c;
  };
  const backendPid = async (c: pg.Client) =>
    (await c.query("SELECT pg_backend_pid() AS p")).rows[0].p as number;
  /** After a SIGKILLed backend, Postgres restarts every backend (crash recovery). */
  const clusterRecovered = () =>
    until(
      "the cluster to recover",
      async () => {
        try {
          await cluster.query("SELECT 1");
          return true;
        } catch {
          return false;
        }
      },
      30_000,
    );
  /** pg_terminate_backend from outside, and waits until the server process is gone. */
  const terminate = async (pid: number) => {
    await cluster.query("SELECT pg_terminate_backend($1)", [pid]);
    await until("the backend to exit", async () => {
      const rows = await cluster.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", [pid]);
      return rows.length === 0;
    });
    await new Promise((r) => setTimeout(r, 100)); // the proxy reads the FATAL and the close
  };

  it("after a loss inside a transaction, ROLLBACK TO SAVEPOINT does not end it: only ROLLBACK does", async () => {
    const c = await connect();
    await c.query("BEGIN");
    await c.query("INSERT INTO sp VALUES ('a')");
    await c.query("SAVEPOINT s");
    await terminate(await backendPid(c));
    // The loss is news to the client: the first statement hears it as 08006.
    await expect(c.query("ROLLBACK TO SAVEPOINT s")).rejects.toMatchObject({ code: "08006" });
    await expect(c.query("INSERT INTO sp VALUES ('b')")).rejects.toMatchObject({ code: "25P02" });
    await expect(c.query("ROLLBACK TO SAVEPOINT s")).rejects.toMatchObject({ code: "25P02" });
    await expect(c.query("RELEASE SAVEPOINT s")).rejects.toMatchObject({ code: "25P02" });
    await expect(c.query("SAVEPOINT t")).rejects.toMatchObject({ code: "25P02" });
    // By the extended protocol too (a named statement, as node-postgres and psycopg prepare it).
    await expect(c.query({ name: "rts", text: "ROLLBACK TO SAVEPOINT s" })).rejects.toMatchObject({
      code: "25P02",
    });
    await expect(c.query({ name: "rtswork", text: "rollback work to s" })).rejects.toMatchObject({
      code: "25P02",
    });
    const r = await c.query("ROLLBACK");
    expect(r.command).toBe("ROLLBACK");
    await c.query("INSERT INTO sp VALUES ('c')");
    const rows = await cluster.query("SELECT v FROM sp ORDER BY v");
    expect(rows.map((x) => x.v)).toEqual(["c"]);
    await c.end();
  });

  it("COMMIT of a lost transaction gets what Postgres answers in an aborted one, once the loss was reported", async () => {
    const c = await connect();
    await c.query("BEGIN");
    await c.query("INSERT INTO sp VALUES ('x')");
    await terminate(await backendPid(c));
    await expect(c.query("SELECT 1")).rejects.toMatchObject({ code: "08006" });
    const r = await c.query("COMMIT");
    expect(r.command).toBe("ROLLBACK");
    expect((await c.query("SELECT 2 AS n")).rows[0].n).toBe(2);
    await c.end();
  });

  it("a pipeline with several Syncs: completed Syncs keep their replies, each owed Sync gets one error and one ReadyForQuery", async () => {
    const w: WireConn = await login({
      port: proxy.port,
      user: cluster.superuser,
      password: cluster.password,
      database: "postgres",
    });
    const base = w.messages.length;
    await w.write(
      Buffer.concat([
        parse("", "INSERT INTO pl VALUES (1)"),
        bind("", ""),
        execute(),
        sync(),
        parse("", "SELECT pg_terminate_backend(pg_backend_pid())"),
        bind("", ""),
        execute(),
        sync(),
        parse("", "INSERT INTO pl VALUES (3)"),
        bind("", ""),
        execute(),
        sync(),
      ]),
    );
    const readies = () => w.messages.slice(base).filter((m) => m.type === "Z").length;
    await w.waitFor(() => readies() >= 3, 10_000, "three ReadyForQuery");
    await new Promise((r) => setTimeout(r, 200)); // nothing more may come
    const got = w.messages.slice(base);
    // The first Sync's replies in full; the second may have begun (its row came before the
    // FATAL) and ends in an error; the third gets its error. One ReadyForQuery each.
    expect(got.map((m) => m.type).join("")).toMatch(/^12CZ[12D]*EZEZ$/);
    expect(got[2].body.toString("latin1")).toContain("INSERT 0 1");
    const codes = got.filter((m) => m.type === "E").map((m) => errorFields(m.body).C);
    for (const code of codes) expect(["08006", "08007"]).toContain(code);
    expect(got.filter((m) => m.type === "Z").map((m) => String.fromCharCode(m.body[0]))).toEqual([
      "I",
      "I",
      "I",
    ]);
    const rows = await cluster.query("SELECT v FROM pl ORDER BY v");
    expect(rows.map((x) => x.v)).toEqual([1]);
    w.socket.destroy();
  });

  /** Plays `groups` (each a list of statements, one Sync each) in one write; the replies. */
  async function pipeline(groups: string[][]) {
    const w: WireConn = await login({
      port: proxy.port,
      user: cluster.superuser,
      password: cluster.password,
      database: "postgres",
    });
    const base = w.messages.length;
    const frames: Buffer[] = [];
    for (const group of groups) {
      for (const sql of group) frames.push(parse("", sql), bind("", ""), execute());
      frames.push(sync());
    }
    await w.write(Buffer.concat(frames));
    const readies = () => w.messages.slice(base).filter((m) => m.type === "Z").length;
    await w.waitFor(() => readies() >= groups.length, 10_000, `${groups.length} ReadyForQuery`);
    await new Promise((r) => setTimeout(r, 150)); // nothing more may come
    const got = w.messages.slice(base);
    w.socket.destroy();
    // Split the replies per Sync.
    const perSync: string[] = [];
    let current = "";
    for (const m of got) {
      current += m.type === "E" ? `E${errorFields(m.body).C}` : m.type;
      if (m.type === "Z") {
        perSync.push(`${current}${String.fromCharCode(m.body[0])}`);
        current = "";
      }
    }
    expect(current).toBe(""); // nothing after the last ReadyForQuery
    return perSync;
  }

  const DIE = "SELECT pg_terminate_backend(pg_backend_pid())";

  for (const k of [0, 1, 2, 3]) {
    it(`autocommit pipeline of 4 Syncs, backend dies in Sync ${k + 1}: earlier ones keep their result, later ones one error each`, async () => {
      await cluster.query("TRUNCATE pl");
      const groups = [0, 1, 2, 3].map((i) => [`INSERT INTO pl VALUES (${i})`]);
      groups[k] = [DIE, ...groups[k]];
      const perSync = await pipeline(groups);
      expect(perSync).toHaveLength(4);
      for (let i = 0; i < k; i++) expect(perSync[i]).toBe("12CZI");
      for (let i = k; i < 4; i++) expect(perSync[i]).toMatch(/^[12D]*E080\d\dZI$/);
      const rows = await cluster.query("SELECT v FROM pl ORDER BY v");
      expect(rows.map((x) => x.v)).toEqual([0, 1, 2, 3].slice(0, k));
    });

    it(`transaction pipeline BEGIN / INSERT / INSERT / COMMIT, backend dies in Sync ${k + 1}: nothing committed, never 'rolled back' once COMMIT was sent`, async () => {
      await cluster.query("TRUNCATE pl");
      const groups = [
        ["BEGIN"],
        ["INSERT INTO pl VALUES (1)"],
        ["INSERT INTO pl VALUES (2)"],
        ["COMMIT"],
      ];
      groups[k] = [DIE, ...groups[k]];
      const perSync = await pipeline(groups);
      expect(perSync).toHaveLength(4);
      expect(perSync.slice(0, k)).toEqual(Array(k).fill("12CZT"));
      // The owed Syncs: the COMMIT among them may have run, so 08007 and 'I'.
      for (let i = k; i < 4; i++) expect(perSync[i]).toMatch(/^[12D]*E08007ZI$/);
      const rows = await cluster.query("SELECT v FROM pl ORDER BY v");
      expect(rows).toEqual([]);
    });
  }

  for (const [pin, sql] of [
    ["temp_table", "CREATE TEMP TABLE tt (v int)"],
    ["sql_prepare", "PREPARE p1 AS SELECT 1"],
    ["hold_cursor", "DECLARE hc CURSOR WITH HOLD FOR SELECT 1"],
  ]) {
    it(`a client pinned by ${pin} (${sql}) is closed with a FATAL naming it when its backend dies`, async () => {
      const c = new pg.Client(proxy.pgConfig());
      const errors: Error[] = [];
      c.on("error", (e) => errors.push(e));
      await c.connect();
      await c.query(sql);
      await terminate(await backendPid(c));
      await until("the client to hear of it", async () => errors.length > 0);
      expect(errors[0].message).toContain(pin);
      await expect(c.query("SELECT 1")).rejects.toThrow();
    });
  }

  it("a session SET travels with its client: after its backend is terminated, the next query still sees it", async () => {
    await cluster.query(
      "CREATE SCHEMA IF NOT EXISTS travel; CREATE TABLE IF NOT EXISTS travel.sp (v text)",
    );
    const c = await connect();
    await c.query("SET search_path = travel");
    for (const row of await cluster.query(
      "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )) {
      await terminate(row.pid);
    }
    expect((await c.query("SHOW search_path")).rows[0].search_path).toBe("travel");
    await c.end();
  });

  it("a pinned client whose backend dies is closed with a FATAL naming the lost state", async () => {
    const c = new pg.Client(proxy.pgConfig());
    const errors: Error[] = [];
    c.on("error", (e) => errors.push(e));
    await c.connect();
    await c.query("SELECT pg_advisory_lock(4711)");
    await terminate(await backendPid(c));
    await until("the client to hear of it", async () => errors.length > 0);
    expect(errors[0].message).toMatch(/advisory_lock/);
    expect((errors[0] as Error & { code?: string }).code).toBe("08006");
    await expect(c.query("SELECT 1")).rejects.toThrow();
    const free = await cluster.query("SELECT pg_try_advisory_lock(4711) AS ok");
    expect(free[0].ok).toBe(true);
  });

  it("a client pinned by SET ROLE never has its work replayed under the login role", async () => {
    const c = new pg.Client(proxy.pgConfig());
    const errors: Error[] = [];
    c.on("error", (e) => errors.push(e));
    await c.connect();
    await c.query("SET ROLE tenant");
    const pid = await backendPid(c);
    const q = c.query("SELECT current_user AS u, pg_sleep(1)").catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 300));
    await cluster.query("SELECT pg_terminate_backend($1)", [pid]);
    const err = await q;
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/set_role/);
    await expect(c.query("SELECT current_user AS u")).rejects.toThrow();
  });

  it("a backend that dies during COMMIT gives 08007 (may have committed), never 'rolled back'", async () => {
    const c = await connect();
    await c.query("BEGIN");
    await c.query("INSERT INTO cm VALUES (1)");
    const pid = await backendPid(c);
    const commit = c.query("COMMIT");
    await new Promise((r) => setTimeout(r, 500)); // inside the deferred trigger's sleep
    process.kill(pid, "SIGKILL"); // no FATAL: the outcome is unknown to the proxy
    await expect(commit).rejects.toMatchObject({ code: "08007" });
    // The transaction is over either way: the connection is usable at once, outside a transaction.
    await clusterRecovered();
    expect((await c.query("SELECT 3 AS n")).rows[0].n).toBe(3);
    await c.end();
  });

  it("a write outside a transaction whose backend dies after reading it gives 08007 under retry safe", async () => {
    const c = await connect();
    const insert = c.query("INSERT INTO ac VALUES (1)");
    await new Promise((r) => setTimeout(r, 500)); // inside the trigger's sleep
    const running = await cluster.query(
      "SELECT pid FROM pg_stat_activity WHERE query = 'INSERT INTO ac VALUES (1)'",
    );
    expect(running).toHaveLength(1);
    process.kill(running[0].pid, "SIGKILL");
    await expect(insert).rejects.toMatchObject({ code: "08007" });
    await clusterRecovered();
    expect((await c.query("SELECT 4 AS n")).rows[0].n).toBe(4);
    await c.end();
  });
});
