// Error classes with stable codes, and the reason a server FATAL closes its connection with.

import { type ErrorFields, errorResponse } from "./protocol/messages.js";
import { DisconnectReason } from "./reasons.js";

// Server disconnect reasons live in reasons.ts (imported by metrics too); re-exported for callers.
export { DisconnectReason };

/** An error that reaches a client as an ErrorResponse with a real SQLSTATE. */
export class ProxyError extends Error {
  override name = "ProxyError";
  constructor(
    readonly code: string,
    readonly sqlstate: string,
    message: string,
    readonly severity: "ERROR" | "FATAL" = "ERROR",
    readonly detail?: string,
  ) {
    super(message);
  }

  toFields(): ErrorFields {
    return {
      severity: this.severity,
      code: this.sqlstate,
      message: this.message,
      detail: this.detail,
    };
  }

  toMessage(): Buffer {
    return errorResponse(this.toFields());
  }
}

/** An ErrorResponse a server sent, decoded to the fields we act on. */
export class ServerError extends Error {
  override name = "ServerError";
  readonly code = "server_error";
  constructor(
    readonly severity: string,
    readonly sqlstate: string,
    message: string,
    /** The raw ErrorResponse, to forward unchanged. */
    readonly raw: Buffer,
  ) {
    super(message);
  }

  get fatal(): boolean {
    return this.severity === "FATAL" || this.severity === "PANIC";
  }
}

/** Decodes an ErrorResponse/NoticeResponse body: fields are (Byte1 code, String value)* then 0. */
export function decodeErrorFields(buf: Buffer, start: number, end: number): Map<string, string> {
  const fields = new Map<string, string>();
  let pos = start + 5;
  while (pos < end && buf[pos] !== 0) {
    const type = String.fromCharCode(buf[pos]);
    const valueEnd = buf.indexOf(0, pos + 1);
    if (valueEnd < 0 || valueEnd >= end) break;
    fields.set(type, buf.toString("utf8", pos + 1, valueEnd));
    pos = valueEnd + 1;
  }
  return fields;
}

export function serverErrorFrom(buf: Buffer, start: number, end: number): ServerError {
  const f = decodeErrorFields(buf, start, end);
  return new ServerError(
    f.get("V") ?? f.get("S") ?? "ERROR",
    f.get("C") ?? "XX000",
    f.get("M") ?? "unknown server error",
    Buffer.from(buf.subarray(start, end)),
  );
}

/** Maps a FATAL's SQLSTATE to the reason we record for the lost connection. */
export function reasonForFatal(sqlstate: string): DisconnectReason {
  switch (sqlstate) {
    case "57P01":
      return DisconnectReason.Terminated;
    case "57P02":
      return DisconnectReason.Crashed;
    case "57P05":
    case "25P03":
    case "25P04":
      return DisconnectReason.ServerTimeout;
    default:
      return DisconnectReason.ServerFatal;
  }
}

export const lostConnectionError = (inTransaction: boolean) =>
  new ProxyError(
    "server_lost",
    "08006",
    inTransaction
      ? "the server connection was lost; the transaction was rolled back"
      : "the server connection was lost while the statement was running",
  );

/**
 * The server died after it may have committed (a COMMIT, or an implicit transaction whose last
 * message it may have read): Postgres's own SQLSTATE for "we cannot tell".
 */
export const resolutionUnknownError = () =>
  new ProxyError(
    "transaction_resolution_unknown",
    "08007",
    "the server connection was lost while the transaction was committing; it may or may not have been committed",
  );
