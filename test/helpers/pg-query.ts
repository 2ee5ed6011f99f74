// One query on a fresh node-postgres client: connect, run, end (errors on the idle client ignored).

import pg from "pg";

/** Connects with `config`, runs `sql`, ends the client; returns the rows. */
export async function queryOnce(
  config: pg.ClientConfig,
  sql: string,
): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ connectionTimeoutMillis: 10_000, ...config });
  c.on("error", () => {});
  await c.connect();
  try {
    return (await c.query(sql)).rows;
  } finally {
    await c.end().catch(() => {});
  }
}
