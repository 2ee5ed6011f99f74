// Decoding of the untyped first packets of a connection: StartupMessage, SSLRequest,
// GSSENCRequest and CancelRequest (protocol-message-formats.html).

import { StartupCode } from "./codes.js";

/** Postgres rejects startup packets over this size (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET = 10000;

export type StartupPacket =
  | { kind: "ssl" }
  | { kind: "gssenc" }
  | { kind: "cancel"; pid: number; secret: Buffer }
  | {
      kind: "startup";
      major: number;
      minor: number;
      params: Map<string, string>;
      /** `_pq_.*` protocol options the client asked for. */
      protocolOptions: string[];
    };

export class StartupError extends Error {
  override readonly name = "StartupError";
  constructor(
    message: string,
    readonly sqlstate: string,
  ) {
    super(message);
  }
}

/**
 * Returns the length of the packet at the head of `buf` when it is complete, 0 when more bytes are
 * needed, and throws StartupError on an impossible length.
 */
export function startupPacketLength(buf: Buffer): number {
  if (buf.length < 4) return 0;
  const len = buf.readInt32BE(0);
  if (len < 8 || len > MAX_STARTUP_PACKET) {
    throw new StartupError(`invalid length of startup packet (${len})`, "08P01");
  }
  return buf.length >= len ? len : 0;
}

/** Decodes one whole packet (as delimited by startupPacketLength). */
export function decodeStartupPacket(packet: Buffer): StartupPacket {
  const code = packet.readInt32BE(4);
  if (code === StartupCode.SSLRequest) return { kind: "ssl" };
  if (code === StartupCode.GSSENCRequest) return { kind: "gssenc" };
  if (code === StartupCode.CancelRequest) {
    if (packet.length < 16) throw new StartupError("invalid cancel request", "08P01");
    return { kind: "cancel", pid: packet.readInt32BE(8), secret: Buffer.from(packet.subarray(12)) };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) {
    throw new StartupError(
      `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.2`,
      "0A000",
    );
  }
  const params = new Map<string, string>();
  const protocolOptions: string[] = [];
  let pos = 8;
  for (;;) {
    const keyEnd = packet.indexOf(0, pos);
    if (keyEnd < 0) throw new StartupError("invalid startup packet layout", "08P01");
    if (keyEnd === pos) break; // the terminating empty name
    const valueEnd = packet.indexOf(0, keyEnd + 1);
    if (valueEnd < 0) throw new StartupError("invalid startup packet layout", "08P01");
    const key = packet.toString("utf8", pos, keyEnd);
    const value = packet.toString("utf8", keyEnd + 1, valueEnd);
    if (key.startsWith("_pq_.")) protocolOptions.push(key);
    else params.set(key, value);
    pos = valueEnd + 1;
  }
  if (!params.has("user")) {
    throw new StartupError("no PostgreSQL user name specified in startup packet", "28000");
  }
  return { kind: "startup", major, minor, params, protocolOptions };
}

/**
 * Splits a libpq `options` string into settings. Understands `-c name=value`, `-cname=value` and
 * `--name=value`, with backslash-escaped spaces, as the server's pg_split_opts does.
 */
export function parseOptions(options: string): Map<string, string> {
  const words: string[] = [];
  let current = "";
  let escaped = false;
  let inWord = false;
  for (const ch of options) {
    if (escaped) {
      current += ch;
      escaped = false;
      inWord = true;
    } else if (ch === "\\") {
      escaped = true;
    } else if (ch === " " || ch === "\t" || ch === "\n") {
      if (inWord) words.push(current);
      current = "";
      inWord = false;
    } else {
      current += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(current);
  const settings = new Map<string, string>();
  for (let i = 0; i < words.length; i++) {
    let word = words[i];
    if (word === "-c" && i + 1 < words.length) word = words[++i];
    else if (word.startsWith("-c")) word = word.slice(2);
    else if (word.startsWith("--")) word = word.slice(2);
    else continue;
    const eq = word.indexOf("=");
    if (eq <= 0) continue;
    settings.set(word.slice(0, eq).replaceAll("-", "_"), word.slice(eq + 1));
  }
  return settings;
}
