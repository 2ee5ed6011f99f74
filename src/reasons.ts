// Reasons: the closed sets of why something happened to a connection. Each value is used verbatim
// as the log field and the metric label (PgDog disconnect_reason.rs, PgBouncer janitor.c). This
// file imports nothing of ours: frontend, backend and metrics all import it.

/** Why a server (backend) connection was closed. */
export const DisconnectReason = {
  IdleTimeout: "idle_timeout",
  Lifetime: "lifetime",
  CheckFailed: "check_failed",
  /** The server sent FATAL 57P01 (pg_terminate_backend, smart/fast shutdown). */
  Terminated: "terminated",
  /** The server crashed or was stopped immediately (57P02, or a reset without a message). */
  Crashed: "crashed",
  /** FATAL 57P05 idle_session_timeout or 25P03 idle_in_transaction_session_timeout. */
  ServerTimeout: "server_timeout",
  /** The socket closed or failed without a message from the server. */
  Network: "network",
  ProtocolError: "protocol_error",
  LoginFailed: "login_failed",
  ConnectTimeout: "connect_timeout",
  ResponseTimeout: "response_timeout",
  /** Its client left while the server was not clean (mid-transaction, pinned, owing replies). */
  ClientGone: "client_gone",
  ResetFailed: "reset_failed",
  Reconnect: "reconnect",
  Shutdown: "shutdown",
  PoolShrink: "pool_shrink",
  ServerFatal: "server_fatal",
  /** The server's role no longer fits target_session_attrs (a failover: writer turned reader). */
  RoleChanged: "role_changed",
} as const;
export type DisconnectReason = (typeof DisconnectReason)[keyof typeof DisconnectReason];

/**
 * Why an attempt to open a server connection failed: the name did not resolve, nothing listened
 * (or the network refused the connection), no answer in time, TLS could not be set up or
 * verified, the login was refused, or the server answered with another error.
 */
export const ConnectFailureReason = {
  Dns: "dns",
  Refused: "refused",
  Timeout: "timeout",
  Tls: "tls",
  Auth: "auth",
  ServerError: "server_error",
} as const;
export type ConnectFailureReason = (typeof ConnectFailureReason)[keyof typeof ConnectFailureReason];

/** Why a client connection was closed: decided by the code path that closes it. */
export const ClientCloseReason = {
  /** The client sent Terminate. */
  ClientExit: "client_exit",
  /** The client's socket closed or failed without a Terminate. */
  ClientGone: "client_gone",
  /** A connection that carried a CancelRequest (it ends after the request, as in Postgres). */
  CancelRequest: "cancel_request",
  /** A malformed startup packet or message, or a message out of turn. */
  ProtocolError: "protocol_error",
  /** Refused at login: authentication, TLS required, unknown database, a server's refusal. */
  LoginFailed: "login_failed",
  /** client_login_timeout: the login did not complete in time. */
  LoginTimeout: "login_timeout",
  /** client_idle_timeout. */
  IdleTimeout: "idle_timeout",
  /** client_write_timeout: the client stopped reading while holding a server. */
  WriteTimeout: "write_timeout",
  /** The sidecar is shutting down (a login while draining, or stop). */
  Shutdown: "shutdown",
  /** A pinned client's server died with state pgsidecar cannot restore. */
  ServerLost: "server_lost",
  /** A bug was caught in one of the client's socket handlers. */
  InternalError: "internal_error",
} as const;
export type ClientCloseReason = (typeof ClientCloseReason)[keyof typeof ClientCloseReason];

/** Why a server is tied to its client; the same string in logs, metrics and SHOW CLIENTS. */
export const PinReason = {
  /** A session SET of a parameter that is not re-applied on the next server. */
  Set: "set",
  /** SET ROLE (the proxy cannot restore it: it would need the client's privileges). */
  SetRole: "set_role",
  SessionAuthorization: "session_authorization",
  Listen: "listen",
  TempTable: "temp_table",
  AdvisoryLock: "advisory_lock",
  HoldCursor: "hold_cursor",
  SqlPrepare: "sql_prepare",
  PreparedStatement: "prepared_statement",
  /** DO, CALL, LOAD: code whose effects the proxy cannot see. */
  UnknownCode: "unknown_code",
  /** Text that may carry session state but could not be parsed (or read unambiguously). */
  Unparsed: "unparsed",
} as const;
export type PinReason = (typeof PinReason)[keyof typeof PinReason];

/** What became of a unit whose server was lost before any of its reply reached the client. */
export const ReplayOutcome = {
  /** Replayed on another server and completed. */
  Succeeded: "succeeded",
  /** retry_max reached, or the replay failed. */
  GaveUp: "gave_up",
  /** The retry policy does not replay it. */
  NotRetryable: "not_retryable",
} as const;
export type ReplayOutcome = (typeof ReplayOutcome)[keyof typeof ReplayOutcome];
