// Decoding of the untyped first packets of a connection: StartupMessage, SSLRequest,
// GSSENCRequest and CancelRequest (protocol-message-formats.html).

import { StartupCode } from "./codes.js";

/**
 * Postgres rejects startup packets whose body (after the length word) is over this size
 * (MAX_STARTUP_PACKET_LENGTH): a whole packet may be 10004 bytes.
 */
export const MAX_STARTUP_PACKET = 10000;
/** A CancelRequest's key is 4 bytes in protocol 3.0 and up to 256 in 3.2. */
const MAX_CANCEL_KEY = 256;

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
    /**
     * Postgres reports this one to its log only (ereport COMMERROR in ProcessStartupPacket) and
     * closes without a word to the client: so do we.
     */
    readonly quiet = false,
  ) {
    super(message);
  }
}

/**
 * Returns the length of the packet at the head of `buf` when it is complete, 0 when more bytes are
 * needed, and throws a quiet StartupError on an impossible length (as Postgres: a client that
 * sends Terminate where the StartupMessage belongs, 'X' 00 00 00 04, announces 1476395008 bytes).
 */
export function startupPacketLength(buf: Buffer): number {
  if (buf.length < 4) return 0;
  const len = buf.readInt32BE(0);
  if (len < 8 || len - 4 > MAX_STARTUP_PACKET) {
    throw new StartupError(`invalid length of startup packet (${len})`, "08P01", true);
  }
  return buf.length >= len ? len : 0;
}

/** Decodes one whole packet (as delimited by startupPacketLength). */
export function decodeStartupPacket(packet: Buffer): StartupPacket {
  const code = packet.readInt32BE(4);
  if (code === StartupCode.SSLRequest) return { kind: "ssl" };
  if (code === StartupCode.GSSENCRequest) return { kind: "gssenc" };
  if (code === StartupCode.CancelRequest) {
    if (packet.length < 16 || packet.length > 12 + MAX_CANCEL_KEY) {
      throw new StartupError(`invalid length of startup packet (${packet.length})`, "08P01", true);
    }
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
  // Postgres's own words; the packet must end with the empty name that terminates the list.
  const layout = () =>
    new StartupError("invalid startup packet layout: expected terminator as last byte", "08P01");
  let pos = 8;
  for (;;) {
    const keyEnd = packet.indexOf(0, pos);
    if (keyEnd < 0) throw layout();
    if (keyEnd === pos) {
      if (pos !== packet.length - 1) throw layout();
      break;
    }
    const valueEnd = packet.indexOf(0, keyEnd + 1);
    if (valueEnd < 0) throw layout();
    const key = packet.toString("utf8", pos, keyEnd);
    const value = packet.toString("utf8", keyEnd + 1, valueEnd);
    if (key.startsWith("_pq_.")) protocolOptions.push(key);
    else params.set(key, value);
    pos = valueEnd + 1;
  }
  if (!params.get("user")) {
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
