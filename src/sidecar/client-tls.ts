// Client TLS: the context a client's SSLRequest is answered with. tls_cert_file/tls_key_file when
// configured; otherwise (client_tls not off) a self-signed certificate made once, in memory, so
// that sslmode=require works without any file.

import { readFileSync } from "node:fs";
import tls from "node:tls";
import type { Config } from "../config/schema.js";
import type { Logger } from "../log.js";

export class ClientTls {
  /** What SSLRequests are answered with now; null: answered N. */
  context: tls.SecureContext | null = null;
  /** client_tls allow/require without tls_cert_file: serve the ephemeral certificate. */
  private wantsEphemeral = false;
  private ephemeral: tls.SecureContext | null = null;
  private making: Promise<void> | null = null;

  constructor(private readonly log: Logger) {}

  /** Takes `c`'s TLS settings. Throws (an unreadable file) before anything changes. */
  apply(c: Config): void {
    const { tls_cert_file: cert, tls_key_file: key } = c;
    const fromFiles =
      c.client_tls !== "off" && cert && key
        ? tls.createSecureContext({ cert: readFileSync(cert), key: readFileSync(key) })
        : null;
    this.wantsEphemeral = c.client_tls !== "off" && !(cert && key);
    this.context = this.wantsEphemeral ? this.ephemeral : fromFiles;
  }

  /**
   * Makes the ephemeral certificate when the settings want it and it is not made yet (at start,
   * or after a reload removed tls_cert_file: clients are answered N until it is made).
   */
  ensureEphemeral(): Promise<void> {
    if (!this.wantsEphemeral || this.ephemeral !== null) return Promise.resolve();
    return this.makeEphemeral();
  }

  /**
   * ECDSA P-256, self-signed, never written to disk. A failure leaves client TLS off (SSLRequest
   * answered N) rather than stopping the sidecar.
   */
  private makeEphemeral(): Promise<void> {
    this.making ??= (async () => {
      const t0 = performance.now();
      try {
        // Loaded only here: the X.509 library and its Reflect polyfill cost nothing otherwise.
        const { makeEphemeralCertificate } = await import("../frontend/ephemeral-cert.js");
        const made = await makeEphemeralCertificate();
        this.ephemeral = tls.createSecureContext({ cert: made.cert, key: made.key });
        if (this.wantsEphemeral) this.context = this.ephemeral;
        this.log.info(
          {
            sha256: made.fingerprint,
            ms: Math.round(performance.now() - t0),
            cert_ms: Math.round(made.ms),
          },
          "client TLS: ephemeral self-signed certificate made (sslmode=require works; verify-ca/verify-full need tls_cert_file)",
        );
      } catch (err) {
        this.log.error(
          { err: (err as Error).message },
          "client TLS: could not make an ephemeral certificate; clients asking for TLS are answered N",
        );
      } finally {
        this.making = null;
      }
    })();
    return this.making;
  }
}
