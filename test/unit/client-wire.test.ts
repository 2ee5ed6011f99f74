// ClientWire over a real loopback socket: the first write of an event is held until flush() and
// a second one corks; writeNow() and end() send what is held first, so the client reads every
// byte in the order it was written, and only write() is counted.
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ClientWire, type WireOwner } from "../../src/frontend/client-wire.js";

interface Pair {
  wire: ClientWire;
  counted: number[];
  /** Everything the client end has read so far. */
  received(): string;
  /** Resolves once the client end has read `n` bytes in all. */
  until(n: number): Promise<string>;
  /** Resolves once the client end saw the end of the stream. */
  ended: Promise<void>;
}

const sockets: net.Socket[] = [];
const servers: net.Server[] = [];

async function pair(): Promise<Pair> {
  const server = net.createServer();
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as net.AddressInfo;
  const accepted = new Promise<net.Socket>((r) => server.once("connection", r));
  const client = net.connect(port, "127.0.0.1");
  sockets.push(client);
  let got = "";
  const waits: Array<[number, (s: string) => void]> = [];
  client.on("data", (d: Buffer) => {
    got += d.toString("latin1");
    for (const w of waits.splice(0)) {
      if (got.length >= w[0]) w[1](got);
      else waits.push(w);
    }
  });
  const ended = new Promise<void>((r) => client.once("end", () => r()));
  const socket = await accepted;
  sockets.push(socket);
  const counted: number[] = [];
  const owner: WireOwner = {
    lease: null,
    onData: () => {},
    onGone: () => {},
    countBytesOut: (n) => counted.push(n),
  };
  return {
    wire: new ClientWire(socket, owner),
    counted,
    received: () => got,
    until: (n) => (got.length >= n ? Promise.resolve(got) : new Promise((r) => waits.push([n, r]))),
    ended,
  };
}

afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

const b = (s: string) => Buffer.from(s, "latin1");

describe("ClientWire", () => {
  it("holds an event's first write until flush(), and corks from the second", async () => {
    const p = await pair();
    p.wire.write(b("one"));
    await new Promise((r) => setTimeout(r, 50));
    expect(p.received()).toBe(""); // held, not sent
    p.wire.flush();
    expect(await p.until(3)).toBe("one");
    p.wire.write(b("two,"));
    p.wire.write(b("three,"));
    p.wire.write(b("four"));
    p.wire.flush();
    expect(await p.until(17)).toBe("onetwo,three,four");
    expect(p.counted).toEqual([3, 4, 6, 4]);
  });

  it("writeNow() sends what is held first, then its own bytes, uncounted", async () => {
    const p = await pair();
    p.wire.write(b("held;"));
    p.wire.writeNow(b("now;"));
    expect(await p.until(9)).toBe("held;now;");
    // With a corked pair waiting as well.
    p.wire.write(b("a;"));
    p.wire.write(b("b;"));
    p.wire.writeNow(b("c;"));
    expect(await p.until(15)).toBe("held;now;a;b;c;");
    expect(p.counted).toEqual([5, 2, 2]);
  });

  it("end() sends what is held before the end of the stream, and nothing written after it", async () => {
    const p = await pair();
    p.wire.write(b("last words"));
    p.wire.end();
    p.wire.write(b("too late"));
    await p.ended;
    expect(p.received()).toBe("last words");
  });

  it("destroy() drops what is held: nothing reaches the client, a later flush() writes nothing", async () => {
    const p = await pair();
    const writes: Buffer[] = [];
    const socket = (p.wire as unknown as { socket: net.Socket }).socket;
    const write = socket.write.bind(socket);
    socket.write = ((b: Buffer) => {
      writes.push(b);
      return write(b);
    }) as typeof socket.write;
    p.wire.write(b("held"));
    p.wire.destroy();
    p.wire.flush();
    await p.ended.catch(() => {});
    expect(writes).toEqual([]);
    expect(p.received()).toBe("");
  });
});
