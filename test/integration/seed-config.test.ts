// The seed's own psycopg configuration (autocommit=True, prepare_threshold=0) on the paths that
// broke it: statements over retry_buffer_bytes, a 50 MB simple Query, and psycopg's DEALLOCATE
// (sent through the extended protocol) once its 100-statement cache rotates.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { python3Psycopg } from "../helpers/processes.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";

/** Runs a psycopg script with DSN set; returns its last stdout line parsed as JSON. */
async function psycopg(script: string, dsn: string, timeoutMs = 180_000) {
  const r = await python3Psycopg(script, { DSN: dsn }, { timeoutMs });
  if (r.code !== 0) throw new Error(`psycopg script failed (${r.code}): ${r.stderr.slice(-3000)}`);
  return JSON.parse(r.stdout.trim().split("\n").pop() as string);
}

const LARGE = `
import json, os, time, psycopg
sizes = [1, 4, 16, 64]
out = {}
with psycopg.connect(os.environ["DSN"], autocommit=True, prepare_threshold=0) as c:
    c.execute("CREATE TABLE IF NOT EXISTS big (id int PRIMARY KEY, v text)")
    up = "INSERT INTO big VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET v = excluded.v"
    for mb in sizes:
        s = "x" * (mb * 1024 * 1024)
        t = time.time()
        c.execute(up, (mb, s))                                    # plain
        assert c.execute("SELECT length(v) FROM big WHERE id = %s", (mb,)).fetchone()[0] == len(s)
        with c.transaction():                                     # in a transaction
            c.execute(up, (mb + 1000, s))
        if mb <= 4:                                               # pipelined (psycopg 3.1 stalls
            with c.pipeline():                                    # on larger pipelines directly too)
                c.execute(up, (mb + 2000, s))
                c.execute(up, (mb + 3000, s))
        out[f"{mb}MB"] = round(time.time() - t, 3)
    for _ in range(6):  # prepare_threshold=5 semantics too: the sixth execution is a named Bind
        c.execute(up, (9, "y" * (2 * 1024 * 1024)), prepare=True)
    n = c.execute("SELECT count(*) FROM big WHERE length(v) >= 1024 * 1024").fetchone()[0]
    out["rows"] = n
with psycopg.connect(os.environ["DSN"], autocommit=True) as c:
    q = "SELECT length('" + "q" * (50 * 1024 * 1024) + "')"
    t = time.time()
    res = c.pgconn.exec_(q.encode())
    out["query50MB"] = round(time.time() - t, 3)
    out["query50MB_len"] = int(res.get_value(0, 0))
print(json.dumps(out))
`;

const ROTATION = `
import json, os, psycopg
errors = []
with psycopg.connect(os.environ["DSN"], autocommit=True, prepare_threshold=0) as c:
    for i in range(250):                         # 250 distinct statements: the cache rotates
        try:
            assert c.execute(f"SELECT {i} AS n, %s::int AS m", (i,)).fetchone() == (i, i)
        except Exception as e:
            errors.append(repr(e))
    for i in range(150):                         # the same inside transactions
        try:
            with c.transaction():
                assert c.execute(f"SELECT {i} + 1000 AS n, %s::int AS m", (i,)).fetchone() == (i + 1000, i)
        except Exception as e:
            errors.append(repr(e))
    try:                                         # the statements still known work
        assert c.execute("SELECT 249 AS n, %s::int AS m", (249,)).fetchone() == (249, 249)
    except Exception as e:
        errors.append(repr(e))
print(json.dumps({"errors": errors[:5], "count": len(errors)}))
`;

describe("the seed's psycopg configuration", () => {
  let cluster: PgCluster;
  let proxy: TestProxy;
  beforeAll(async () => {
    cluster = await startCluster({ conf: { fsync: "off", synchronous_commit: "off" } });
    proxy = await startProxy(cluster, { pool_size: 3 });
  });
  afterAll(async () => {
    await proxy?.stop();
    await cluster?.destroy();
  });
  const dsn = () => proxy.url();

  it("parameters of 1, 4, 16 and 64 MB (plain, in a transaction, pipelined) and a 50 MB Query work", async () => {
    const direct = await psycopg(LARGE, cluster.url());
    const viaProxy = await psycopg(LARGE, dsn());
    expect(viaProxy.rows).toBe(direct.rows);
    expect(viaProxy.query50MB_len).toBe(direct.query50MB_len);
    // Times are reported, never asserted (a loaded 2-core machine): see the closing note.
    console.log("large statements, seconds", { direct, viaProxy });
  });

  it("psycopg's DEALLOCATE (extended protocol) after its 100-statement cache rotates: 0 errors", async () => {
    const r = await psycopg(ROTATION, dsn());
    expect(r.errors).toEqual([]);
    expect(r.count).toBe(0);
  });
});
