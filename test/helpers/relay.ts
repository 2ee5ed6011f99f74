// A TCP relay between proxy and Postgres that can break the network on demand: RST, black hole, refuse.
// Model: PgBouncer test/utils.py `Sidecar` (socat), PgDog's Toxiproxy `reset_peer` / `timeout`.
import { connect, createServer, type Server, type Socket } from "node:net";

export interface Relay {
  /** Always "127.0.0.1". */
  host: string;
  port: number;
  /** Resets (RST) both sockets of every current connection pair. New connections are unaffected. */
  sever(): void;
  /**
   * Stops forwarding in both directions without closing anything, for current and new connections.
   * Bytes are dropped; a close on one side is not passed on either (as on a dead network).
   * A connection accepted while black-holed is never connected upstream: it hangs until its
   * client gives up, even after restore(), like a SYN lost on the wire.
   */
  blackhole(): void;
  /** While on, new connections are reset as soon as they are accepted. */
  refuse(on: boolean): void;
  /**
   * Ends blackhole and refuse. Pairs whose one side closed while black-holed now have the other
   * side reset too; bytes dropped meanwhile stay lost.
   */
  restore(): void;
  /** Connection pairs currently open (client side counted). */
  connections(): number;
  /** Stops listening and destroys every pair. */
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  /** null for a connection accepted while black-holed. */
  upstream: Socket | null;
  /** A side closed while black-holed; acted on at restore(). */
  closedWhileHoled: boolean;
}

export async function startRelay(target: { host: string; port: number }): Promise<Relay> {
  const pairs = new Set<Pair>();
  let holed = false;
  let refusing = false;

  /**
   * "reset" sends RST; "end" flushes what was already relayed, then FIN (so a last ErrorResponse
   * from the server still arrives); "destroy" drops everything at once.
   */
  const teardown = (pair: Pair, how: "reset" | "end" | "destroy") => {
    pairs.delete(pair);
    for (const s of [pair.client, pair.upstream]) {
      if (!s || s.destroyed) continue;
      if (how === "reset") s.resetAndDestroy();
      else if (how === "end") s.end(() => s.destroy());
      else s.destroy();
    }
  };

  /** Forwards `from` -> `to` with backpressure, dropping bytes while black-holed. */
  const forward = (pair: Pair, from: Socket, to: Socket) => {
    from.on("data", (chunk: Buffer) => {
      if (holed || to.destroyed) return;
      if (!to.write(chunk)) {
        from.pause();
        to.once("drain", () => from.resume());
      }
    });
    from.on("end", () => {
      if (holed) pair.closedWhileHoled = true;
      else to.end();
    });
    from.on("close", (hadError) => {
      if (!pairs.has(pair)) return;
      if (holed) {
        pair.closedWhileHoled = true;
        return;
      }
      // A reset on one side is passed on as a reset; an orderly close as a close.
      teardown(pair, hadError ? "reset" : "end");
    });
  };

  const server: Server = createServer((client) => {
    client.on("error", () => {});
    if (refusing) {
      client.resetAndDestroy();
      return;
    }
    client.setNoDelay(true);
    const pair: Pair = { client, upstream: null, closedWhileHoled: false };
    pairs.add(pair);
    if (holed) {
      client.on("close", () => pairs.delete(pair));
      return;
    }
    const upstream = connect({ host: target.host, port: target.port });
    pair.upstream = upstream;
    upstream.on("error", () => {});
    upstream.setNoDelay(true);
    forward(pair, client, upstream);
    forward(pair, upstream, client);
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  if (typeof addr !== "object" || addr === null) throw new Error("relay: no address");

  return {
    host: "127.0.0.1",
    port: addr.port,
    sever() {
      for (const pair of [...pairs]) teardown(pair, "reset");
    },
    blackhole() {
      holed = true;
    },
    refuse(on: boolean) {
      refusing = on;
    },
    restore() {
      holed = false;
      refusing = false;
      for (const pair of [...pairs]) {
        if (pair.closedWhileHoled) teardown(pair, "reset");
      }
    },
    connections() {
      return pairs.size;
    },
    close() {
      for (const pair of [...pairs]) teardown(pair, "destroy");
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
