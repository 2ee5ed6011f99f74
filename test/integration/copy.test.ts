// COPY FROM STDIN / TO STDOUT relayed in transaction mode: psql \copy and node-postgres
// (pg-copy-streams) move 100,000 rows byte-identically.
import {
  createReadStream,
  createWriteStream,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../helpers/processes.js";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";

const ROWS = 100_000;

describe("COPY through transaction pooling", () => {
  let cluster: SharedCluster;
  let proxy: TestProxy;
  let dir: string;
  const source = () => join(dir, "source.tsv");

  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.query("CREATE TABLE copy_items (id int PRIMARY KEY, name text, payload text)");
    proxy = await startProxy(cluster, { pool_size: 2 });
    dir = mkdtempSync(join(tmpdir(), "pgsidecar-copy-"));
    const lines: string[] = [];
    for (let i = 1; i <= ROWS; i++)
      lines.push(`${i}\tname ${i}\tpayload-${"x".repeat(i % 50)}-\\t-tab`);
    writeFileSync(source(), `${lines.join("\n")}\n`);
  });
  afterAll(async () => {
    await proxy?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const psql = (command: string) =>
    run(
      "psql",
      [
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-p",
        String(proxy.port),
        "-U",
        cluster.superuser,
        "-d",
        "postgres",
        "-c",
        command,
      ],
      {
        env: { ...process.env, PGPASSWORD: cluster.password },
        timeoutMs: 120_000,
      },
    );

  it("psql \\copy in and out of a 100,000-row table: byte-identical", async () => {
    const copyIn = await psql(`\\copy copy_items FROM '${source()}'`);
    expect(copyIn.stderr).toBe("");
    expect(copyIn.stdout.trim()).toBe(`COPY ${ROWS}`);
    const out = join(dir, "psql-out.tsv");
    const copyOut = await psql(`\\copy (SELECT * FROM copy_items ORDER BY id) TO '${out}'`);
    expect(copyOut.stdout.trim()).toBe(`COPY ${ROWS}`);
    expect(readFileSync(out).equals(readFileSync(source()))).toBe(true);
  });

  it("node-postgres COPY FROM STDIN and TO STDOUT (pg-copy-streams): byte-identical", async () => {
    const client = new pg.Client(proxy.pgConfig());
    await client.connect();
    await client.query("CREATE TABLE copy_items2 (LIKE copy_items)");
    await pipeline(
      createReadStream(source()),
      client.query(copyFrom("COPY copy_items2 FROM STDIN")),
    );
    const out = join(dir, "node-out.tsv");
    await pipeline(
      client.query(copyTo("COPY (SELECT * FROM copy_items2 ORDER BY id) TO STDOUT")),
      createWriteStream(out),
    );
    expect(readFileSync(out).equals(readFileSync(source()))).toBe(true);
    // The connection is in a clean state afterwards, and other clients shared the servers.
    expect((await client.query("SELECT count(*)::int AS n FROM copy_items2")).rows[0].n).toBe(ROWS);
    await client.end();
  });

  it("an error inside COPY FROM STDIN is reported and the client keeps working", async () => {
    const client = new pg.Client(proxy.pgConfig());
    await client.connect();
    const bad = join(dir, "bad.tsv");
    writeFileSync(bad, "1\tdup\tx\n");
    await expect(
      pipeline(createReadStream(bad), client.query(copyFrom("COPY copy_items FROM STDIN"))),
    ).rejects.toMatchObject({
      code: "23505",
    });
    expect((await client.query("SELECT 1 AS v")).rows[0].v).toBe(1);
    await client.end();
  });
});
