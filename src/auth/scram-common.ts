// SCRAM-SHA-256 pieces shared by both ends: constants, ScramError, the attribute reader of
// RFC 5802 messages, and the crypto (Hi, HMAC, SHA-256). See scram-sha-256.ts for the exchange.
import { createHash, createHmac, pbkdf2, pbkdf2Sync } from "node:crypto";
import { saslPrep } from "./saslprep.js";

/** The only SASL mechanism we offer in AuthenticationSASL (B). */
export const SCRAM_SHA_256 = "SCRAM-SHA-256";

/** Bytes in a SHA-256 digest: StoredKey, ServerKey, ClientProof and ServerSignature all have it. */
export const KEY_BYTES = 32;
/** PostgreSQL's scram_iterations default. */
export const DEFAULT_ITERATIONS = 4096;
/** PostgreSQL's SCRAM_DEFAULT_SALT_LEN, bytes. */
export const DEFAULT_SALT_BYTES = 16;
/** PostgreSQL's SCRAM_RAW_NONCE_LEN, bytes before base64 (24 characters after). */
export const DEFAULT_NONCE_BYTES = 18;
/** PostgreSQL keeps the iteration count in a C int. */
export const MAX_ITERATIONS = 0x7fffffff;

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * Why an exchange failed. The server side maps each to the SQLSTATE PostgreSQL uses for the same
 * check (`ScramError.sqlstate`): only `bad_proof` is a wrong password (28P01); the rest are
 * protocol violations (08P01) or features we do not support (0A000).
 */
export type ScramErrorCode =
  /** A message that does not parse: missing or misplaced attribute, bad base64, bad number. */
  | "malformed_message"
  /** gs2 flag 'p': the client wants channel binding (SCRAM-SHA-256-PLUS), which we never offered. */
  | "channel_binding_unsupported"
  /** An authorization identity (a=) or a mandatory extension (m=). */
  | "unsupported_feature"
  /** The nonce in a reply is not the one this exchange built. */
  | "nonce_mismatch"
  /** Server side: ClientProof does not match StoredKey, i.e. wrong password. */
  | "bad_proof"
  /** Client side: the upstream's ServerSignature is wrong (it does not know our password). */
  | "bad_server_signature"
  /** Client side: the upstream answered server-final-message with "e=<reason>". */
  | "server_error"
  /** Client side: the upstream asks for more PBKDF2 iterations than we are willing to run. */
  | "too_many_iterations"
  /** A message arrived out of turn, or after the exchange had failed or finished. */
  | "unexpected_message";

const SQLSTATE_BY_CODE: Readonly<Record<ScramErrorCode, string>> = {
  malformed_message: "08P01",
  channel_binding_unsupported: "08P01",
  unsupported_feature: "0A000",
  nonce_mismatch: "08P01",
  bad_proof: "28P01",
  bad_server_signature: "08P01",
  server_error: "08P01",
  too_many_iterations: "08P01",
  unexpected_message: "08P01",
};

export class ScramError extends Error {
  override readonly name = "ScramError";
  readonly code: ScramErrorCode;
  /** The SQLSTATE PostgreSQL reports when the same check fails on its side. */
  readonly sqlstate: string;

  constructor(code: ScramErrorCode, message: string) {
    super(message);
    this.code = code;
    this.sqlstate = SQLSTATE_BY_CODE[code];
  }
}

export function malformed(what: string, detail: string): ScramError {
  return new ScramError("malformed_message", `malformed SCRAM ${what}: ${detail}`);
}

// ---------------------------------------------------------------------------------------------
// Message parsing

/**
 * Cursor over "a=value,b=value" (RFC 5802 section 7). Values end at ',' or at the end of the
 * message; the ',' after a value is consumed with it. Every failure is a ScramError.
 */
export class AttrReader {
  pos = 0;
  readonly #text: string;
  readonly #what: string;

  constructor(text: string, what: string) {
    // PostgreSQL reads the payload as a C string: a NUL inside it is a malformed message.
    if (text.includes("\0")) throw malformed(what, "NUL byte in the message");
    this.#text = text;
    this.#what = what;
  }

  atEnd(): boolean {
    return this.pos >= this.#text.length;
  }

  /** The next character, or "" at the end. */
  peek(): string {
    return this.#text.charAt(this.pos);
  }

  /** Consumes and returns the next character ("" at the end). */
  next(): string {
    const c = this.peek();
    this.pos++;
    return c;
  }

  expect(c: string): void {
    if (this.next() !== c) throw malformed(this.#what, `"${c}" expected at offset ${this.pos - 1}`);
  }

  /** Reads attribute `name`, which must come next, and returns its value. */
  attr(name: string): string {
    if (this.peek() !== name)
      throw malformed(this.#what, `attribute "${name}" expected at offset ${this.pos}`);
    return this.#value();
  }

  /** Reads whatever attribute comes next (a single ASCII letter). */
  anyAttr(): { name: string; value: string } {
    const name = this.peek();
    if (!/^[A-Za-z]$/.test(name))
      throw malformed(this.#what, `attribute expected at offset ${this.pos}`);
    return { name, value: this.#value() };
  }

  #value(): string {
    const name = this.next();
    if (this.next() !== "=") throw malformed(this.#what, `"=" expected after attribute "${name}"`);
    const comma = this.#text.indexOf(",", this.pos);
    const end = comma === -1 ? this.#text.length : comma;
    const value = this.#text.slice(this.pos, end);
    this.pos = comma === -1 ? end : end + 1;
    return value;
  }
}

/** RFC 5802 "printable": %x21-2B / %x2D-7E, i.e. visible ASCII without ','. Also non-empty. */
export function isPrintable(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || c === 0x2c) return false;
  }
  return true;
}

// Canonical padded base64 only: Buffer.from(s, "base64") would skip any junk silently.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function decodeBase64(s: string): Buffer | null {
  return BASE64.test(s) ? Buffer.from(s, "base64") : null;
}

export function isValidIterations(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= MAX_ITERATIONS;
}

// ---------------------------------------------------------------------------------------------
// Crypto

/** ClientKey and ServerKey, from SaltedPassword = Hi(password, salt, i). */
export interface DerivedKeys {
  clientKey: Buffer;
  serverKey: Buffer;
}

export function sha256(data: Buffer): Buffer {
  return createHash("sha256").update(data).digest();
}

export function hmac(key: Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data).digest();
}

export function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
}

/** Hi() is PBKDF2 with HMAC-SHA-256; one 32-byte block is exactly RFC 5802's Hi. */
export function deriveKeys(password: Buffer, salt: Buffer, iterations: number): DerivedKeys {
  const salted = pbkdf2Sync(password, salt, iterations, KEY_BYTES, "sha256");
  return { clientKey: hmac(salted, "Client Key"), serverKey: hmac(salted, "Server Key") };
}

/** deriveKeys on the libuv thread pool: the upstream login must not block the event loop. */
export function deriveKeysAsync(
  password: Buffer,
  salt: Buffer,
  iterations: number,
): Promise<DerivedKeys> {
  return new Promise((resolve, reject) => {
    pbkdf2(password, salt, iterations, KEY_BYTES, "sha256", (err, salted) => {
      if (err) reject(err);
      else
        resolve({ clientKey: hmac(salted, "Client Key"), serverKey: hmac(salted, "Server Key") });
    });
  });
}

/** The bytes Hi() sees: SASLprep'd password, or the raw UTF-8 when SASLprep rejects it. */
export function preparePassword(password: string): Buffer {
  return Buffer.from(saslPrep(password), "utf8");
}
