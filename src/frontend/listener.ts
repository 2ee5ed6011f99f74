// Listener: accepts client connections on TCP (and optionally a unix socket), enforces
// max_client_conn, and hands each socket to a new ClientSession.

import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import * as msg from "../protocol/messages.js";

export interface ListenerOptions {
  host: string;
  port: number;
  unixSocketDir: string | null;
  maxClients: () => number;
  clients: () => number;
  accept: (socket: net.Socket) => void;
  rejected: (reason: string) => void;
}

export class Listener {
  private readonly servers: net.Server[] = [];
  /** The bound TCP port (useful with port 0). */
  port = 0;

  constructor(private readonly options: ListenerOptions) {}

  async start(): Promise<void> {
    const o = this.options;
    const tcp = this.createServer();
    await listen(tcp, { host: o.host, port: o.port }, `${o.host}:${o.port}`);
    this.port = (tcp.address() as net.AddressInfo).port;
    this.servers.push(tcp);
    if (o.unixSocketDir) {
      const file = path.join(o.unixSocketDir, `.s.PGSQL.${this.port}`);
      fs.rmSync(file, { force: true });
      const unix = this.createServer();
      await listen(unix, { path: file }, file);
      this.servers.push(unix);
    }
  }

  /** Stops accepting; open connections are left to their sessions (close() waits for none). */
  async stop(): Promise<void> {
    for (const s of this.servers) s.close();
    this.servers.length = 0;
  }

  get listening(): boolean {
    return this.servers.length > 0 && this.servers.every((s) => s.listening);
  }

  private createServer(): net.Server {
    return net.createServer({ noDelay: true }, (socket) => {
      if (this.options.clients() >= this.options.maxClients()) {
        // Postgres answers "too many clients" as a FATAL: send it and close.
        this.options.rejected("max_client_conn");
        socket.on("error", () => socket.destroy());
        socket.end(
          msg.errorResponse({
            severity: "FATAL",
            code: "53300",
            message: "sorry, too many clients already",
          }),
        );
        return;
      }
      this.options.accept(socket);
    });
  }
}

function listen(server: net.Server, options: net.ListenOptions, label: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        new Error(
          `cannot listen on ${label}: ${err.code === "EADDRINUSE" ? "address already in use" : err.message}`,
        ),
      );
    };
    server.once("error", onError);
    server.listen(options, () => {
      server.off("error", onError);
      resolve();
    });
  });
}
