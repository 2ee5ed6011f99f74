// SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: both ends of the exchange, no sockets.
//
// ScramServerExchange authenticates our clients against a stored secret, with the checks of
// PostgreSQL's src/backend/libpq/auth-scram.c. ScramClientExchange logs the proxy in to the
// upstream, as libpq's fe-auth-scram.c does. Channel binding is not offered (we advertise only
// "SCRAM-SHA-256", never "-PLUS"). Message flow: https://www.postgresql.org/docs/current/sasl-authentication.html
//
//   C: client-first-message   n,,n=<ignored>,r=<client nonce>
//   S: server-first-message   r=<client nonce><server nonce>,s=<salt b64>,i=<iterations>
//   C: client-final-message   c=biws,r=<both nonces>,p=<ClientProof b64>
//   S: server-final-message   v=<ServerSignature b64>
//
//   SaltedPassword  = Hi(SASLprep(password), salt, i)          Hi = PBKDF2-HMAC-SHA-256, 32 bytes
//   ClientKey       = HMAC(SaltedPassword, "Client Key")        StoredKey = SHA-256(ClientKey)
//   ServerKey       = HMAC(SaltedPassword, "Server Key")
//   AuthMessage     = client-first-bare "," server-first "," client-final-without-proof
//   ClientProof     = ClientKey XOR HMAC(StoredKey, AuthMessage)
//   ServerSignature = HMAC(ServerKey, AuthMessage)
import {
  createHash,
  createHmac,
  pbkdf2,
  pbkdf2Sync,
  randomBytes,
  timingSafeEqual,
} from "node:crypto";

/** The only SASL mechanism we offer in AuthenticationSASL (B). */
export const SCRAM_SHA_256 = "SCRAM-SHA-256";

/** Bytes in a SHA-256 digest: StoredKey, ServerKey, ClientProof and ServerSignature all have it. */
const KEY_BYTES = 32;
/** PostgreSQL's scram_iterations default. */
const DEFAULT_ITERATIONS = 4096;
/** PostgreSQL's SCRAM_DEFAULT_SALT_LEN, bytes. */
const DEFAULT_SALT_BYTES = 16;
/** PostgreSQL's SCRAM_RAW_NONCE_LEN, bytes before base64 (24 characters after). */
const DEFAULT_NONCE_BYTES = 18;
/** PostgreSQL keeps the iteration count in a C int. */
const MAX_ITERATIONS = 0x7fffffff;
/** Derived keys kept by ScramClientExchange: one per (password, salt, iterations) upstream login. */
const KEY_CACHE_LIMIT = 64;

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

function malformed(what: string, detail: string): ScramError {
  return new ScramError("malformed_message", `malformed SCRAM ${what}: ${detail}`);
}

// ---------------------------------------------------------------------------------------------
// Stored secrets

/** What PostgreSQL keeps in pg_authid.rolpassword for a SCRAM user; enough to verify, not to log in. */
export interface ScramSecret {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** Builds the secret for a password, as `ALTER ROLE ... PASSWORD` does (SASLprep, then Hi). */
export function scramSecretFromPassword(
  password: string,
  iterations: number = DEFAULT_ITERATIONS,
  salt: Buffer = randomBytes(DEFAULT_SALT_BYTES),
): ScramSecret {
  if (!isValidIterations(iterations)) {
    throw new RangeError(
      `unsupported SCRAM iterations ${iterations}, use an integer 1..${MAX_ITERATIONS}`,
    );
  }
  const keys = deriveKeys(preparePassword(password), salt, iterations);
  return {
    iterations,
    salt: Buffer.from(salt),
    storedKey: sha256(keys.clientKey),
    serverKey: keys.serverKey,
  };
}

// "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>", PostgreSQL's parse_scram_secret().
const STORED_SECRET = /^SCRAM-SHA-256\$([0-9]{1,10}):([^$:]*)\$([^$:]+):([^$:]+)$/;

/** Parses PostgreSQL's stored format; null for anything else (an md5 hash, a plain password...). */
export function parseScramSecret(text: string): ScramSecret | null {
  const m = STORED_SECRET.exec(text);
  if (m === null) return null;
  const iterations = Number(m[1]);
  const salt = decodeBase64(m[2]);
  const storedKey = decodeBase64(m[3]);
  const serverKey = decodeBase64(m[4]);
  if (!isValidIterations(iterations) || salt === null) return null;
  if (storedKey?.length !== KEY_BYTES || serverKey?.length !== KEY_BYTES) return null;
  return { iterations, salt, storedKey, serverKey };
}

/** The inverse of parseScramSecret: the text PostgreSQL would store for this secret. */
export function formatScramSecret(secret: ScramSecret): string {
  const b64 = (b: Buffer) => b.toString("base64");
  return `SCRAM-SHA-256$${secret.iterations}:${b64(secret.salt)}$${b64(secret.storedKey)}:${b64(secret.serverKey)}`;
}

/** Process-wide key for mockScramSecret's salts, so they cannot be computed from outside. */
const MOCK_SALT_KEY = randomBytes(KEY_BYTES);

/**
 * A secret no password matches, for a user we do not know. Running the whole exchange against
 * it (and failing with `bad_proof`) keeps unknown users indistinguishable from wrong passwords:
 * the salt is stable per user name, as PostgreSQL's scram_mock_salt() makes it.
 */
export function mockScramSecret(user: string): ScramSecret {
  const salt = hmac(MOCK_SALT_KEY, user).subarray(0, DEFAULT_SALT_BYTES);
  return {
    iterations: DEFAULT_ITERATIONS,
    salt,
    storedKey: randomBytes(KEY_BYTES),
    serverKey: randomBytes(KEY_BYTES),
  };
}

// ---------------------------------------------------------------------------------------------
// Server side

/** Where a ScramServerExchange is; `failed` and `done` accept nothing more. */
const ServerStep = {
  AwaitClientFirst: "await_client_first",
  AwaitClientFinal: "await_client_final",
  Done: "done",
  Failed: "failed",
} as const;
type ServerStep = (typeof ServerStep)[keyof typeof ServerStep];

/**
 * One client's SCRAM-SHA-256 login against a stored secret. Feed it the SASLInitialResponse (F)
 * payload, then the SASLResponse (F) payload; send back what each returns in
 * AuthenticationSASLContinue (B) and AuthenticationSASLFinal (B). Any ScramError ends the exchange.
 */
export class ScramServerExchange {
  readonly #secret: ScramSecret;
  readonly #serverNonce: string;
  #step: ServerStep = ServerStep.AwaitClientFirst;
  /** 'n' or 'y' from the gs2 header; client-final must echo it in c=. */
  #cbindFlag = "";
  #clientNonce = "";
  #clientFirstBare = "";
  #serverFirst = "";

  /**
   * @param nonceBytes random bytes in our half of the nonce (18, as PostgreSQL).
   * @param nonce a fixed server nonce instead of a random one. For tests only (RFC 7677 vector):
   *   a predictable nonce makes the exchange replayable.
   */
  constructor(secret: ScramSecret, nonceBytes: number = DEFAULT_NONCE_BYTES, nonce?: string) {
    if (
      !isValidIterations(secret.iterations) ||
      secret.storedKey.length !== KEY_BYTES ||
      secret.serverKey.length !== KEY_BYTES
    ) {
      throw new RangeError("invalid ScramSecret: iterations 1..2^31-1 and 32-byte keys expected");
    }
    if (nonce !== undefined && !isPrintable(nonce)) {
      throw new RangeError("invalid SCRAM nonce: printable ASCII without ',' expected");
    }
    if (nonce === undefined && !(Number.isInteger(nonceBytes) && nonceBytes >= 1)) {
      throw new RangeError(`unsupported nonceBytes ${nonceBytes}, use a positive integer`);
    }
    this.#secret = secret;
    this.#serverNonce = nonce ?? randomBytes(nonceBytes).toString("base64");
  }

  /** client-first-message -> server-first-message. */
  clientFirst(message: string): string {
    this.#enter(ServerStep.AwaitClientFirst, "client-first-message");
    const what = "client-first-message";
    const r = new AttrReader(message, what);
    // gs2-header = gs2-cbind-flag "," [authzid] ","
    const flag = r.next();
    switch (flag) {
      case "n": // the client does not support channel binding
      case "y": // it does, but thinks we do not: true, so no downgrade attack to report
        break;
      case "p":
        throw new ScramError(
          "channel_binding_unsupported",
          "the client selected SCRAM-SHA-256-PLUS channel binding, which was not offered",
        );
      default:
        throw malformed(what, "unexpected channel-binding flag");
    }
    r.expect(",");
    if (r.peek() === "a") {
      throw new ScramError("unsupported_feature", "SCRAM authorization identity is not supported");
    }
    r.expect(",");
    this.#clientFirstBare = message.slice(r.pos);
    if (r.peek() === "m") {
      throw new ScramError(
        "unsupported_feature",
        "the client requires an unsupported SCRAM extension",
      );
    }
    // The user name is ignored: PostgreSQL authenticates the user of the StartupMessage.
    r.attr("n");
    const clientNonce = r.attr("r");
    if (!isPrintable(clientNonce)) throw malformed(what, "nonce empty or not printable");
    while (!r.atEnd()) r.anyAttr(); // optional extensions, ignored
    this.#cbindFlag = flag;
    this.#clientNonce = clientNonce + this.#serverNonce;
    const salt = this.#secret.salt.toString("base64");
    this.#serverFirst = `r=${this.#clientNonce},s=${salt},i=${this.#secret.iterations}`;
    this.#step = ServerStep.AwaitClientFinal;
    return this.#serverFirst;
  }

  /** client-final-message -> server-final-message ("v=..."); ScramError 'bad_proof' on a wrong password. */
  clientFinal(message: string): string {
    this.#enter(ServerStep.AwaitClientFinal, "client-final-message");
    const what = "client-final-message";
    const r = new AttrReader(message, what);
    // c= is base64 of the gs2 header: "n,," is "biws", "y,," is "eSws".
    const binding = r.attr("c");
    const expected = this.#cbindFlag === "y" ? "eSws" : "biws";
    if (binding !== expected) throw malformed(what, "unexpected channel-binding attribute");
    const nonce = r.attr("r");
    let proofAt: number;
    let attr: { name: string; value: string };
    do {
      proofAt = r.pos; // extensions before p= are part of client-final-message-without-proof
      attr = r.anyAttr();
    } while (attr.name !== "p");
    const proof = decodeBase64(attr.value);
    if (proof?.length !== KEY_BYTES) throw malformed(what, "invalid ClientProof");
    if (!r.atEnd()) throw malformed(what, "garbage after the proof");
    if (nonce !== this.#clientNonce) {
      throw new ScramError("nonce_mismatch", "SCRAM nonce in client-final-message does not match");
    }

    const withoutProof = message.slice(0, proofAt - 1);
    const authMessage = `${this.#clientFirstBare},${this.#serverFirst},${withoutProof}`;
    const clientKey = xor(proof, hmac(this.#secret.storedKey, authMessage));
    if (!timingSafeEqual(sha256(clientKey), this.#secret.storedKey)) {
      throw new ScramError("bad_proof", "SCRAM ClientProof does not match the stored secret");
    }
    this.#step = ServerStep.Done;
    return `v=${hmac(this.#secret.serverKey, authMessage).toString("base64")}`;
  }

  /** Checks it is `step`'s turn; the exchange counts as failed until the message is accepted. */
  #enter(step: ServerStep, what: string): void {
    if (this.#step !== step) {
      throw new ScramError(
        "unexpected_message",
        `unexpected SCRAM ${what}: ${describeServerStep(this.#step)}`,
      );
    }
    this.#step = ServerStep.Failed;
  }
}

function describeServerStep(step: ServerStep): string {
  switch (step) {
    case ServerStep.AwaitClientFirst:
      return "client-first-message expected";
    case ServerStep.AwaitClientFinal:
      return "client-final-message expected";
    case ServerStep.Done:
      return "the exchange is complete";
    case ServerStep.Failed:
      return "the exchange has failed";
    default: {
      const never: never = step;
      return never;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Client side

const ClientStep = {
  Start: "start",
  AwaitServerFirst: "await_server_first",
  /** server-first-message accepted; Hi() runs on the thread pool. The server waits for us. */
  Deriving: "deriving",
  AwaitServerFinal: "await_server_final",
  Done: "done",
  Failed: "failed",
} as const;
type ClientStep = (typeof ClientStep)[keyof typeof ClientStep];

/**
 * Most PBKDF2 iterations a server may ask of us: 100,000, the cap node-postgres
 * (`scramMaxIterations`, brianc/node-postgres#3677) and pgJDBC (`scramMaxIterations`) adopted
 * against servers that make a client burn CPU with i=2^31-1. libpq has none. PostgreSQL's
 * default `scram_iterations` is 4096; 100,000 Hi() rounds take ~40 ms.
 */
export const DEFAULT_MAX_SERVER_ITERATIONS = 100_000;

export interface ScramClientOptions {
  /** A fixed client nonce instead of 18 random bytes in base64. For tests only (RFC 7677 vector). */
  nonce?: string;
  /**
   * User name in client-first-message; default "*", as node-postgres sends (libpq sends "").
   * PostgreSQL ignores it and uses the user of the StartupMessage. Set for test vectors only.
   */
  username?: string;
  /** Refuse a server-first-message asking for more iterations (default 100,000). */
  maxIterations?: number;
}

interface DerivedKeys {
  clientKey: Buffer;
  serverKey: Buffer;
}

/**
 * The proxy's SCRAM-SHA-256 login to the upstream, for one connection. Send clientFirst() in
 * SASLInitialResponse (F), what serverFirst(AuthenticationSASLContinue payload) resolves to in
 * SASLResponse (F), then pass the AuthenticationSASLFinal payload to serverFinal(), which proves
 * the server knew the secret. Only then is `done` true: an AuthenticationOk (B) before that is a
 * server skipping its proof and must be refused. Any ScramError ends the exchange.
 */
export class ScramClientExchange {
  /**
   * Derived keys per (password, salt, iterations), least recently used first. Every upstream
   * connection of a pool repeats Hi() with the same inputs; a pending derivation is shared, so
   * a burst of connections costs one. Keyed by a hash, so no password sits in the key.
   */
  static readonly #keyCache = new Map<string, Promise<DerivedKeys>>();

  /** Forgets every derived key, e.g. after a reload that changed passwords. */
  static clearKeyCache(): void {
    ScramClientExchange.#keyCache.clear();
  }

  readonly #password: string;
  readonly #clientNonce: string;
  readonly #clientFirstBare: string;
  readonly #maxIterations: number;
  #step: ClientStep = ClientStep.Start;
  #serverSignature: Buffer | null = null;

  constructor(password: string, options: ScramClientOptions = {}) {
    const nonce = options.nonce ?? randomBytes(DEFAULT_NONCE_BYTES).toString("base64");
    if (!isPrintable(nonce)) {
      throw new RangeError("invalid SCRAM nonce: printable ASCII without ',' expected");
    }
    const maxIterations = options.maxIterations ?? DEFAULT_MAX_SERVER_ITERATIONS;
    if (!isValidIterations(maxIterations)) {
      throw new RangeError(
        `unsupported SCRAM maxIterations ${maxIterations}, use an integer 1..${MAX_ITERATIONS}`,
      );
    }
    this.#password = password;
    this.#clientNonce = nonce;
    this.#clientFirstBare = `n=${escapeSaslName(options.username ?? "*")},r=${nonce}`;
    this.#maxIterations = maxIterations;
  }

  /** The server proved it knows the password (a valid ServerSignature was verified). */
  get done(): boolean {
    return this.#step === ClientStep.Done;
  }

  /** client-first-message: no channel binding ('n'), no authorization identity. */
  clientFirst(): string {
    this.#enter(ClientStep.Start, "client-first-message");
    this.#step = ClientStep.AwaitServerFirst;
    return `n,,${this.#clientFirstBare}`;
  }

  /**
   * server-first-message -> client-final-message. The message is checked at once; Hi() then runs
   * on the libuv thread pool (crypto.pbkdf2), never on the event loop the relay shares.
   */
  async serverFirst(message: string): Promise<string> {
    this.#enter(ClientStep.AwaitServerFirst, "server-first-message");
    const what = "server-first-message";
    const r = new AttrReader(message, what);
    if (r.peek() === "m") {
      throw new ScramError(
        "unsupported_feature",
        "the server requires an unsupported SCRAM extension",
      );
    }
    const nonce = r.attr("r");
    if (!nonce.startsWith(this.#clientNonce) || nonce.length === this.#clientNonce.length) {
      throw new ScramError("nonce_mismatch", "server nonce does not extend the client nonce");
    }
    if (!isPrintable(nonce)) throw malformed(what, "nonce not printable");
    const salt = decodeBase64(r.attr("s"));
    if (salt === null) throw malformed(what, "invalid salt");
    const iterationsText = r.attr("i");
    const iterations = /^[0-9]{1,10}$/.test(iterationsText) ? Number(iterationsText) : Number.NaN;
    if (!isValidIterations(iterations)) throw malformed(what, "invalid iteration count");
    if (!r.atEnd()) throw malformed(what, "garbage after the iteration count");
    if (iterations > this.#maxIterations) {
      throw new ScramError(
        "too_many_iterations",
        `the server asks for ${iterations} SCRAM iterations, more than the limit of ${this.#maxIterations}`,
      );
    }

    this.#step = ClientStep.Deriving;
    const keys = await ScramClientExchange.#keys(preparePassword(this.#password), salt, iterations);
    // Whatever arrived meanwhile (a message out of turn) has failed the exchange.
    if (this.#step !== ClientStep.Deriving) {
      throw new ScramError("unexpected_message", "the SCRAM exchange ended during Hi()");
    }
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.#clientFirstBare},${message},${withoutProof}`;
    const proof = xor(keys.clientKey, hmac(sha256(keys.clientKey), authMessage));
    this.#serverSignature = hmac(keys.serverKey, authMessage);
    this.#step = ClientStep.AwaitServerFinal;
    return `${withoutProof},p=${proof.toString("base64")}`;
  }

  /** Verifies server-final-message; throws ScramError('bad_server_signature') if the server is not genuine. */
  serverFinal(message: string): void {
    this.#enter(ClientStep.AwaitServerFinal, "server-final-message");
    const what = "server-final-message";
    const r = new AttrReader(message, what);
    if (r.peek() === "e") {
      // server-error = "e=" value: printable, so safe to put in our own message.
      const reason = r.attr("e");
      throw new ScramError(
        "server_error",
        `SCRAM error from server: ${reason.replace(/[^\x20-\x7e]/g, "?")}`,
      );
    }
    const signature = decodeBase64(r.attr("v"));
    if (signature === null) throw malformed(what, "invalid ServerSignature");
    if (!r.atEnd()) throw malformed(what, "garbage after the signature");
    const expected = this.#serverSignature as Buffer;
    if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) {
      throw new ScramError("bad_server_signature", "invalid SCRAM ServerSignature from server");
    }
    this.#step = ClientStep.Done;
  }

  #enter(step: ClientStep, what: string): void {
    if (this.#step !== step) {
      const was = this.#step;
      this.#step = ClientStep.Failed;
      throw new ScramError(
        "unexpected_message",
        `unexpected SCRAM ${what}: ${describeClientStep(was)}`,
      );
    }
    this.#step = ClientStep.Failed;
  }

  static #keys(password: Buffer, salt: Buffer, iterations: number): Promise<DerivedKeys> {
    const cache = ScramClientExchange.#keyCache;
    const key = `${iterations}:${salt.toString("base64")}:${sha256(password).toString("base64")}`;
    const hit = cache.get(key);
    if (hit !== undefined) {
      cache.delete(key); // re-insert: Map order is our recency order
      cache.set(key, hit);
      return hit;
    }
    const keys = deriveKeysAsync(password, salt, iterations);
    keys.catch(() => {
      if (cache.get(key) === keys) cache.delete(key);
    });
    if (cache.size >= KEY_CACHE_LIMIT) {
      const oldest = cache.keys().next();
      if (oldest.done !== true) cache.delete(oldest.value);
    }
    cache.set(key, keys);
    return keys;
  }
}

function describeClientStep(step: ClientStep): string {
  switch (step) {
    case ClientStep.Start:
      return "clientFirst() not called yet";
    case ClientStep.AwaitServerFirst:
      return "server-first-message expected";
    case ClientStep.Deriving:
      return "server-first-message is still being processed";
    case ClientStep.AwaitServerFinal:
      return "server-final-message expected";
    case ClientStep.Done:
      return "the exchange is complete";
    case ClientStep.Failed:
      return "the exchange has failed";
    default: {
      const never: never = step;
      return never;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Message parsing

/**
 * Cursor over "a=value,b=value" (RFC 5802 section 7). Values end at ',' or at the end of the
 * message; the ',' after a value is consumed with it. Every failure is a ScramError.
 */
class AttrReader {
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
function isPrintable(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || c === 0x2c) return false;
  }
  return true;
}

/** saslname: ',' and '=' are written =2C and =3D (RFC 5802 section 5.1). */
function escapeSaslName(name: string): string {
  return name.replace(/=/g, "=3D").replace(/,/g, "=2C");
}

// Canonical padded base64 only: Buffer.from(s, "base64") would skip any junk silently.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodeBase64(s: string): Buffer | null {
  return BASE64.test(s) ? Buffer.from(s, "base64") : null;
}

function isValidIterations(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= MAX_ITERATIONS;
}

// ---------------------------------------------------------------------------------------------
// Crypto

function sha256(data: Buffer): Buffer {
  return createHash("sha256").update(data).digest();
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data).digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
}

/** Hi() is PBKDF2 with HMAC-SHA-256; one 32-byte block is exactly RFC 5802's Hi. */
function deriveKeys(password: Buffer, salt: Buffer, iterations: number): DerivedKeys {
  const salted = pbkdf2Sync(password, salt, iterations, KEY_BYTES, "sha256");
  return { clientKey: hmac(salted, "Client Key"), serverKey: hmac(salted, "Server Key") };
}

/** deriveKeys on the libuv thread pool: the upstream login must not block the event loop. */
function deriveKeysAsync(password: Buffer, salt: Buffer, iterations: number): Promise<DerivedKeys> {
  return new Promise((resolve, reject) => {
    pbkdf2(password, salt, iterations, KEY_BYTES, "sha256", (err, salted) => {
      if (err) reject(err);
      else
        resolve({ clientKey: hmac(salted, "Client Key"), serverKey: hmac(salted, "Server Key") });
    });
  });
}

/** The bytes Hi() sees: SASLprep'd password, or the raw UTF-8 when SASLprep rejects it. */
function preparePassword(password: string): Buffer {
  return Buffer.from(saslPrep(password), "utf8");
}

// ---------------------------------------------------------------------------------------------
// SASLprep (RFC 4013), as PostgreSQL's src/common/saslprep.c applies it to passwords

/**
 * Returns the SASLprep form of a password, or the password unchanged where PostgreSQL falls
 * back to the raw bytes: pure ASCII, empty after mapping, a prohibited or unassigned (Unicode
 * 3.2) character, or a bad mix of right-to-left text. Like PostgreSQL, the prohibited and bidi
 * checks look at the mapped string *before* NFKC. Exported for tests.
 */
export function saslPrep(password: string): string {
  let ascii = true;
  for (let i = 0; i < password.length && ascii; i++) ascii = password.charCodeAt(i) < 0x80;
  if (ascii) return password;

  const t = saslPrepTables();
  // 1. Map: non-ASCII spaces (C.1.2) to U+0020, "commonly mapped to nothing" (B.1) removed.
  const mapped: number[] = [];
  for (const ch of password) {
    const cp = ch.codePointAt(0) as number; // a lone surrogate comes through as itself
    if (t.nonAsciiSpace.has(cp)) mapped.push(0x20);
    else if (!t.mappedToNothing.has(cp)) mapped.push(cp);
  }
  if (mapped.length === 0) return password;
  // 3. Prohibit (C.1.2-C.9) and unassigned code points (A.1).
  for (const cp of mapped) {
    if (t.prohibited.has(cp) || t.unassigned.has(cp)) return password;
  }
  // 4. Bidi (RFC 3454 section 6): with any RandALCat, no LCat, and RandALCat at both ends.
  if (mapped.some((cp) => t.randAL.has(cp))) {
    if (mapped.some((cp) => t.l.has(cp))) return password;
    if (!t.randAL.has(mapped[0]) || !t.randAL.has(mapped[mapped.length - 1])) return password;
  }
  // 2. Normalize.
  let out = "";
  for (const cp of mapped) out += String.fromCodePoint(cp);
  return out.normalize("NFKC");
}

/** Sorted inclusive code point ranges, searched by bisection. */
class CodePointRanges {
  readonly #bounds: Uint32Array; // start0, end0, start1, end1, ...

  /** `spec`: whitespace-separated hex code points "a0" or ranges "2000-200b", ascending. */
  constructor(spec: string) {
    const items = spec.trim().split(/\s+/);
    this.#bounds = new Uint32Array(items.length * 2);
    items.forEach((item, i) => {
      const [start, end = start] = item.split("-");
      this.#bounds[2 * i] = Number.parseInt(start, 16);
      this.#bounds[2 * i + 1] = Number.parseInt(end, 16);
    });
  }

  has(cp: number): boolean {
    let lo = 0;
    let hi = this.#bounds.length / 2 - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (cp < this.#bounds[2 * mid]) hi = mid - 1;
      else if (cp > this.#bounds[2 * mid + 1]) lo = mid + 1;
      else return true;
    }
    return false;
  }
}

interface SaslPrepTables {
  nonAsciiSpace: CodePointRanges;
  mappedToNothing: CodePointRanges;
  prohibited: CodePointRanges;
  unassigned: CodePointRanges;
  randAL: CodePointRanges;
  l: CodePointRanges;
}

let tables: SaslPrepTables | undefined;

/** Built on the first non-ASCII password only. */
function saslPrepTables(): SaslPrepTables {
  tables ??= {
    nonAsciiSpace: new CodePointRanges(TABLE_C_1_2),
    mappedToNothing: new CodePointRanges(TABLE_B_1),
    prohibited: new CodePointRanges(TABLE_PROHIBITED),
    unassigned: new CodePointRanges(TABLE_A_1),
    randAL: new CodePointRanges(TABLE_D_1),
    l: new CodePointRanges(TABLE_D_2),
  };
  return tables;
}

// The tables of RFC 3454 (Unicode 3.2), generated with python3's stringprep module:
//   ranges(lambda c: stringprep.in_table_a1(chr(c)))   (and b1, c12, c21..c9 unioned, d1, d2)
// and identical to the ones in PostgreSQL's src/common/saslprep.c.

/** C.1.2 Non-ASCII space characters. */
const TABLE_C_1_2 = "a0 1680 2000-200b 202f 205f 3000";

/** B.1 Commonly mapped to nothing. */
const TABLE_B_1 = "ad 34f 1806 180b-180d 200b-200d 2060 fe00-fe0f feff";

/** C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9: SASLprep's prohibited output. */
const TABLE_PROHIBITED = `
0-1f 7f-a0 340-341 6dd 70f 1680 180e 2000-200f 2028-202f 205f-2063 206a-206f 2ff0-2ffb 3000
d800-f8ff fdd0-fdef feff fff9-ffff 1d173-1d17a 1fffe-1ffff 2fffe-2ffff 3fffe-3ffff 4fffe-4ffff
5fffe-5ffff 6fffe-6ffff 7fffe-7ffff 8fffe-8ffff 9fffe-9ffff afffe-affff bfffe-bffff cfffe-cffff
dfffe-dffff e0001 e0020-e007f efffe-10ffff`;

/** D.1 Characters with bidirectional property "R" or "AL". */
const TABLE_D_1 = `
5be 5c0 5c3 5d0-5ea 5f0-5f4 61b 61f 621-63a 640-64a 66d-66f 671-6d5 6dd 6e5-6e6 6fa-6fe 700-70d
710 712-72c 780-7a5 7b1 200f fb1d fb1f-fb28 fb2a-fb36 fb38-fb3c fb3e fb40-fb41 fb43-fb44
fb46-fbb1 fbd3-fd3d fd50-fd8f fd92-fdc7 fdf0-fdfc fe70-fe74 fe76-fefc`;

/** A.1 Unassigned code points in Unicode 3.2. */
const TABLE_A_1 = `
221 234-24f 2ae-2af 2ef-2ff 350-35f 370-373 376-379 37b-37d 37f-383 38b 38d 3a2 3cf 3f7-3ff 487
4cf 4f6-4f7 4fa-4ff 510-530 557-558 560 588 58b-590 5a2 5ba 5c5-5cf 5eb-5ef 5f5-60b 60d-61a
61c-61e 620 63b-63f 656-65f 6ee-6ef 6ff 70e 72d-72f 74b-77f 7b2-900 904 93a-93b 94e-94f 955-957
971-980 984 98d-98e 991-992 9a9 9b1 9b3-9b5 9ba-9bb 9bd 9c5-9c6 9c9-9ca 9ce-9d6 9d8-9db 9de
9e4-9e5 9fb-a01 a03-a04 a0b-a0e a11-a12 a29 a31 a34 a37 a3a-a3b a3d a43-a46 a49-a4a a4e-a58 a5d
a5f-a65 a75-a80 a84 a8c a8e a92 aa9 ab1 ab4 aba-abb ac6 aca ace-acf ad1-adf ae1-ae5 af0-b00 b04
b0d-b0e b11-b12 b29 b31 b34-b35 b3a-b3b b44-b46 b49-b4a b4e-b55 b58-b5b b5e b62-b65 b71-b81 b84
b8b-b8d b91 b96-b98 b9b b9d ba0-ba2 ba5-ba7 bab-bad bb6 bba-bbd bc3-bc5 bc9 bce-bd6 bd8-be6
bf3-c00 c04 c0d c11 c29 c34 c3a-c3d c45 c49 c4e-c54 c57-c5f c62-c65 c70-c81 c84 c8d c91 ca9 cb4
cba-cbd cc5 cc9 cce-cd4 cd7-cdd cdf ce2-ce5 cf0-d01 d04 d0d d11 d29 d3a-d3d d44-d45 d49 d4e-d56
d58-d5f d62-d65 d70-d81 d84 d97-d99 db2 dbc dbe-dbf dc7-dc9 dcb-dce dd5 dd7 de0-df1 df5-e00
e3b-e3e e5c-e80 e83 e85-e86 e89 e8b-e8c e8e-e93 e98 ea0 ea4 ea6 ea8-ea9 eac eba ebe-ebf ec5 ec7
ece-ecf eda-edb ede-eff f48 f6b-f70 f8c-f8f f98 fbd fcd-fce fd0-fff 1022 1028 102b 1033-1035
103a-103f 105a-109f 10c6-10cf 10f9-10fa 10fc-10ff 115a-115e 11a3-11a7 11fa-11ff 1207 1247 1249
124e-124f 1257 1259 125e-125f 1287 1289 128e-128f 12af 12b1 12b6-12b7 12bf 12c1 12c6-12c7 12cf
12d7 12ef 130f 1311 1316-1317 131f 1347 135b-1360 137d-139f 13f5-1400 1677-167f 169d-169f
16f1-16ff 170d 1715-171f 1737-173f 1754-175f 176d 1771 1774-177f 17dd-17df 17ea-17ff 180f
181a-181f 1878-187f 18aa-1dff 1e9c-1e9f 1efa-1eff 1f16-1f17 1f1e-1f1f 1f46-1f47 1f4e-1f4f 1f58
1f5a 1f5c 1f5e 1f7e-1f7f 1fb5 1fc5 1fd4-1fd5 1fdc 1ff0-1ff1 1ff5 1fff 2053-2056 2058-205e
2064-2069 2072-2073 208f-209f 20b2-20cf 20eb-20ff 213b-213c 214c-2152 2184-218f 23cf-23ff
2427-243f 244b-245f 24ff 2614-2615 2618 267e-267f 268a-2700 2705 270a-270b 2728 274c 274e
2753-2755 2757 275f-2760 2795-2797 27b0 27bf-27cf 27ec-27ef 2b00-2e7f 2e9a 2ef4-2eff 2fd6-2fef
2ffc-2fff 3040 3097-3098 3100-3104 312d-3130 318f 31b8-31ef 321d-321f 3244-3250 327c-327e
32cc-32cf 32ff 3377-337a 33de-33df 33ff 4db6-4dff 9fa6-9fff a48d-a48f a4c7-abff d7a4-d7ff
fa2e-fa2f fa6b-faff fb07-fb12 fb18-fb1c fb37 fb3d fb3f fb42 fb45 fbb2-fbd2 fd40-fd4f fd90-fd91
fdc8-fdcf fdfd-fdff fe10-fe1f fe24-fe2f fe47-fe48 fe53 fe67 fe6c-fe6f fe75 fefd-fefe ff00
ffbf-ffc1 ffc8-ffc9 ffd0-ffd1 ffd8-ffd9 ffdd-ffdf ffe7 ffef-fff8 10000-102ff 1031f 10324-1032f
1034b-103ff 10426-10427 1044e-1cfff 1d0f6-1d0ff 1d127-1d129 1d1de-1d3ff 1d455 1d49d 1d4a0-1d4a1
1d4a3-1d4a4 1d4a7-1d4a8 1d4ad 1d4ba 1d4bc 1d4c1 1d4c4 1d506 1d50b-1d50c 1d515 1d51d 1d53a 1d53f
1d545 1d547-1d549 1d551 1d6a4-1d6a7 1d7ca-1d7cd 1d800-1fffd 2a6d7-2f7ff 2fa1e-2fffd 30000-3fffd
40000-4fffd 50000-5fffd 60000-6fffd 70000-7fffd 80000-8fffd 90000-9fffd a0000-afffd b0000-bfffd
c0000-cfffd d0000-dfffd e0000 e0002-e001f e0080-efffd`;

/** D.2 Characters with bidirectional property "L". */
const TABLE_D_2 = `
41-5a 61-7a aa b5 ba c0-d6 d8-f6 f8-220 222-233 250-2ad 2b0-2b8 2bb-2c1 2d0-2d1 2e0-2e4 2ee 37a
386 388-38a 38c 38e-3a1 3a3-3ce 3d0-3f5 400-482 48a-4ce 4d0-4f5 4f8-4f9 500-50f 531-556 559-55f
561-587 589 903 905-939 93d-940 949-94c 950 958-961 964-970 982-983 985-98c 98f-990 993-9a8
9aa-9b0 9b2 9b6-9b9 9be-9c0 9c7-9c8 9cb-9cc 9d7 9dc-9dd 9df-9e1 9e6-9f1 9f4-9fa a05-a0a a0f-a10
a13-a28 a2a-a30 a32-a33 a35-a36 a38-a39 a3e-a40 a59-a5c a5e a66-a6f a72-a74 a83 a85-a8b a8d
a8f-a91 a93-aa8 aaa-ab0 ab2-ab3 ab5-ab9 abd-ac0 ac9 acb-acc ad0 ae0 ae6-aef b02-b03 b05-b0c
b0f-b10 b13-b28 b2a-b30 b32-b33 b36-b39 b3d-b3e b40 b47-b48 b4b-b4c b57 b5c-b5d b5f-b61 b66-b70
b83 b85-b8a b8e-b90 b92-b95 b99-b9a b9c b9e-b9f ba3-ba4 ba8-baa bae-bb5 bb7-bb9 bbe-bbf bc1-bc2
bc6-bc8 bca-bcc bd7 be7-bf2 c01-c03 c05-c0c c0e-c10 c12-c28 c2a-c33 c35-c39 c41-c44 c60-c61
c66-c6f c82-c83 c85-c8c c8e-c90 c92-ca8 caa-cb3 cb5-cb9 cbe cc0-cc4 cc7-cc8 cca-ccb cd5-cd6 cde
ce0-ce1 ce6-cef d02-d03 d05-d0c d0e-d10 d12-d28 d2a-d39 d3e-d40 d46-d48 d4a-d4c d57 d60-d61
d66-d6f d82-d83 d85-d96 d9a-db1 db3-dbb dbd dc0-dc6 dcf-dd1 dd8-ddf df2-df4 e01-e30 e32-e33
e40-e46 e4f-e5b e81-e82 e84 e87-e88 e8a e8d e94-e97 e99-e9f ea1-ea3 ea5 ea7 eaa-eab ead-eb0
eb2-eb3 ebd ec0-ec4 ec6 ed0-ed9 edc-edd f00-f17 f1a-f34 f36 f38 f3e-f47 f49-f6a f7f f85 f88-f8b
fbe-fc5 fc7-fcc fcf 1000-1021 1023-1027 1029-102a 102c 1031 1038 1040-1057 10a0-10c5 10d0-10f8
10fb 1100-1159 115f-11a2 11a8-11f9 1200-1206 1208-1246 1248 124a-124d 1250-1256 1258 125a-125d
1260-1286 1288 128a-128d 1290-12ae 12b0 12b2-12b5 12b8-12be 12c0 12c2-12c5 12c8-12ce 12d0-12d6
12d8-12ee 12f0-130e 1310 1312-1315 1318-131e 1320-1346 1348-135a 1361-137c 13a0-13f4 1401-1676
1681-169a 16a0-16f0 1700-170c 170e-1711 1720-1731 1735-1736 1740-1751 1760-176c 176e-1770
1780-17b6 17be-17c5 17c7-17c8 17d4-17da 17dc 17e0-17e9 1810-1819 1820-1877 1880-18a8 1e00-1e9b
1ea0-1ef9 1f00-1f15 1f18-1f1d 1f20-1f45 1f48-1f4d 1f50-1f57 1f59 1f5b 1f5d 1f5f-1f7d 1f80-1fb4
1fb6-1fbc 1fbe 1fc2-1fc4 1fc6-1fcc 1fd0-1fd3 1fd6-1fdb 1fe0-1fec 1ff2-1ff4 1ff6-1ffc 200e 2071
207f 2102 2107 210a-2113 2115 2119-211d 2124 2126 2128 212a-212d 212f-2131 2133-2139 213d-213f
2145-2149 2160-2183 2336-237a 2395 249c-24e9 3005-3007 3021-3029 3031-3035 3038-303c 3041-3096
309d-309f 30a1-30fa 30fc-30ff 3105-312c 3131-318e 3190-31b7 31f0-321c 3220-3243 3260-327b
327f-32b0 32c0-32cb 32d0-32fe 3300-3376 337b-33dd 33e0-33fe 3400-4db5 4e00-9fa5 a000-a48c
ac00-d7a3 e000-fa2d fa30-fa6a fb00-fb06 fb13-fb17 ff21-ff3a ff41-ff5a ff66-ffbe ffc2-ffc7
ffca-ffcf ffd2-ffd7 ffda-ffdc 10300-1031e 10320-10323 10330-1034a 10400-10425 10428-1044d
1d000-1d0f5 1d100-1d126 1d12a-1d166 1d16a-1d172 1d183-1d184 1d18c-1d1a9 1d1ae-1d1dd 1d400-1d454
1d456-1d49c 1d49e-1d49f 1d4a2 1d4a5-1d4a6 1d4a9-1d4ac 1d4ae-1d4b9 1d4bb 1d4bd-1d4c0 1d4c2-1d4c3
1d4c5-1d505 1d507-1d50a 1d50d-1d514 1d516-1d51c 1d51e-1d539 1d53b-1d53e 1d540-1d544 1d546
1d54a-1d550 1d552-1d6a3 1d6a8-1d7c9 20000-2a6d6 2f800-2fa1d f0000-ffffd 100000-10fffd`;
