// node-postgres through the sidecar: the app's usual connection string, with host and port changed
// to the sidecar's (127.0.0.1:6432 in the same pod). The password is the upstream user's; PGPASSWORD
// is read when the URL has none, so a Kubernetes secretKeyRef needs no URL encoding.
//
//   DATABASE_URL=postgres://app@127.0.0.1:6432/app PGPASSWORD=... node node-postgres.mjs
import pg from "pg";

const pool = new pg.Pool({
  connectionString: process.env.DATABASE_URL ?? "postgres://app@127.0.0.1:6432/app",
  // The sidecar pools the server connections: a small client pool per process is enough.
  max: 10,
  // Reconnect quickly when the sidecar closes an idle client (drain, restart).
  idleTimeoutMillis: 10_000,
});
// An idle client closed by the sidecar (SIGTERM drain) is an 'error' on the pool, not a crash.
pool.on("error", (err) => console.error("idle client closed:", err.message));

const { rows } = await pool.query("SELECT $1::text AS driver, current_user AS usr", [
  "node-postgres",
]);
console.log(`${rows[0].driver}: connected as ${rows[0].usr}`);

const client = await pool.connect();
try {
  await client.query("BEGIN");
  // Named statements are fine: the sidecar prepares them on whichever server runs the query.
  const r = await client.query({
    name: "add",
    text: "SELECT $1::int + $2::int AS sum",
    values: [40, 2],
  });
  await client.query("COMMIT");
  console.log(`node-postgres: transaction ok, sum ${r.rows[0].sum}`);
} catch (err) {
  await client.query("ROLLBACK");
  throw err;
} finally {
  client.release();
}
await pool.end();
