// FrameScanner before login: a small length limit that is raised afterwards (setLimit), and one
// accepted message type, refused at its type byte (expectOnly) as Postgres refuses a StartupMessage
// sent in the middle of SCRAM ("expected SASL response, got message type 0").
import { describe, expect, it } from "vitest";
import { FrameScanner, type FrameSink } from "../../src/protocol/frame-scanner.js";

function frame(type: string, body: Buffer | string = ""): Buffer {
  const b = typeof body === "string" ? Buffer.from(body) : body;
  const out = Buffer.alloc(5 + b.length);
  out.write(type, 0, "latin1");
  out.writeInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

function recorder() {
  const seen: string[] = [];
  const sink: FrameSink = {
    onMessage: (code, _buf, start, end) => {
      seen.push(`${String.fromCharCode(code)}:${end - start}`);
    },
    onContinuation: () => {},
    onChunkEnd: () => {},
    onProtocolError: (m) => {
      seen.push(`error: ${m}`);
    },
  };
  return { seen, sink };
}

describe("FrameScanner.setLimit", () => {
  it("refuses a message over the limit from its header alone, naming the limit", () => {
    const s = new FrameScanner(1 << 20);
    s.setLimit(1024, "the limit for authentication messages");
    const { seen, sink } = recorder();
    const header = Buffer.alloc(5);
    header.write("p", 0, "latin1");
    header.writeInt32BE(8 * 1024 * 1024, 1);
    s.push(header, sink);
    expect(seen).toEqual([
      "error: message length 8388608 exceeds the limit for authentication messages (1024)",
    ]);
  });

  it("applies a raised limit from the next message on", () => {
    const s = new FrameScanner(100);
    const { seen, sink } = recorder();
    s.push(frame("Q", "x".repeat(50)), sink);
    s.setLimit(1000);
    s.push(frame("Q", "x".repeat(500)), sink);
    s.push(frame("Q", "x".repeat(1000)), sink);
    expect(seen).toEqual([
      "Q:55",
      "Q:505",
      "error: message length 1004 exceeds max_message_bytes (1000)",
    ]);
  });
});

describe("FrameScanner.expectOnly", () => {
  it("refuses another type at its first byte, before the length has arrived", () => {
    const s = new FrameScanner(1 << 20);
    s.expectOnly(0x70, "SASL response");
    const { seen, sink } = recorder();
    s.push(Buffer.from([0x00]), sink); // a StartupMessage's first length byte
    expect(seen).toEqual(["error: expected SASL response, got message type 0"]);
  });

  it("refuses it right after an accepted message of the same chunk", () => {
    const s = new FrameScanner(1 << 20);
    s.expectOnly(0x70, "password response");
    const { seen, sink } = recorder();
    // A PasswordMessage, then a StartupMessage (length 0x4c: read as type 0 + length 0x4c00...).
    const startup = Buffer.from("0000004c00030000", "hex");
    s.push(Buffer.concat([frame("p", "pw\0"), startup]), sink);
    expect(seen).toEqual(["p:8", "error: expected password response, got message type 0"]);
  });

  it("accepts every type again with expectOnly(-1)", () => {
    const s = new FrameScanner(1 << 20);
    s.expectOnly(0x70, "SASL response");
    const { seen, sink } = recorder();
    s.push(frame("p", "a"), sink);
    s.expectOnly(-1);
    s.push(Buffer.concat([frame("Q", "x\0"), frame("S")]), sink);
    expect(seen).toEqual(["p:6", "Q:7", "S:5"]);
  });
});
