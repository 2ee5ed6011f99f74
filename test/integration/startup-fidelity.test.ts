// Startup fidelity (issue 13 item 4): where Postgres closes without a word to the client (an
// impossible startup length, Terminate before the StartupMessage, a short CancelRequest, a packet
// cut off by the client), the sidecar does the same. Each case runs against Postgres directly and
// through the sidecar (session and transaction mode), so the test shows the two agree.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type TestProxy } from "../helpers/proxy.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { errorFields, RawClient, startupPacket } from "../helpers/wire.js";

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
}

/** What a client saw from one connect-and-end: errors raised anywhere, and how connect() ended. */
interface Outcome {
  errors: string[];
  connect: "resolved" | "pending" | string;
}

/** node-postgres: `client.connect()` then `client.end()`, awaiting connect() or not. */
async function connectThenEnd(config: pg.ClientConfig, awaitConnect: boolean): Promise<Outcome> {
  const errors: string[] = [];
  const onUnhandled = (reason: unknown) => errors.push(`unhandledRejection: ${String(reason)}`);
  process.on("unhandledRejection", onUnhandled);
  try {
    const client = new pg.Client({ ...config, connectionTimeoutMillis: 5000 });
    client.on("error", (err) => errors.push(`error event: ${err.message}`));
    let connect: Outcome["connect"] = "pending";
    const connecting = client.connect().then(
      () => {
        connect = "resolved";
      },
      (err: Error) => {
        connect = `rejected: ${err.message}`;
        errors.push(connect);
      },
    );
    if (awaitConnect) await connecting;
    await client.end();
    // Give a late ErrorResponse, 'error' event or rejection the time to show up.
    await new Promise((r) => setTimeout(r, 300));
    return { errors, connect };
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
}

describe("startup fidelity: quiet closes as Postgres", () => {
  let cluster: SharedCluster;
  let transaction: TestProxy;
  let session: TestProxy;
  /** Where each case runs: Postgres itself and the sidecar in both pool modes. */
  let targets: Array<{ name: string; port: number; config: pg.ClientConfig }>;

  beforeAll(async () => {
    cluster = await sharedCluster();
    transaction = await startProxy(cluster, { pool_size: 2, pool_mode: "transaction" });
    session = await startProxy(cluster, { pool_size: 2, pool_mode: "session" });
    const direct = {
      host: cluster.host,
      port: cluster.port,
      user: cluster.superuser,
      password: cluster.password,
      database: "postgres",
    };
    targets = [
      { name: "postgres", port: cluster.port, config: direct },
      { name: "sidecar (transaction)", port: transaction.port, config: transaction.pgConfig() },
      { name: "sidecar (session)", port: session.port, config: session.pgConfig() },
    ];
  });
  afterAll(async () => {
    await transaction?.stop();
    await session?.stop();
  });

  it("node-postgres: await connect() then await end() raises nothing", async () => {
    for (const t of targets) {
      const outcome = await connectThenEnd(t.config, true);
      expect({ target: t.name, ...outcome }).toEqual({
        target: t.name,
        errors: [],
        connect: "resolved",
      });
    }
  });

  it("node-postgres: connect() followed at once by end() raises nothing", async () => {
    for (const t of targets) {
      // pg writes Terminate before the StartupMessage here: Postgres reads 'X' 00 00 00 04 as a
      // startup length of 1476395008, logs "invalid length of startup packet" and closes.
      for (let i = 0; i < 5; i++) {
        const outcome = await connectThenEnd(t.config, false);
        expect({ target: t.name, errors: outcome.errors }).toEqual({ target: t.name, errors: [] });
        expect(["pending", "resolved"]).toContain(outcome.connect);
      }
    }
  });

  const quietCases: Array<{ name: string; bytes: Buffer; end?: boolean }> = [
    { name: "Terminate where the StartupMessage belongs", bytes: Buffer.from("X\0\0\0\x04") },
    { name: "a startup length below 8", bytes: int32(4) },
    {
      name: "a startup body over 10000 bytes",
      bytes: Buffer.concat([int32(10005), int32(196608)]),
    },
    {
      name: "a CancelRequest too short for a key",
      bytes: Buffer.concat([int32(12), int32(80877102), int32(1)]),
    },
    {
      name: "a StartupMessage cut off by the client's end",
      bytes: startupPacket(3, 0, { user: "postgres", database: "postgres" }).subarray(0, 11),
      end: true,
    },
    { name: "half a length word, then the client's end", bytes: Buffer.from([0, 0]), end: true },
  ];
  for (const q of quietCases) {
    it(`closes without a message on ${q.name}`, async () => {
      for (const t of targets) {
        const c = await RawClient.connect(t.port);
        c.write(q.bytes);
        if (q.end) c.socket.end();
        const closed = await c.waitClosed(3000);
        c.destroy();
        expect({ target: t.name, closed, received: c.received.toString("latin1") }).toEqual({
          target: t.name,
          closed: true,
          received: "",
        });
      }
    });
  }

  it("still answers with Postgres's FATAL where Postgres sends one", async () => {
    // Layout errors and a missing user reach the client (ereport FATAL, not COMMERROR).
    const cases: Array<{ bytes: Buffer; code: string; message: string }> = [
      {
        bytes: Buffer.concat([int32(13), int32(196608), Buffer.from("user\0")]),
        code: "08P01",
        message: "invalid startup packet layout: expected terminator as last byte",
      },
      {
        // Bytes after the terminator.
        bytes: Buffer.concat([int32(24), int32(196608), Buffer.from("user\0postgres\0\0x")]),
        code: "08P01",
        message: "invalid startup packet layout: expected terminator as last byte",
      },
      {
        bytes: Buffer.concat([int32(15), int32(196608), Buffer.from("user\0\0\0")]),
        code: "28000",
        message: "no PostgreSQL user name specified in startup packet",
      },
    ];
    for (const k of cases) {
      for (const t of targets) {
        const c = await RawClient.connect(t.port);
        c.write(k.bytes);
        const closed = await c.waitClosed(3000);
        c.destroy();
        const msgs = c.messages();
        const fields = msgs.length === 1 && msgs[0].type === "E" ? errorFields(msgs[0].body) : {};
        expect({ target: t.name, closed, C: fields.C, M: fields.M, S: fields.S }).toEqual({
          target: t.name,
          closed: true,
          C: k.code,
          M: k.message,
          S: "FATAL",
        });
      }
    }
  });
});
