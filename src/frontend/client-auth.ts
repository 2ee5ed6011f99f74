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
import { ProxyError } from "../errors.js";
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

export class ClientAuth {
  private scram: ScramServerExchange | null = null;
  private md5Salt: Buffer | null = null;
  private stage = 0;

  constructor(
    private readonly type: AuthType,
    private readonly userName: string,
    private readonly user: KnownUser | undefined,
  ) {}

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
          const given = cstring(body, 0);
          const expected = this.user?.password ?? "";
          const ok =
            this.user !== undefined &&
            given.length === expected.length &&
            timingSafeEqual(Buffer.from(given), Buffer.from(expected));
          return ok ? { kind: "ok", message: null } : { kind: "fail", error: this.failure() };
        }
        case "md5": {
          const given = cstring(body, 0);
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
        return {
          kind: "fail",
          error: err.code === "bad_proof" ? this.failure() : protocolViolation(err.message),
        };
      }
      return { kind: "fail", error: protocolViolation() };
    }
  }

  private respondScram(body: Buffer): AuthStep {
    const scram = this.scram as ScramServerExchange;
    if (this.stage === 0) {
      // SASLInitialResponse: mechanism name, Int32 length, data.
      const mechEnd = body.indexOf(0);
      if (mechEnd < 0 || body.length < mechEnd + 5) throw protocolViolation();
      const mechanism = body.toString("utf8", 0, mechEnd);
      if (mechanism !== "SCRAM-SHA-256") {
        throw new ProxyError(
          "auth_mechanism",
          "08P01",
          "client selected an invalid SASL authentication mechanism",
          "FATAL",
        );
      }
      const len = body.readInt32BE(mechEnd + 1);
      const data = body.toString("utf8", mechEnd + 5, len < 0 ? body.length : mechEnd + 5 + len);
      this.stage = 1;
      return { kind: "send", message: msg.authenticationSASLContinue(scram.clientFirst(data)) };
    }
    const serverFinal = scram.clientFinal(body.toString("utf8"));
    if (this.user === undefined) return { kind: "fail", error: this.failure() };
    return { kind: "ok", message: msg.authenticationSASLFinal(serverFinal) };
  }

  /** The message Postgres sends for a wrong password, word for word. */
  private failure(): ProxyError {
    return new ProxyError(
      "auth_failed",
      "28P01",
      `password authentication failed for user "${this.userName}"`,
      "FATAL",
    );
  }
}

function protocolViolation(detail?: string): ProxyError {
  return new ProxyError(
    "auth_protocol",
    "08P01",
    detail ? `malformed authentication message: ${detail}` : "malformed authentication message",
    "FATAL",
  );
}

function cstring(buf: Buffer, start: number): string {
  const end = buf.indexOf(0, start);
  if (end < 0) throw protocolViolation();
  return buf.toString("utf8", start, end);
}
