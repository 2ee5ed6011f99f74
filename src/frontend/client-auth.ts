// ClientAuth: authenticates one client against the credentials the sidecar knows, with the
// method of `auth_type`. Unknown users run the same exchange and fail the same way as a wrong
// password, as Postgres does, so a client cannot probe which users exist.

import { randomBytes, timingSafeEqual } from "node:crypto";
import { verifyMd5Password } from "../auth/md5.js";
import {
  mockScramSecret,
  ScramError,
  type ScramSecret,
  ScramServerExchange,
} from "../auth/scram-sha-256.js";
import { ProxyError, ProxyErrorReason, proxyError, proxyErrorFrom } from "../errors.js";
import * as msg from "../protocol/messages.js";

export type AuthType = "scram-sha-256" | "md5" | "password" | "trust";

export interface KnownUser {
  name: string;
  password: string;
  admin: boolean;
  scramSecret: ScramSecret;
}

export type AuthStep =
  | { kind: "send"; message: Buffer }
  | { kind: "ok"; message: Buffer | null }
  | { kind: "fail"; error: ProxyError };

/** Postgres's PG_MAX_AUTH_TOKEN_LENGTH: the longest PasswordMessage (F) it reads, length word included. */
export const MAX_PASSWORD_MESSAGE = 65535;
/** Postgres's PG_MAX_SASL_MESSAGE_LENGTH (auth-sasl.c): the longest SASL message it reads. */
export const MAX_SASL_MESSAGE = 1024;

/** Where a SCRAM exchange is, as the client's messages arrive. */
const ScramStage = {
  /** SASLInitialResponse (F) expected. */
  Initial: "initial",
  /** The SASLInitialResponse carried no data (length -1): client-first-message comes in a SASLResponse. */
  ClientFirst: "client_first",
  /** SASLResponse (F) with client-final-message expected. */
  ClientFinal: "client_final",
} as const;
type ScramStage = (typeof ScramStage)[keyof typeof ScramStage];

export class ClientAuth {
  private scram: ScramServerExchange | null = null;
  private md5Salt: Buffer | null = null;
  private stage: ScramStage = ScramStage.Initial;

  constructor(
    private readonly type: AuthType,
    private readonly userName: string,
    private readonly user: KnownUser | undefined,
  ) {}

  /** What the client must answer with, in Postgres's words ("expected SASL response, got ..."). */
  get responseName(): string {
    return this.type === "scram-sha-256" ? "SASL response" : "password response";
  }

  /** The longest answer Postgres would read for this method (length word included). */
  get maxResponseBytes(): number {
    return this.type === "scram-sha-256" ? MAX_SASL_MESSAGE : MAX_PASSWORD_MESSAGE;
  }

  /** The first message: an authentication request, or AuthenticationOk for trust. */
  start(): AuthStep {
    switch (this.type) {
      case "trust":
        if (!this.user) return { kind: "fail", error: this.failure() };
        return { kind: "ok", message: null };
      case "password":
        return { kind: "send", message: msg.authenticationCleartext };
      case "md5":
        this.md5Salt = randomBytes(4);
        return { kind: "send", message: msg.authenticationMD5(this.md5Salt) };
      case "scram-sha-256":
        this.scram = new ScramServerExchange(
          this.user?.scramSecret ?? mockScramSecret(this.userName),
        );
        return { kind: "send", message: msg.authenticationSASL(["SCRAM-SHA-256"]) };
    }
  }

  /** Handles a PasswordMessage / SASLInitialResponse / SASLResponse body ('p'). */
  respond(body: Buffer): AuthStep {
    try {
      switch (this.type) {
        case "trust":
          return { kind: "fail", error: protocolViolation() };
        case "password": {
          const given = passwordPacket(body);
          const expected = this.user?.password ?? "";
          const ok =
            this.user !== undefined &&
            given.length === expected.length &&
            timingSafeEqual(Buffer.from(given), Buffer.from(expected));
          return ok ? { kind: "ok", message: null } : { kind: "fail", error: this.failure() };
        }
        case "md5": {
          const given = passwordPacket(body);
          const ok =
            this.user !== undefined &&
            verifyMd5Password(this.userName, this.user.password, this.md5Salt as Buffer, given);
          return ok ? { kind: "ok", message: null } : { kind: "fail", error: this.failure() };
        }
        case "scram-sha-256":
          return this.respondScram(body);
      }
    } catch (err) {
      if (err instanceof ProxyError) return { kind: "fail", error: err };
      if (err instanceof ScramError) {
        if (err.code === "bad_proof") return { kind: "fail", error: this.failure() };
        // Postgres: "malformed SCRAM message" (08P01), or 0A000 for what it does not support.
        return { kind: "fail", error: proxyErrorFrom(ProxyErrorReason.AuthProtocol, err) };
      }
      return { kind: "fail", error: protocolViolation() };
    }
  }

  /** SASLInitialResponse / SASLResponse (F), read as Postgres's CheckSASLAuth and scram_exchange do. */
  private respondScram(body: Buffer): AuthStep {
    const scram = this.scram as ScramServerExchange;
    if (this.stage === ScramStage.Initial) {
      // SASLInitialResponse: mechanism name, Int32 length of the data (-1: none), the data.
      const mechEnd = body.indexOf(0);
      if (mechEnd < 0) throw protocolViolation("invalid string in message");
      const mechanism = body.toString("utf8", 0, mechEnd);
      if (mechanism !== "SCRAM-SHA-256") {
        throw proxyError(ProxyErrorReason.AuthMechanism);
      }
      const dataStart = mechEnd + 5;
      if (body.length < dataStart) throw protocolViolation("insufficient data left in message");
      const len = body.readInt32BE(mechEnd + 1);
      if (len === -1) {
        // No initial response: an empty challenge, answered by client-first-message (RFC 4422 5.1).
        if (body.length !== dataStart) throw protocolViolation("invalid message format");
        this.stage = ScramStage.ClientFirst;
        return { kind: "send", message: msg.authenticationSASLContinue("") };
      }
      if (len < 0 || len > body.length - dataStart) {
        throw protocolViolation("insufficient data left in message");
      }
      if (body.length !== dataStart + len) throw protocolViolation("invalid message format");
      return this.clientFirst(scram, body.subarray(dataStart));
    }
    if (this.stage === ScramStage.ClientFirst) return this.clientFirst(scram, body);
    const serverFinal = scram.clientFinal(scramInput(body));
    if (this.user === undefined) return { kind: "fail", error: this.failure() };
    return { kind: "ok", message: msg.authenticationSASLFinal(serverFinal) };
  }

  private clientFirst(scram: ScramServerExchange, data: Buffer): AuthStep {
    const serverFirst = scram.clientFirst(scramInput(data));
    this.stage = ScramStage.ClientFinal;
    return { kind: "send", message: msg.authenticationSASLContinue(serverFirst) };
  }

  /** The message Postgres sends for a wrong password, word for word. */
  private failure(): ProxyError {
    return proxyError(
      ProxyErrorReason.AuthFailed,
      `password authentication failed for user "${this.userName}"`,
    );
  }
}

function protocolViolation(message = "malformed authentication message", detail?: string) {
  return proxyError(ProxyErrorReason.AuthProtocol, message, detail);
}

/** The SCRAM payload as text; Postgres's scram_exchange refuses an empty one first. */
function scramInput(data: Buffer): string {
  if (data.length === 0)
    throw protocolViolation("malformed SCRAM message", "The message is empty.");
  return data.toString("utf8");
}

/** A PasswordMessage's body is one string and nothing else (recv_password_packet). */
function passwordPacket(body: Buffer): string {
  const end = body.indexOf(0);
  if (end !== body.length - 1) throw protocolViolation("invalid password packet size");
  return body.toString("utf8", 0, end);
}
