// Replies a session builds itself: errors in the words Postgres uses, and server messages
// rewritten for the client (its own statement names, FATAL at login).

import {
  decodeErrorFields,
  type ProxyError,
  ProxyErrorReason,
  proxyError,
  type ServerError,
} from "../errors.js";
import * as msg from "../protocol/messages.js";

const HEADER = 5;

const SERVER_NAME = /pgsc_[0-9a-f]{40}/g;

/**
 * A copy of a server message with each server-side statement name replaced by the client's
 * name for it (an error must read as it would on a direct connection), its length fixed.
 */
export function renameStatements(
  message: Buffer,
  clientName: (server: string) => string | undefined,
): Buffer {
  const text = message.toString("latin1", HEADER);
  const pieces: Buffer[] = [message.subarray(0, HEADER)];
  let last = 0;
  for (const m of text.matchAll(SERVER_NAME)) {
    const name = clientName(m[0]);
    if (name === undefined) continue;
    pieces.push(Buffer.from(text.slice(last, m.index), "latin1"), Buffer.from(name, "utf8"));
    last = (m.index ?? 0) + m[0].length;
  }
  pieces.push(Buffer.from(text.slice(last), "latin1"));
  const out = Buffer.concat(pieces);
  out.writeInt32BE(out.length - 1, 1);
  return out;
}

/** A server's ErrorResponse as the FATAL Postgres sends when the same fails at login. */
export function asFatal(error: Buffer): Buffer {
  const f = decodeErrorFields(error, 0, error.length);
  return msg.errorResponse({
    severity: "FATAL",
    code: f.get("C") ?? "XX000",
    message: f.get("M") ?? "invalid startup parameter",
    detail: f.get("D"),
    hint: f.get("H"),
  });
}

/** ParameterDescription with no parameters, then NoData: Describe of a statement like DEALLOCATE. */
export const noParameters = Buffer.concat([Buffer.from([0x74, 0, 0, 0, 6, 0, 0]), msg.noData]);

export function abortedTransactionError(): ProxyError {
  return proxyError(ProxyErrorReason.InFailedTransaction);
}

export function errorFromServer(err: ServerError): Buffer {
  return msg.errorResponse({ severity: "ERROR", code: err.sqlstate, message: err.message });
}
