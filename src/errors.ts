// Errors: the catalogue of every error pgsidecar sends itself (ProxyErrorReason: a stable code,
// its SQLSTATE and severity, built by proxyError()), the error a server sent (ServerError), and the
// reason a server FATAL closes its connection with.

import { type ErrorFields, errorResponse } from "./protocol/messages.js";
import { DisconnectReason } from "./reasons.js";

// Server disconnect reasons live in reasons.ts (imported by metrics too); re-exported for callers.
export { DisconnectReason };

/**
 * An error that reaches a client as an ErrorResponse with a real SQLSTATE. Built only through the
 * catalogue: proxyError() or proxyErrorFrom() from a ProxyErrorReason, or asFatal() of one (the
 * constructor is public for them, and for tests; nothing else calls it).
 */
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

  /** The same error ending the session: what a login reports of a failure it cannot go on from. */
  asFatal(): ProxyError {
    return new ProxyError(this.code, this.sqlstate, this.message, "FATAL", this.detail);
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

/** What a reason fixes of its errors; `message` when every error of the reason says the same. */
export interface ProxyErrorSpec {
  /** Stable: log field, what tests and clients match. Several reasons may share one. */
  readonly code: string;
  readonly sqlstate: string;
  readonly severity: "ERROR" | "FATAL";
  readonly message?: string;
}

type Severity = ProxyErrorSpec["severity"];
function spec(code: string, sqlstate: string, severity: Severity): ProxyErrorSpec;
function spec(
  code: string,
  sqlstate: string,
  severity: Severity,
  message: string,
): ProxyErrorSpec & { readonly message: string };
function spec(code: string, sqlstate: string, severity: Severity, message?: string) {
  return message === undefined
    ? { code, sqlstate, severity }
    : { code, sqlstate, severity, message };
}

/**
 * Why pgsidecar itself answers with an error, each with its code, SQLSTATE and severity. The
 * codes and SQLSTATEs are a contract (clients retry on 08006, tests and dashboards match the
 * codes): change them only on purpose. SQLSTATEs are Postgres's own for the same condition.
 */
export const ProxyErrorReason = {
  // Opening a server connection. ERROR: a waiting client gets it from the pool; a login makes it
  // FATAL (asFatal()).
  Dns: spec("dns", "08006", "ERROR"),
  ConnectFailed: spec("connect_failed", "08006", "ERROR"),
  ConnectTimeout: spec(
    "connect_timeout",
    "08006",
    "ERROR",
    "timeout while connecting to the server",
  ),
  /** The server's certificate failed verification: it will fail again, no backoff. */
  TlsVerify: spec("tls_verify", "08006", "ERROR"),
  /** Bytes after the server's one-byte SSL answer (CVE-2021-23222). */
  SslProtocol: spec(
    "ssl_protocol",
    "08P01",
    "ERROR",
    "received unencrypted data after SSL response",
  ),
  SslRefused: spec(
    "ssl_refused",
    "08006",
    "ERROR",
    "server does not support SSL, but SSL was required",
  ),
  SslRootCert: spec("ssl_root_cert", "08006", "ERROR"),
  /** No host's role fits target_session_attrs. */
  WrongRole: spec("wrong_role", "08006", "ERROR"),
  /** A rotating upstream password (file, command, RDS IAM) could not be had. */
  CredentialUnavailable: spec("credential_unavailable", "08006", "ERROR"),
  // Logging in to the upstream.
  NoPassword: spec("no_password", "28P01", "FATAL"),
  PasswordWithoutTls: spec("password_without_tls", "28000", "FATAL"),
  AuthUnsupported: spec("auth_unsupported", "08P01", "FATAL"),
  /** server_scram_max_iterations: the server asks for more work than we allow. */
  ScramIterations: spec("scram_iterations", "28000", "FATAL"),
  // Authentication, either side: a malformed or out-of-turn exchange, a wrong password.
  AuthProtocol: spec("auth_protocol", "08P01", "FATAL"),
  AuthFailed: spec("auth_failed", "28P01", "FATAL"),
  // A server connection.
  ServerProtocolError: spec("protocol_error", "08P01", "ERROR"),
  ServerInternalError: spec("internal_error", "XX000", "ERROR", "internal error in pgsidecar"),
  /** The server died mid-unit; a client that may retry gets 08006. */
  ServerLost: spec("server_lost", "08006", "ERROR"),
  /** The server died after it may have committed: Postgres's own "we cannot tell". */
  ResolutionUnknown: spec(
    "transaction_resolution_unknown",
    "08007",
    "ERROR",
    "the server connection was lost while the transaction was committing; it may or may not have been committed",
  ),
  PinnedStateLost: spec("pinned_state_lost", "08006", "FATAL"),
  // Waiting for a server.
  QueryWaitTimeout: spec("query_wait_timeout", "08006", "ERROR"),
  /** query_wait_timeout while the server said it is starting up (57P03): clients wait and retry. */
  QueryWaitTimeoutStartingUp: spec("query_wait_timeout", "57P03", "ERROR"),
  ListenTimeout: spec("listen_timeout", "08006", "ERROR"),
  /** The pool or the sidecar is shutting down. */
  Shutdown: spec("shutdown", "57P01", "FATAL"),
  // A client's login.
  /** A malformed startup packet; StartupError's SQLSTATE when it has one. */
  Startup: spec("startup", "08P01", "FATAL"),
  Replication: spec(
    "replication",
    "08P01",
    "FATAL",
    "replication connections are not supported by pgsidecar",
  ),
  TlsRequired: spec("tls_required", "28000", "FATAL", "pgsidecar requires TLS connections"),
  AuthMechanism: spec(
    "auth_mechanism",
    "08P01",
    "FATAL",
    "client selected an invalid SASL authentication mechanism",
  ),
  AdminDenied: spec("admin_denied", "28000", "FATAL"),
  NoDatabase: spec("no_database", "3D000", "FATAL"),
  LoginTimeout: spec("login_timeout", "08P01", "FATAL", "canceling authentication due to timeout"),
  // A logged-in client.
  ProtocolViolation: spec("protocol_violation", "08P01", "FATAL"),
  ClientInternalError: spec("internal_error", "XX000", "FATAL", "internal error in pgsidecar"),
  ClientIdleTimeout: spec(
    "client_idle_timeout",
    "57P05",
    "FATAL",
    "terminating connection due to idle-session timeout (client_idle_timeout)",
  ),
  ClientWriteTimeout: spec("client_write_timeout", "08006", "FATAL"),
  AdminExtended: spec(
    "admin_extended",
    "0A000",
    "ERROR",
    "the admin console supports only simple queries",
  ),
  /** A statement in a transaction the proxy knows has failed (its server was lost). */
  InFailedTransaction: spec(
    "in_failed_transaction",
    "25P02",
    "ERROR",
    "current transaction is aborted, commands ignored until end of transaction block",
  ),
} as const;

/** The message a reason's error takes: optional when the reason has its own. */
type MessageArgs<R extends ProxyErrorSpec> = R extends { readonly message: string }
  ? [message?: string, detail?: string]
  : [message: string, detail?: string];

/** The one way to build a ProxyError: from its reason, with a message unless the reason has one. */
export function proxyError<R extends ProxyErrorSpec>(
  reason: R,
  ...args: MessageArgs<R>
): ProxyError {
  const [message, detail] = args;
  return new ProxyError(
    reason.code,
    reason.sqlstate,
    message ?? reason.message ?? reason.code,
    reason.severity,
    detail,
  );
}

/**
 * An error of `reason` for a check that failed elsewhere (a StartupError, a ScramError): its
 * message, and its SQLSTATE when it has one (Postgres's for the same check).
 */
export function proxyErrorFrom(
  reason: ProxyErrorSpec,
  failed: { readonly message: string; readonly sqlstate?: string },
): ProxyError {
  return new ProxyError(
    reason.code,
    failed.sqlstate ?? reason.sqlstate,
    failed.message,
    reason.severity,
  );
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
  proxyError(
    ProxyErrorReason.ServerLost,
    inTransaction
      ? "the server connection was lost; the transaction was rolled back"
      : "the server connection was lost while the statement was running",
  );

/**
 * The server died after it may have committed (a COMMIT, or an implicit transaction whose last
 * message it may have read): Postgres's own SQLSTATE for "we cannot tell".
 */
export const resolutionUnknownError = () => proxyError(ProxyErrorReason.ResolutionUnknown);
