// Many idle client connections with the least client-side state: a raw socket per client, a
// StartupMessage, SCRAM-SHA-256 (or cleartext / md5) login up to ReadyForQuery, then silence.
// Used to measure a pooler's resident memory per idle client.

import { createHash } from "node:crypto";
import net from "node:net";
import { ScramClientExchange } from "../src/auth/scram-sha-256.js";

export interface IdleLogin {
  port: number;
  user: string;
  password: string;
  database: string;
}

export interface IdleClients {
  /** Clients logged in (ReadyForQuery seen). */
  readonly opened: number;
  /** Logins that failed, with the first reason. */
  readonly failed: number;
  readonly firstError: string | null;
  /** Logged-in clients whose connection closed since. */
  readonly dropped: number;
  /** Sends `SELECT 1` on every `step`-th client; resolves with how many answered within `ms`. */
  probe(step: number, ms: number): Promise<{ asked: number; answered: number }>;
  close(): void;
}

interface Conn {
  socket: net.Socket;
  buf: Buffer;
  ready: boolean;
  onReady: (() => void) | null;
}

function startup(user: string, database: string): Buffer {
  const body = Buffer.from(`user\0${user}\0database\0${database}\0\0`, "utf8");
  const b = Buffer.alloc(8 + body.length);
  b.writeInt32BE(b.length, 0);
  b.writeInt32BE(196608, 4); // protocol 3.0
  body.copy(b, 8);
  return b;
}

function frame(type: string, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, "latin1");
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}

function saslInitial(mechanism: string, data: string): Buffer {
  const d = Buffer.from(data, "utf8");
  const m = Buffer.from(`${mechanism}\0`, "utf8");
  const body = Buffer.alloc(m.length + 4 + d.length);
  m.copy(body, 0);
  body.writeInt32BE(d.length, m.length);
  d.copy(body, m.length + 4);
  return frame("p", body);
}

const SELECT_1 = frame("Q", Buffer.from("SELECT 1\0"));

/** Logs one client in; resolves with the connection, rejects with the server's or socket's error. */
function login(o: IdleLogin, timeoutMs: number): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port: o.port });
    const conn: Conn = { socket, buf: Buffer.alloc(0), ready: false, onReady: null };
    let scram: ScramClientExchange | null = null;
    let done = false;
    const fail = (why: string) => {
      if (done) return;
      done = true;
      socket.destroy();
      reject(new Error(why));
    };
    const timer = setTimeout(() => fail("login timed out"), timeoutMs);
    socket.on("error", (e) => fail(e.message));
    socket.on("close", () => fail("closed during login"));
    socket.once("connect", () => socket.write(startup(o.user, o.database)));
    socket.on("data", (chunk: Buffer) => {
      conn.buf = conn.buf.length ? Buffer.concat([conn.buf, chunk]) : chunk;
      while (conn.buf.length >= 5) {
        const len = conn.buf.readInt32BE(1);
        if (conn.buf.length < 1 + len) break;
        const type = String.fromCharCode(conn.buf[0]);
        const body = conn.buf.subarray(5, 1 + len);
        conn.buf = conn.buf.subarray(1 + len);
        try {
          if (type === "R") {
            const kind = body.readInt32BE(0);
            if (kind === 3) socket.write(frame("p", Buffer.from(`${o.password}\0`)));
            else if (kind === 5) {
              const inner = createHash("md5")
                .update(o.password + o.user)
                .digest("hex");
              const outer = createHash("md5")
                .update(Buffer.concat([Buffer.from(inner), body.subarray(4, 8)]))
                .digest("hex");
              socket.write(frame("p", Buffer.from(`md5${outer}\0`)));
            } else if (kind === 10) {
              scram = new ScramClientExchange(o.password);
              socket.write(saslInitial("SCRAM-SHA-256", scram.clientFirst()));
            } else if (kind === 11) {
              // Hi() runs on the thread pool; the server waits for this answer.
              (scram as ScramClientExchange).serverFirst(body.toString("utf8", 4)).then(
                (reply) => socket.write(frame("p", Buffer.from(reply, "utf8"))),
                (e: Error) => fail(e.message),
              );
            } else if (kind === 12) {
              (scram as ScramClientExchange).serverFinal(body.toString("utf8", 4));
            } else if (kind !== 0) fail(`unsupported authentication request ${kind}`);
          } else if (type === "E") {
            fail(`server error: ${body.toString("utf8").replace(/\0/g, " ").trim()}`);
          } else if (type === "Z") {
            if (!conn.ready) {
              conn.ready = true;
              if (!done) {
                done = true;
                clearTimeout(timer);
                socket.removeAllListeners("close");
                socket.removeAllListeners("error");
                resolve(conn);
              }
            } else {
              const cb = conn.onReady;
              conn.onReady = null;
              cb?.();
            }
          }
        } catch (e) {
          fail((e as Error).message);
        }
      }
    });
  });
}

/** Opens `count` idle clients, at most `concurrency` logins at a time. */
export async function openIdleClients(
  o: IdleLogin,
  count: number,
  concurrency = 64,
  loginTimeoutMs = 30_000,
): Promise<IdleClients> {
  const conns: Conn[] = [];
  let failed = 0;
  let firstError: string | null = null;
  let dropped = 0;
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      try {
        const c = await login(o, loginTimeoutMs);
        c.socket.on("error", () => {});
        c.socket.on("close", () => {
          dropped++;
        });
        conns.push(c);
      } catch (e) {
        failed++;
        firstError ??= (e as Error).message;
        // A pooler that refuses logins refuses the rest too: do not hammer it.
        if (failed > 50 && failed > conns.length) return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return {
    get opened() {
      return conns.length;
    },
    get failed() {
      return failed;
    },
    get firstError() {
      return firstError;
    },
    get dropped() {
      return dropped;
    },
    async probe(step, ms) {
      const picked = conns.filter((c, i) => i % step === 0 && !c.socket.destroyed);
      const answers = picked.map(
        (c) =>
          new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), ms);
            c.onReady = () => {
              clearTimeout(timer);
              resolve(true);
            };
            c.socket.write(SELECT_1);
          }),
      );
      const results = await Promise.all(answers);
      return { asked: picked.length, answered: results.filter(Boolean).length };
    },
    close() {
      for (const c of conns) c.socket.destroy();
      conns.length = 0;
    },
  };
}
