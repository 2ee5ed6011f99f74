// An ephemeral self-signed certificate for client TLS when none is configured, made in memory at
// start (nothing touches the disk): clients with sslmode=require or prefer get TLS as from a
// managed Postgres; verify-ca / verify-full cannot trust it and need tls_cert_file.

// @peculiar/x509 resolves its parts through tsyringe, which needs the Reflect metadata API: it
// must be loaded first (the library's README). This module is imported only when a certificate
// has to be made, so nothing else pays for either.
import "reflect-metadata";
import { createHash, KeyObject, randomBytes, webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

export interface EphemeralCertificate {
  /** PEM. */
  readonly cert: string;
  /** PEM (PKCS#8). */
  readonly key: string;
  /** SHA-256 of the certificate's DER, colon-separated hex (what openssl and browsers show). */
  readonly fingerprint: string;
  /** Time taken to make the key pair and the certificate. */
  readonly ms: number;
}

/** Validity: from an hour back (clock skew) for ten years; it never outlives the process anyway. */
const BACKDATE_MS = 3600_000;
const VALID_MS = 10 * 365 * 24 * 3600_000;

/**
 * An ECDSA P-256 key pair from Node's WebCrypto and a certificate for it, signed by itself with
 * ECDSA-SHA256: CN pgsidecar, subjectAltName localhost, 127.0.0.1 and ::1, for serverAuth. P-256
 * takes about a millisecond where RSA-2048 takes tens to hundreds.
 */
export async function makeEphemeralCertificate(): Promise<EphemeralCertificate> {
  const t0 = performance.now();
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, [
    "sign",
    "verify",
  ])) as webcrypto.CryptoKeyPair;
  const serial = randomBytes(16);
  serial[0] &= 0x7f; // a positive INTEGER (RFC 5280 4.1.2.2)
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString("hex"),
    name: "CN=pgsidecar ephemeral certificate",
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + VALID_MS),
    signingAlgorithm: algorithm,
    keys: keys as unknown as x509.X509CertificateCreateSelfSignedParams["keys"],
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: "dns", value: "localhost" },
        { type: "ip", value: "127.0.0.1" },
        { type: "ip", value: "::1" },
      ]),
    ],
  });
  const key = KeyObject.from(keys.privateKey).export({
    type: "pkcs8",
    format: "pem",
  }) as string;
  const digest = createHash("sha256").update(Buffer.from(cert.rawData)).digest("hex");
  return {
    cert: cert.toString("pem"),
    key,
    fingerprint: digest.toUpperCase().replace(/(..)(?=.)/g, "$1:"),
    ms: performance.now() - t0,
  };
}
