// The client end of SCRAM-SHA-256: the proxy's login to the upstream, as libpq's fe-auth-scram.c.
import { randomBytes, timingSafeEqual } from "node:crypto";
import {
  AttrReader,
  DEFAULT_NONCE_BYTES,
  type DerivedKeys,
  decodeBase64,
  deriveKeysAsync,
  hmac,
  isPrintable,
  isValidIterations,
  MAX_ITERATIONS,
  malformed,
  preparePassword,
  ScramError,
  sha256,
  xor,
} from "./scram-common.js";

/** Derived keys kept by ScramClientExchange: one per (password, salt, iterations) upstream login. */
const KEY_CACHE_LIMIT = 64;

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

/** saslname: ',' and '=' are written =2C and =3D (RFC 5802 section 5.1). */
function escapeSaslName(name: string): string {
  return name.replace(/=/g, "=3D").replace(/,/g, "=2C");
}
