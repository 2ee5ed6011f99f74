// Reasons: closed unions, each value used verbatim as a log field and a metric label.

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
