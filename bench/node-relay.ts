// A reference point, not a pooler: the least a Node.js proxy can do per transaction. Each client
// socket gets its own upstream socket and bytes are piped both ways with no protocol work at all
// (net.Socket 'data' -> write, Nagle off), so its CPU per transaction is the cost of Node's socket
// I/O path alone. It opens one Postgres connection per client.
//
// usage: node node-relay.js <listen port> <upstream port>

import net from "node:net";

const [listenPort, upstreamPort] = process.argv.slice(2).map(Number);
if (!listenPort || !upstreamPort) {
  process.stderr.write("usage: node-relay.js <listen port> <upstream port>\n");
  process.exit(2);
}

net
  .createServer({ noDelay: true }, (client) => {
    const server = net.connect({ host: "127.0.0.1", port: upstreamPort, noDelay: true });
    client.on("data", (chunk: Buffer) => {
      if (!server.write(chunk)) {
        client.pause();
        server.once("drain", () => client.resume());
      }
    });
    server.on("data", (chunk: Buffer) => {
      if (!client.write(chunk)) {
        server.pause();
        client.once("drain", () => server.resume());
      }
    });
    const close = () => {
      client.destroy();
      server.destroy();
    };
    for (const s of [client, server]) {
      s.on("error", close);
      s.on("close", close);
    }
  })
  .listen(listenPort, "127.0.0.1");

process.on("SIGINT", () => process.exit(0));
process.on("SIGTERM", () => process.exit(0));
