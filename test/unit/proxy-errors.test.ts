// The catalogue of errors pgsidecar sends itself: the codes and SQLSTATEs are a contract (clients
// retry on 08006, tests and dashboards match the codes), so each is pinned here.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  lostConnectionError,
  ProxyError,
  ProxyErrorReason,
  proxyError,
  proxyErrorFrom,
  resolutionUnknownError,
} from "../../src/errors.js";
import { abortedTransactionError } from "../../src/frontend/replies.js";

const PINNED: Record<keyof typeof ProxyErrorReason, [string, string, "ERROR" | "FATAL"]> = {
  Dns: ["dns", "08006", "ERROR"],
  ConnectFailed: ["connect_failed", "08006", "ERROR"],
  ConnectTimeout: ["connect_timeout", "08006", "ERROR"],
  TlsVerify: ["tls_verify", "08006", "ERROR"],
  SslProtocol: ["ssl_protocol", "08P01", "ERROR"],
  SslRefused: ["ssl_refused", "08006", "ERROR"],
  SslRootCert: ["ssl_root_cert", "08006", "ERROR"],
  WrongRole: ["wrong_role", "08006", "ERROR"],
  CredentialUnavailable: ["credential_unavailable", "08006", "ERROR"],
  NoPassword: ["no_password", "28P01", "FATAL"],
  PasswordWithoutTls: ["password_without_tls", "28000", "FATAL"],
  AuthUnsupported: ["auth_unsupported", "08P01", "FATAL"],
  ScramIterations: ["scram_iterations", "28000", "FATAL"],
  AuthProtocol: ["auth_protocol", "08P01", "FATAL"],
  AuthFailed: ["auth_failed", "28P01", "FATAL"],
  ServerProtocolError: ["protocol_error", "08P01", "ERROR"],
  ServerInternalError: ["internal_error", "XX000", "ERROR"],
  ServerLost: ["server_lost", "08006", "ERROR"],
  ResolutionUnknown: ["transaction_resolution_unknown", "08007", "ERROR"],
  PinnedStateLost: ["pinned_state_lost", "08006", "FATAL"],
  QueryWaitTimeout: ["query_wait_timeout", "08006", "ERROR"],
  QueryWaitTimeoutStartingUp: ["query_wait_timeout", "57P03", "ERROR"],
  ListenTimeout: ["listen_timeout", "08006", "ERROR"],
  Shutdown: ["shutdown", "57P01", "FATAL"],
  Startup: ["startup", "08P01", "FATAL"],
  Replication: ["replication", "08P01", "FATAL"],
  TlsRequired: ["tls_required", "28000", "FATAL"],
  AuthMechanism: ["auth_mechanism", "08P01", "FATAL"],
  AdminDenied: ["admin_denied", "28000", "FATAL"],
  NoDatabase: ["no_database", "3D000", "FATAL"],
  LoginTimeout: ["login_timeout", "08P01", "FATAL"],
  ProtocolViolation: ["protocol_violation", "08P01", "FATAL"],
  ClientInternalError: ["internal_error", "XX000", "FATAL"],
  ClientIdleTimeout: ["client_idle_timeout", "57P05", "FATAL"],
  ClientWriteTimeout: ["client_write_timeout", "08006", "FATAL"],
  AdminExtended: ["admin_extended", "0A000", "ERROR"],
  InFailedTransaction: ["in_failed_transaction", "25P02", "ERROR"],
};

describe("ProxyErrorReason", () => {
  it("keeps every code, SQLSTATE and severity", () => {
    const actual = Object.fromEntries(
      Object.entries(ProxyErrorReason).map(([name, r]) => [name, [r.code, r.sqlstate, r.severity]]),
    );
    expect(actual).toEqual(PINNED);
  });

  it("keeps the messages clients see where the reason has its own", () => {
    const messages = Object.fromEntries(
      Object.entries(ProxyErrorReason)
        .filter(([, r]) => "message" in r)
        .map(([name]) => {
          const r = ProxyErrorReason[name as keyof typeof ProxyErrorReason];
          return [name, proxyError(r as typeof r & { message: string }).message];
        }),
    );
    expect(messages).toEqual({
      ConnectTimeout: "timeout while connecting to the server",
      SslProtocol: "received unencrypted data after SSL response",
      SslRefused: "server does not support SSL, but SSL was required",
      ServerInternalError: "internal error in pgsidecar",
      ResolutionUnknown:
        "the server connection was lost while the transaction was committing; it may or may not have been committed",
      Replication: "replication connections are not supported by pgsidecar",
      TlsRequired: "pgsidecar requires TLS connections",
      AuthMechanism: "client selected an invalid SASL authentication mechanism",
      LoginTimeout: "canceling authentication due to timeout",
      ClientInternalError: "internal error in pgsidecar",
      ClientIdleTimeout: "terminating connection due to idle-session timeout (client_idle_timeout)",
      AdminExtended: "the admin console supports only simple queries",
      InFailedTransaction:
        "current transaction is aborted, commands ignored until end of transaction block",
    });
  });

  it("proxyError builds from the reason, with its own message or the reason's", () => {
    const e = proxyError(ProxyErrorReason.NoDatabase, 'database "x" does not exist');
    expect(e).toBeInstanceOf(ProxyError);
    expect([e.code, e.sqlstate, e.severity, e.message]).toEqual([
      "no_database",
      "3D000",
      "FATAL",
      'database "x" does not exist',
    ]);
    expect(proxyError(ProxyErrorReason.TlsRequired).message).toBe(
      "pgsidecar requires TLS connections",
    );
    expect(proxyError(ProxyErrorReason.ServerLost, "lost", "why").toFields()).toEqual({
      severity: "ERROR",
      code: "08006",
      message: "lost",
      detail: "why",
    });
  });

  it("proxyErrorFrom keeps the failed check's SQLSTATE, else the reason's", () => {
    const e = proxyErrorFrom(ProxyErrorReason.Startup, { message: "bad", sqlstate: "28000" });
    expect([e.code, e.sqlstate, e.severity, e.message]).toEqual([
      "startup",
      "28000",
      "FATAL",
      "bad",
    ]);
    expect(proxyErrorFrom(ProxyErrorReason.Startup, { message: "bad" }).sqlstate).toBe("08P01");
  });

  it("asFatal keeps code, SQLSTATE, message and detail", () => {
    const e = proxyError(ProxyErrorReason.QueryWaitTimeout, "no server", "d").asFatal();
    expect([e.code, e.sqlstate, e.severity, e.message, e.detail]).toEqual([
      "query_wait_timeout",
      "08006",
      "FATAL",
      "no server",
      "d",
    ]);
  });

  it("the lost-server errors keep their SQLSTATEs", () => {
    expect(lostConnectionError(true).sqlstate).toBe("08006");
    expect(lostConnectionError(false).code).toBe("server_lost");
    expect(resolutionUnknownError().sqlstate).toBe("08007");
  });

  it("the aborted-transaction answer is Postgres's 25P02", () => {
    const e = abortedTransactionError();
    expect([e.code, e.sqlstate, e.severity, e.message]).toEqual([
      "in_failed_transaction",
      "25P02",
      "ERROR",
      "current transaction is aborted, commands ignored until end of transaction block",
    ]);
  });

  it("no source file but errors.ts calls the ProxyError constructor", () => {
    const src = join(import.meta.dirname, "../../src");
    const files = readdirSync(src, { recursive: true, encoding: "utf8" }).filter((f) =>
      f.endsWith(".ts"),
    );
    const constructing = files.filter(
      (f) => f !== "errors.ts" && readFileSync(join(src, f), "utf8").includes("new ProxyError("),
    );
    expect(constructing).toEqual([]);
  });
});
