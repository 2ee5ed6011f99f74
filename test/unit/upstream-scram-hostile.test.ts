// The proxy's SCRAM login to an upstream that misbehaves on purpose: a server that skips proving
// it knows the password (AuthenticationOk mid-exchange), signs wrongly, or asks for an absurd
// iteration count. A real Postgres never does these, so a tiny hostile server plays the upstream;
// the honest half of each exchange is computed by our ScramServerExchange from the real secret.
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  type ScramSecret,
  ScramServerExchange,
  scramSecretFromPassword,
} from "../../src/auth/scram-sha-256.js";
import { BackendConnection } from "../../src/backend/backend-connection.js";
import type { ProxyError } from "../../src/errors.js";
import * as msg from "../../src/protocol/messages.js";
import { loopbackBackend } from "../helpers/backend-options.js";

const PASSWORD = "upstream secret";
const SECRET: ScramSecret = scramSecretFromPassword(PASSWORD, 4096);

/** A frontend message as the hostile server reads it. */
interface Received {
  type: string;
  body: Buffer;
}

/**
 * What the hostile server does: called once per frontend message after the StartupMessage (the
 * StartupMessage itself comes as type ""). `reply` writes to the proxy; `close` hangs up.
 */
type Script = (
  m: Received,
  io: { reply(...b: Buffer[]): void; close(): void; scram: ScramServerExchange },
) => void;

interface Hostile {
  port: number;
  /** Every message the proxy sent, in order. */
  received: Received[];
  close(): Promise<void>;
}

const servers: Hostile[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function hostileServer(script: Script): Promise<Hostile> {
  const received: Received[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on("error", () => {});
    const scram = new ScramServerExchange(SECRET);
    let buf = Buffer.alloc(0);
    let started = false;
    const io = {
      reply: (...b: Buffer[]) => {
        if (!sock.destroyed) sock.write(Buffer.concat(b));
      },
      close: () => sock.destroy(),
      scram,
    };
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (!started) {
          if (buf.length < 4 || buf.length < buf.readInt32BE(0)) return;
          const len = buf.readInt32BE(0);
          const m = { type: "", body: buf.subarray(4, len) };
          buf = buf.subarray(len);
          started = true;
          received.push(m);
          script(m, io);
          continue;
        }
        if (buf.length < 5 || buf.length < 1 + buf.readInt32BE(1)) return;
        const len = buf.readInt32BE(1);
        const m = { type: String.fromCharCode(buf[0]), body: buf.subarray(5, 1 + len) };
        buf = buf.subarray(1 + len);
        received.push(m);
        script(m, io);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const h: Hostile = {
    port: (server.address() as net.AddressInfo).port,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  servers.push(h);
  return h;
}

function connection(port: number, maxScramIterations?: number): BackendConnection {
  return new BackendConnection(loopbackBackend(port, { password: PASSWORD, maxScramIterations }));
}

/** The login's outcome: null when it succeeded, else the error it was refused with. */
async function login(conn: BackendConnection): Promise<ProxyError | null> {
  try {
    await conn.connect();
    conn.destroy("shutdown");
    return null;
  } catch (err) {
    return err as ProxyError;
  }
}

/** The SASLInitialResponse (F) payload: mechanism, Int32 length, client-first-message. */
function clientFirstOf(body: Buffer): string {
  const nul = body.indexOf(0);
  return body.toString("utf8", nul + 5);
}

const loggedIn = [msg.authenticationOk, msg.readyForQueryIdle];

/** An honest server up to the SASLResponse; `atFinal` decides what follows it. */
function scramUntilFinal(
  atFinal: (serverFinal: string, io: { reply(...b: Buffer[]): void }) => void,
): Script {
  return (m, io) => {
    if (m.type === "") io.reply(msg.authenticationSASL(["SCRAM-SHA-256"]));
    else if (m.type === "p" && m.body.toString("utf8", 0, 13) === "SCRAM-SHA-256") {
      io.reply(msg.authenticationSASLContinue(io.scram.clientFirst(clientFirstOf(m.body))));
    } else if (m.type === "p") atFinal(io.scram.clientFinal(m.body.toString("utf8")), io);
  };
}

describe("upstream SCRAM login against a hostile server", () => {
  it("logs in when the server proves it knows the password (control)", async () => {
    const server = await hostileServer(
      scramUntilFinal((final, io) => io.reply(msg.authenticationSASLFinal(final), ...loggedIn)),
    );
    expect(await login(connection(server.port))).toBeNull();
  });

  it("refuses AuthenticationOk after our proof but before the server's signature", async () => {
    const server = await hostileServer(scramUntilFinal((_final, io) => io.reply(...loggedIn)));
    const err = await login(connection(server.port));
    expect(err?.code).toBe("auth_protocol");
    expect(err?.sqlstate).toBe("08P01");
    expect(err?.message).toMatch(/AuthenticationOk before completing SCRAM/);
  });

  it("refuses AuthenticationOk right after AuthenticationSASL", async () => {
    const server = await hostileServer((m, io) => {
      if (m.type === "") io.reply(msg.authenticationSASL(["SCRAM-SHA-256"]));
      else if (m.type === "p") io.reply(...loggedIn);
    });
    const err = await login(connection(server.port));
    expect(err?.code).toBe("auth_protocol");
  });

  it("refuses AuthenticationOk while our answer to server-first is still being computed", async () => {
    const server = await hostileServer((m, io) => {
      if (m.type === "") io.reply(msg.authenticationSASL(["SCRAM-SHA-256"]));
      else if (m.type === "p") {
        const first = io.scram.clientFirst(clientFirstOf(m.body));
        io.reply(msg.authenticationSASLContinue(first), ...loggedIn);
      }
    });
    const err = await login(connection(server.port));
    expect(err?.code).toBe("auth_protocol");
  });

  it("refuses a wrong server signature", async () => {
    const server = await hostileServer(
      scramUntilFinal((final, io) => {
        const sig = Buffer.from(final.slice(2), "base64");
        sig[5] ^= 0x40;
        io.reply(msg.authenticationSASLFinal(`v=${sig.toString("base64")}`), ...loggedIn);
      }),
    );
    const err = await login(connection(server.port));
    expect(err?.code).toBe("auth_failed");
    expect(err?.severity).toBe("FATAL");
    expect(err?.message).toMatch(/invalid SCRAM ServerSignature/);
  });

  it("refuses an iteration count above the limit at once, without answering", async () => {
    const server = await hostileServer((m, io) => {
      if (m.type === "") io.reply(msg.authenticationSASL(["SCRAM-SHA-256"]));
      else if (m.type === "p") {
        const nonce = /r=([^,]+)/.exec(clientFirstOf(m.body))?.[1];
        io.reply(
          msg.authenticationSASLContinue(`r=${nonce}xyz,s=AAAAAAAAAAAAAAAAAAAAAA==,i=2147483647`),
        );
      }
    });
    const started = performance.now();
    const err = await login(connection(server.port));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(err?.code).toBe("scram_iterations");
    expect(err?.sqlstate).toBe("28000");
    expect(err?.message).toMatch(/2147483647 SCRAM iterations, more than the limit of 100000/);
    // Startup and SASLInitialResponse only: no SASLResponse was computed or sent.
    expect(server.received.map((r) => r.type)).toEqual(["", "p"]);
  });

  it("honours server_scram_max_iterations", async () => {
    const secret = scramSecretFromPassword(PASSWORD, 5000);
    const server = await hostileServer((m, io) => {
      if (m.type === "") io.reply(msg.authenticationSASL(["SCRAM-SHA-256"]));
      else if (m.type === "p" && m.body.toString("utf8", 0, 13) === "SCRAM-SHA-256") {
        const honest = new ScramServerExchange(secret);
        io.reply(msg.authenticationSASLContinue(honest.clientFirst(clientFirstOf(m.body))));
      }
    });
    const err = await login(connection(server.port, 4096));
    expect(err?.code).toBe("scram_iterations");
  });

  it("sends nothing more when the login fails while its keys are being derived", async () => {
    const server = await hostileServer((m, io) => {
      if (m.type === "") io.reply(msg.authenticationSASL(["SCRAM-SHA-256"]));
      else if (m.type === "p") {
        // A fresh salt and 100,000 iterations: the derivation is still running when the FATAL
        // arrives in the same chunk.
        const nonce = /r=([^,]+)/.exec(clientFirstOf(m.body))?.[1];
        const salt = Buffer.from(`${Math.random()}`).toString("base64");
        io.reply(
          msg.authenticationSASLContinue(`r=${nonce}xyz,s=${salt},i=100000`),
          msg.errorResponse({ severity: "FATAL", code: "57P01", message: "going away" }),
        );
      }
    });
    const err = await login(connection(server.port));
    expect(err?.message).toBe("going away");
    await new Promise((r) => setTimeout(r, 300)); // the derivation has finished by now
    expect(server.received.map((r) => r.type)).toEqual(["", "p"]);
  });
});
