// ServerLogin: opening a server connection. The socket (TCP or unix), TLS as sslmode asks (the
// SSLRequest, the one-byte answer, certificate checks), the StartupMessage, and the password the
// server asks for: cleartext or md5 (only where it may travel without TLS) or SCRAM-SHA-256.

import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { md5Password } from "../auth/md5.js";
import { ScramClientExchange, ScramError } from "../auth/scram-sha-256.js";
import * as clock from "../clock.js";
import type { PasswordWithoutTls, UpstreamTarget } from "../config/schema.js";
import { DisconnectReason, ProxyError, ProxyErrorReason, proxyError } from "../errors.js";
import { isLoopbackHost } from "../loopback.js";
import { AuthCode } from "../protocol/codes.js";
import * as msg from "../protocol/messages.js";
import { enableKeepalive, type KeepaliveSettings } from "./keepalive.js";
import type { KnownStatements } from "./prepared-statements.js";

export interface BackendOptions {
  target: UpstreamTarget;
  /** The host name dialled (of several in a multi-host upstream), for TLS server identity. */
  hostName?: string;
  /** The address to dial this time (DNS is re-resolved by the caller for every connection). */
  address: { host: string; port: number } | { path: string };
  user: string;
  password: string | null;
  database: string;
  connectTimeoutMs: number;
  keepalive: KeepaliveSettings;
  maxPreparedStatements: number;
  /** The pool's record of statements any of its servers accepted. */
  knownStatements?: KnownStatements;
  applicationName?: string;
  /**
   * Whether a cleartext or md5 password may go over TCP without TLS: never, to a loopback address
   * only (the default), or always (server_password_without_tls). Unix sockets always may.
   */
  passwordWithoutTls?: PasswordWithoutTls;
  /** Most PBKDF2 iterations a server's SCRAM challenge may ask for (server_scram_max_iterations). */
  maxScramIterations?: number;
}

/** What a login needs of its connection. */
export interface LoginLink {
  /** The socket the login talks over (replaced by the TLS socket once TLS is up). */
  readonly socket: net.Socket | null;
  readonly closed: boolean;
  readonly address: string;
  attach(sock: net.Socket): void;
  fail(err: Error, reason: DisconnectReason): void;
}

export class ServerLogin {
  private scram: ScramClientExchange | null = null;
  /** The SSLRequest went out: the next byte from the server is its answer. */
  private awaitingSslAnswer = false;
  private resolve: (() => void) | null = null;
  private reject: ((err: Error) => void) | null = null;
  private timer: clock.Timer | null = null;

  constructor(
    private readonly options: BackendOptions,
    private readonly link: LoginLink,
  ) {}

  /** Opens the socket (with TLS per sslmode) and logs in. Rejects with ServerError or ProxyError. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      this.timer = clock.after(this.options.connectTimeoutMs, () => {
        this.link.fail(
          proxyError(ProxyErrorReason.ConnectTimeout),
          DisconnectReason.ConnectTimeout,
        );
      });
      const a = this.options.address;
      const sock =
        "path" in a ? net.connect({ path: a.path }) : net.connect({ host: a.host, port: a.port });
      sock.setNoDelay(true);
      this.link.attach(sock);
      sock.once("connect", () => {
        if (!("path" in a)) enableKeepalive(sock, this.options.keepalive);
        const sslmode = this.options.target.sslmode;
        if (sslmode === "disable" || "path" in a) this.sendStartup();
        else sock.write(msg.sslRequestPacket);
      });
      this.awaitingSslAnswer = this.options.target.sslmode !== "disable" && !("path" in a);
    });
  }

  /** The server's ReadyForQuery: logged in. */
  succeeded(): void {
    clock.cancel(this.timer);
    this.resolve?.();
    this.resolve = null;
    this.reject = null;
  }

  /** The login failed with `err` (the connection is closing). */
  failed(err: Error): void {
    clock.cancel(this.timer);
    const reject = this.reject;
    this.resolve = null;
    this.reject = null;
    reject?.(err);
  }

  /** The first bytes after an SSLRequest are its answer: true when `chunk` was that. */
  sslAnswer(chunk: Buffer): boolean {
    if (!this.awaitingSslAnswer) return false;
    this.awaitingSslAnswer = false;
    const answer = chunk[0];
    if (chunk.length > 1) {
      // Bytes after the one-byte answer would be injected by a man in the middle (CVE-2021-23222).
      this.link.fail(proxyError(ProxyErrorReason.SslProtocol), DisconnectReason.ProtocolError);
      return true;
    }
    const { sslmode, sslrootcert } = this.options.target;
    const host = this.options.hostName ?? this.options.target.host;
    if (answer !== 0x53) {
      if (sslmode === "prefer") this.sendStartup();
      else this.link.fail(proxyError(ProxyErrorReason.SslRefused), DisconnectReason.LoginFailed);
      return true;
    }
    const plain = this.link.socket as net.Socket;
    plain.removeAllListeners("data");
    plain.removeAllListeners("close");
    plain.removeAllListeners("error");
    plain.removeAllListeners("end");
    const verify = sslmode === "verify-ca" || sslmode === "verify-full";
    let ca: Buffer | undefined;
    if (sslrootcert) {
      try {
        ca = readFileCached(sslrootcert);
      } catch (err) {
        this.link.fail(
          proxyError(
            ProxyErrorReason.SslRootCert,
            `cannot read sslrootcert: ${(err as Error).message}`,
          ),
          DisconnectReason.LoginFailed,
        );
        return true;
      }
    }
    const secure = tls.connect({
      socket: plain,
      servername: net.isIP(host) ? undefined : host,
      rejectUnauthorized: verify,
      ca,
      checkServerIdentity: sslmode === "verify-full" ? tls.checkServerIdentity : () => undefined,
    });
    secure.setNoDelay?.(true);
    this.link.attach(secure);
    secure.once("secureConnect", () => this.sendStartup());
    return true;
  }

  private sendStartup(): void {
    const params: Record<string, string> = {
      user: this.options.user,
      database: this.options.database,
    };
    if (this.options.applicationName) params.application_name = this.options.applicationName;
    this.link.socket?.write(msg.startupMessage(params));
  }

  /** An Authentication message (R): answer what the server asks for, or fail the login. */
  onAuthRequest(buf: Buffer, start: number, end: number): void {
    const kind = buf.readInt32BE(start + 5);
    const { password, user } = this.options;
    const send = (bytes: Buffer) => this.link.socket?.write(bytes);
    const needPassword = () => {
      this.link.fail(
        proxyError(
          ProxyErrorReason.NoPassword,
          `server requested a password for user "${user}" but none is configured`,
        ),
        DisconnectReason.LoginFailed,
      );
    };
    try {
      switch (kind) {
        case AuthCode.Ok:
          // Once SASL has begun, only a verified server signature ends it. AuthenticationOk
          // before that is a server (or a man in the middle) skipping the proof that it knows
          // our password; libpq refuses it the same way ("server sent AuthenticationOk before
          // SASL exchange was complete" is not accepted).
          if (this.scram !== null && !this.scram.done) {
            throw proxyError(
              ProxyErrorReason.AuthProtocol,
              "server sent AuthenticationOk before completing SCRAM authentication (no valid server signature)",
            );
          }
          return;
        case AuthCode.CleartextPassword:
          if (password === null) return needPassword();
          this.checkPasswordMayTravel("a cleartext password");
          send(msg.passwordMessage(password));
          return;
        case AuthCode.MD5Password:
          if (password === null) return needPassword();
          this.checkPasswordMayTravel("an md5 password");
          send(
            msg.passwordMessage(md5Password(user, password, buf.subarray(start + 9, start + 13))),
          );
          return;
        case AuthCode.SASL: {
          if (password === null) return needPassword();
          if (this.scram !== null)
            throw proxyError(ProxyErrorReason.AuthProtocol, "unexpected second AuthenticationSASL");
          const mechanisms = buf.toString("utf8", start + 9, end).split("\0");
          if (!mechanisms.includes("SCRAM-SHA-256")) {
            throw proxyError(
              ProxyErrorReason.AuthUnsupported,
              `server offered no supported SASL mechanism (${mechanisms.filter(Boolean).join(", ")})`,
            );
          }
          this.scram = new ScramClientExchange(password, {
            maxIterations: this.options.maxScramIterations,
          });
          send(msg.saslInitialResponse("SCRAM-SHA-256", this.scram.clientFirst()));
          return;
        }
        case AuthCode.SASLContinue: {
          const scram = this.scram;
          if (!scram) throw proxyError(ProxyErrorReason.AuthProtocol, "unexpected SASLContinue");
          // Hi() runs off the event loop. The server sends nothing until it has our answer; if
          // it does (out of turn), the exchange fails and so does the login. The connection may
          // close or time out meanwhile: then the answer is dropped.
          scram.serverFirst(buf.toString("utf8", start + 9, end)).then(
            (reply) => {
              if (!this.link.closed) send(msg.saslResponse(reply));
            },
            (err: Error) => this.authFailed(err),
          );
          return;
        }
        case AuthCode.SASLFinal:
          if (!this.scram) throw proxyError(ProxyErrorReason.AuthProtocol, "unexpected SASLFinal");
          this.scram.serverFinal(buf.toString("utf8", start + 9, end));
          return;
        default:
          throw proxyError(
            ProxyErrorReason.AuthUnsupported,
            `server requested unsupported authentication method ${kind}`,
          );
      }
    } catch (err) {
      this.authFailed(err as Error);
    }
  }

  /** Ends a login the upstream's authentication made impossible. */
  private authFailed(err: Error): void {
    if (this.link.closed) return;
    let e: ProxyError;
    if (err instanceof ProxyError) e = err;
    else if (err instanceof ScramError && err.code === "too_many_iterations") {
      e = proxyError(
        ProxyErrorReason.ScramIterations,
        `server authentication refused: ${err.message} (server_scram_max_iterations)`,
      );
    } else {
      e = proxyError(ProxyErrorReason.AuthFailed, `server authentication failed: ${err.message}`);
    }
    this.link.fail(e, DisconnectReason.LoginFailed);
  }

  /**
   * A cleartext password gives it to anyone who reads the wire; an md5 answer gives an
   * eavesdropper a hash to crack offline and a man in the middle a login it can relay. Without
   * TLS that is allowed only as server_password_without_tls says: by default to loopback
   * addresses, and always over a unix socket, where no one else is on the wire. SCRAM is not
   * affected: it never reveals the password, and a server that does not know it cannot finish.
   */
  private checkPasswordMayTravel(what: string): void {
    const policy = this.options.passwordWithoutTls ?? "loopback";
    if (policy === "allow" || this.link.socket instanceof tls.TLSSocket) return;
    const a = this.options.address;
    if ("path" in a || (policy === "loopback" && isLoopbackHost(a.host))) return;
    throw proxyError(
      ProxyErrorReason.PasswordWithoutTls,
      `server ${this.link.address} requested ${what} over a connection without TLS; not sent (server_password_without_tls: ${policy})`,
      "Use sslmode=require or stronger in the upstream URL, or SCRAM-SHA-256 on the server, or set server_password_without_tls: allow.",
    );
  }
}

const fileCache = new Map<string, Buffer>();
function readFileCached(path: string): Buffer {
  let b = fileCache.get(path);
  if (!b) {
    b = readFileSync(path);
    fileCache.set(path, b);
  }
  return b;
}

/**
 * The error codes Node gives a TLS connection whose certificate fails verification (OpenSSL's
 * X509_V_ERR_* names, and the host name check): such a server fails the same way every time.
 */
const CERTIFICATE_ERRORS: ReadonlySet<string> = new Set([
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_CRL",
  "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
  "UNABLE_TO_DECRYPT_CRL_SIGNATURE",
  "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
  "CERT_SIGNATURE_FAILURE",
  "CRL_SIGNATURE_FAILURE",
  "CERT_NOT_YET_VALID",
  "CERT_HAS_EXPIRED",
  "CRL_NOT_YET_VALID",
  "CRL_HAS_EXPIRED",
  "ERROR_IN_CERT_NOT_BEFORE_FIELD",
  "ERROR_IN_CERT_NOT_AFTER_FIELD",
  "ERROR_IN_CRL_LAST_UPDATE_FIELD",
  "ERROR_IN_CRL_NEXT_UPDATE_FIELD",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "CERT_CHAIN_TOO_LONG",
  "CERT_REVOKED",
  "INVALID_CA",
  "PATH_LENGTH_EXCEEDED",
  "INVALID_PURPOSE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "HOSTNAME_MISMATCH",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** Whether a socket error says the server's certificate failed verification. */
export function isCertificateError(err: NodeJS.ErrnoException | null): boolean {
  return err?.code !== undefined && CERTIFICATE_ERRORS.has(err.code);
}
