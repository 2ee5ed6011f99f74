// Opening servers: the factory a Pool builds its BackendConnections with (a stub in unit tests),
// the libpq-style walk over an upstream's hosts, and why an attempt failed (ConnectFailureReason).

import type { TargetSessionAttrs } from "../config/schema.js";
import {
  DisconnectReason,
  ProxyError,
  ProxyErrorReason,
  proxyError,
  ServerError,
} from "../errors.js";
import { ConnectFailureReason } from "../reasons.js";
import { BackendConnection, type BackendOptions } from "./backend-connection.js";
import { roleFits, serverRole, type Upstream } from "./upstream.js";

/** Builds a server connection (not yet connected) from its options. */
export type ServerFactory = (options: BackendOptions) => BackendConnection;

export const newServer: ServerFactory = (options) => new BackendConnection(options);

/** What the walk over hosts tells its pool: a server is being dialled, or is not any more. */
export interface DialHooks {
  /** `conn` was created and is being dialled (it holds the attempt's place in pool_size). */
  dialling(conn: BackendConnection): void;
  /** `conn` failed, or does not fit, and is dropped; the attempt goes on with the next host. */
  dropped(conn: BackendConnection): void;
  /** A server whose role does not fit target_session_attrs was skipped. */
  skipped(conn: BackendConnection, attrs: TargetSessionAttrs): void;
}

/**
 * Opens one server on the first host that answers and whose role fits target_session_attrs,
 * as libpq tries them: in the order listed (shuffled with load_balance_hosts=random), any
 * failure moving on to the next host; prefer-standby looks for a standby first, then takes any.
 * DNS is resolved again for every host tried. Rejects with the last host's error.
 */
export async function openOnSomeHost(
  upstream: Upstream,
  options: Omit<BackendOptions, "address">,
  create: ServerFactory,
  hooks: DialHooks,
): Promise<BackendConnection> {
  const target = upstream.target;
  const passes: TargetSessionAttrs[] =
    target.targetSessionAttrs === "prefer-standby"
      ? ["standby", "any"]
      : [target.targetSessionAttrs];
  let lastError: Error | null = null;
  for (const attrs of passes) {
    for (const h of upstream.hostsInOrder()) {
      let address: BackendOptions["address"];
      try {
        address = await upstream.resolve(h);
      } catch (err) {
        lastError = proxyError(
          ProxyErrorReason.Dns,
          `could not resolve host "${h.host}": ${(err as Error).message}`,
        );
        lastError.cause = err;
        continue;
      }
      const conn = create({ ...options, address, hostName: h.host });
      hooks.dialling(conn);
      try {
        await conn.connect();
      } catch (err) {
        hooks.dropped(conn);
        lastError = err as Error;
        continue;
      }
      if (roleFits(attrs, serverRole(conn.params))) return conn;
      hooks.dropped(conn);
      conn.destroy(DisconnectReason.RoleChanged);
      hooks.skipped(conn, attrs);
      lastError = proxyError(
        ProxyErrorReason.WrongRole,
        `no server of ${formatHosts(target)} is ${target.targetSessionAttrs} (target_session_attrs)`,
      );
    }
  }
  throw lastError ?? proxyError(ProxyErrorReason.ConnectFailed, "no upstream host");
}

function formatHosts(t: { hosts: ReadonlyArray<{ host: string; port: number }> }): string {
  return t.hosts.map((h) => `${h.host}:${h.port}`).join(",");
}

/** Our own refusals and failures, by ProxyError code. */
const PROXY_REASONS: Record<string, ConnectFailureReason> = {
  dns: ConnectFailureReason.Dns,
  connect_timeout: ConnectFailureReason.Timeout,
  tls_verify: ConnectFailureReason.Tls,
  ssl_refused: ConnectFailureReason.Tls,
  ssl_protocol: ConnectFailureReason.Tls,
  ssl_root_cert: ConnectFailureReason.Tls,
  password_without_tls: ConnectFailureReason.Tls,
  no_password: ConnectFailureReason.Auth,
  auth_failed: ConnectFailureReason.Auth,
  auth_protocol: ConnectFailureReason.Auth,
  auth_unsupported: ConnectFailureReason.Auth,
  scram_iterations: ConnectFailureReason.Auth,
  credential_unavailable: ConnectFailureReason.Auth,
};

/** Node's error codes below the protocol (the socket's error, kept as the ProxyError's cause). */
const SOCKET_REASONS: Record<string, ConnectFailureReason> = {
  ENOTFOUND: ConnectFailureReason.Dns,
  EAI_AGAIN: ConnectFailureReason.Dns,
  EAI_FAIL: ConnectFailureReason.Dns,
  EAI_NONAME: ConnectFailureReason.Dns,
  ECONNREFUSED: ConnectFailureReason.Refused,
  ECONNRESET: ConnectFailureReason.Refused,
  EPIPE: ConnectFailureReason.Refused,
  EHOSTUNREACH: ConnectFailureReason.Refused,
  ENETUNREACH: ConnectFailureReason.Refused,
  ENOENT: ConnectFailureReason.Refused,
  ETIMEDOUT: ConnectFailureReason.Timeout,
};

/**
 * Why a server connect failed: the server's own refusal of the login (28P01, 28000) is `auth`
 * and any other server error `server_error`; below the protocol, the Node error code decides
 * (a name that did not resolve, a refusal, a timeout, TLS). Any other failure to reach the
 * server (it closed the connection before answering, an unlisted socket error) counts as refused.
 */
export function connectFailureReason(err: Error): ConnectFailureReason {
  if (err instanceof ServerError) {
    return err.sqlstate === "28P01" || err.sqlstate === "28000"
      ? ConnectFailureReason.Auth
      : ConnectFailureReason.ServerError;
  }
  if (err instanceof ProxyError && Object.hasOwn(PROXY_REASONS, err.code))
    return PROXY_REASONS[err.code];
  const code = ((err.cause ?? err) as NodeJS.ErrnoException).code ?? "";
  if (Object.hasOwn(SOCKET_REASONS, code)) return SOCKET_REASONS[code];
  if (code.startsWith("ERR_SSL_") || code.startsWith("ERR_TLS_")) return ConnectFailureReason.Tls;
  if (err instanceof ProxyError && err.code === "connect_failed")
    return ConnectFailureReason.Refused;
  return ConnectFailureReason.ServerError;
}
