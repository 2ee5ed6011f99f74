// The server end of SCRAM-SHA-256: what pg_authid keeps for a SCRAM user, and one client's login
// against it with the checks of PostgreSQL's src/backend/libpq/auth-scram.c.
import { randomBytes, timingSafeEqual } from "node:crypto";
import {
  AttrReader,
  DEFAULT_ITERATIONS,
  DEFAULT_NONCE_BYTES,
  DEFAULT_SALT_BYTES,
  decodeBase64,
  deriveKeys,
  hmac,
  isPrintable,
  isValidIterations,
  KEY_BYTES,
  MAX_ITERATIONS,
  malformed,
  preparePassword,
  ScramError,
  sha256,
  xor,
} from "./scram-common.js";

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
