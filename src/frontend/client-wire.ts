// ClientWire: the client's socket. Replies wait for the end of what one event produces (flush());
// a client that stops reading pauses its server, and the client is not read while a server's
// write buffer is full or a unit too big to keep waits for a server (backpressure both ways).
// It also turns the socket into TLS (SSLRequest, or a direct ClientHello).

import type net from "node:net";
import { Duplex } from "node:stream";
import tls from "node:tls";
import type { BackendConnection } from "../backend/backend-connection.js";
import * as clock from "../clock.js";

/** What the wire tells, and asks of, the session it carries. */
export interface WireOwner {
  /** The server the session holds: paused while the client does not read. */
  readonly lease: BackendConnection | null;
  onData(chunk: Buffer): void;
  /** The socket closed, ended or failed. */
  onGone(): void;
  /** Bytes written to the client (pgsidecar_client_bytes_total). */
  countBytesOut(n: number): void;
}

/** The wire a client socket carries: the socket's listeners are shared functions, not closures. */
const WIRE = Symbol("pgsidecar.wire");
type Carrier = net.Socket & { [WIRE]?: ClientWire };

function onSocketData(this: Carrier, chunk: Buffer): void {
  this[WIRE]?.owner.onData(chunk);
}

function onSocketGone(this: Carrier): void {
  this[WIRE]?.owner.onGone();
}

export class ClientWire {
  private socket: net.Socket;
  private corked = false;
  /** The event's one write so far, not yet sent (see write()). */
  private first: Buffer | null = null;
  /** The client's socket buffer is full: its server is paused until 'drain'. */
  private blocked = false;
  private blockedSince = 0;
  /** Not read: a unit past retry_buffer_bytes waits for a server. */
  private pausedForUnit = false;
  /** Not read: this server's write buffer is full. */
  private blockedBy: BackendConnection | null = null;
  private ended = false;

  /** The raw socket: its peer address stays readable after a TLS upgrade and after the close. */
  private readonly raw: net.Socket;

  constructor(
    socket: net.Socket,
    readonly owner: WireOwner,
  ) {
    this.socket = socket;
    this.raw = socket;
    socket.setNoDelay?.(true);
    this.attach(socket);
  }

  /**
   * ip:port of the client, or "unix". Node keeps the address on the socket once read (an object
   * per client), and can no longer read it once the socket is closed: Login reads it at once when
   * its logs would show it (see Login), nothing else keeps it.
   */
  get remote(): string {
    const address = this.raw.remoteAddress;
    return address ? `${address}:${this.raw.remotePort}` : "unix";
  }

  get isTls(): boolean {
    return this.socket instanceof tls.TLSSocket;
  }

  private attach(socket: net.Socket): void {
    (socket as Carrier)[WIRE] = this;
    socket.on("data", onSocketData);
    socket.on("error", onSocketGone);
    socket.on("close", onSocketGone);
    socket.on("end", onSocketGone);
  }

  /**
   * A reply for the client: sent at flush(), counted, and paused on a full buffer. The first
   * write of an event is only kept; a second one corks the socket. Most events produce one write
   * (a unit's replies released as one range), and it then goes out as one plain write, without
   * the cork's buffering.
   */
  write(bytes: Buffer): void {
    if (this.ended) return;
    this.owner.countBytesOut(bytes.length);
    if (!this.corked) {
      const first = this.first;
      if (first === null) {
        this.first = bytes;
        return;
      }
      this.first = null;
      this.corked = true;
      this.socket.cork();
      this.send(first);
    }
    this.send(bytes);
  }

  /** Written at once (after what is waiting for flush()), uncounted: login messages, a FATAL. */
  writeNow(bytes: Buffer): void {
    this.flush();
    this.socket.write(bytes);
  }

  flush(): void {
    const first = this.first;
    if (first !== null) {
      this.first = null;
      this.send(first);
    } else if (this.corked) {
      this.corked = false;
      this.socket.uncork();
    }
  }

  private send(bytes: Buffer): void {
    if (!this.socket.write(bytes) && !this.blocked) {
      this.blocked = true;
      this.blockedSince = clock.now();
      this.owner.lease?.pauseReading();
      this.socket.once("drain", () => {
        this.blocked = false;
        this.owner.lease?.resumeReading();
      });
    }
  }

  /** The client does not read our writes (full buffer) now, or null. */
  get stalledSince(): number | null {
    return this.blocked ? this.blockedSince : null;
  }

  /** A unit too big to keep waits for a server: stop reading the client until one is found. */
  pauseForUnit(): void {
    if (this.pausedForUnit) return;
    this.pausedForUnit = true;
    this.socket.pause();
  }

  resumeAfterUnit(): void {
    if (!this.pausedForUnit) return;
    this.pausedForUnit = false;
    this.socket.resume();
  }

  /** `conn`'s write buffer is full: stop reading the client until it drains (or goes). */
  serverFull(conn: BackendConnection): void {
    if (this.blockedBy !== null) return;
    this.blockedBy = conn;
    this.socket.pause();
    conn.onDrain(() => this.serverDrained(conn));
  }

  /** `conn` drained, or is no longer ours (a dead server never drains). */
  serverDrained(conn: BackendConnection): void {
    if (this.blockedBy !== conn) return;
    this.blockedBy = null;
    if (!this.pausedForUnit && !this.ended) this.socket.resume();
  }

  /** Nothing more the client sends matters (a protocol violation): stop reading it. */
  stopReading(): void {
    this.socket.pause();
  }

  /** Writes stop; the socket ends, and is destroyed a second later if the client lingers. */
  end(): void {
    this.flush();
    this.ended = true;
    if (this.socket.writable) this.socket.end();
    const socket = this.socket;
    clock.after(1000, () => socket.destroy());
  }

  /** Drops the socket at once (the last resort after a failed close). */
  destroy(): void {
    this.ended = true;
    this.first = null; // never sent: the socket is gone
    this.socket.destroy();
  }

  /** SSLRequest answered 'S': the client's next bytes are a TLS handshake. */
  upgradeTls(context: tls.SecureContext): void {
    this.upgrade(this.socket, context);
  }

  /** Direct SSL negotiation (Postgres 17, sslnegotiation=direct): `hello` was already read. */
  startDirectTls(hello: Buffer, context: tls.SecureContext): void {
    const raw = this.socket;
    raw.removeAllListeners("data");
    const bridge = new Duplex({
      read() {},
      write(chunk, _enc, cb) {
        raw.write(chunk, cb);
      },
      final(cb) {
        raw.end();
        cb();
      },
    });
    bridge.push(hello);
    raw.on("data", (c: Buffer) => bridge.push(c));
    raw.on("end", () => bridge.push(null));
    raw.on("close", () => bridge.destroy());
    this.upgrade(bridge, context);
  }

  private upgrade(raw: net.Socket | Duplex, context: tls.SecureContext): void {
    raw.removeAllListeners("data");
    raw.removeAllListeners("close");
    raw.removeAllListeners("end");
    raw.removeAllListeners("error");
    raw.on("error", () => this.owner.onGone());
    const secure = new tls.TLSSocket(raw as net.Socket, {
      isServer: true,
      secureContext: context,
      ALPNProtocols: ["postgresql"],
    });
    this.socket = secure;
    this.attach(secure);
  }
}
