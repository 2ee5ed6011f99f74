// Security settings at config load: trust only on loopback listeners, client_tls: require only
// with a certificate, and the defaults of server_password_without_tls and
// server_scram_max_iterations.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { isLoopbackHost } from "../../src/loopback.js";
import { errorOf } from "../helpers/config-errors.js";

const UPSTREAM = "postgres://app:s3cr3t@db.internal:5432/appdb";
const load = (argv: Record<string, unknown> = {}) =>
  loadConfig({ env: {}, argv: { upstream: UPSTREAM, ...argv } });

const dir = mkdtempSync(join(tmpdir(), "pgsidecar-config-security-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("defaults", () => {
  it("sends passwords without TLS to loopback only, caps SCRAM at 100,000, allows client TLS", () => {
    const c = load();
    expect(c.server_password_without_tls).toBe("loopback");
    expect(c.server_scram_max_iterations).toBe(100_000);
    expect(c.client_tls).toBe("allow");
  });

  it("validates the new settings' values", () => {
    expect(load({ server_password_without_tls: "refuse" }).server_password_without_tls).toBe(
      "refuse",
    );
    expect(errorOf(() => load({ server_password_without_tls: "never" }))).toBe(
      'invalid config: server_password_without_tls = "never" (from --server-password-without-tls): expected one of "refuse", "loopback", "allow"',
    );
    expect(load({ server_scram_max_iterations: "1000000" }).server_scram_max_iterations).toBe(
      1_000_000,
    );
    expect(errorOf(() => load({ server_scram_max_iterations: "100" }))).toContain(
      "expected an integer from 4096 to 2147483647",
    );
  });
});

describe("auth_type trust", () => {
  it("is accepted when clients can only come from this machine", () => {
    for (const listen of ["127.0.0.1:6432", "127.0.0.2:6432", "[::1]:6432", "localhost:6432"]) {
      expect(load({ auth_type: "trust", listen }).auth_type).toBe("trust");
    }
  });

  it("is refused at load when the listener is reachable from elsewhere", () => {
    for (const listen of ["0.0.0.0:6432", "*:6432", "[::]:6432", "10.1.2.3:6432", "db:6432"]) {
      const message = errorOf(() => load({ auth_type: "trust", listen }));
      expect(message).toMatch(
        /^invalid config: auth_type = "trust" \(from --auth-type\): expected a password method, since listen \(.+\) is not a loopback address; trust is allowed only on loopback and unix sockets$/,
      );
    }
    // Other methods are fine anywhere.
    expect(load({ auth_type: "scram-sha-256", listen: "0.0.0.0:6432" }).auth_type).toBe(
      "scram-sha-256",
    );
  });
});

describe("client_tls", () => {
  it("require needs a certificate", () => {
    expect(errorOf(() => load({ client_tls: "require" }))).toBe(
      'invalid config: client_tls = "require" (from --client-tls): expected tls_cert_file and tls_key_file to be set, or allow',
    );
  });

  it("require loads with a certificate and key", () => {
    const cert = join(dir, "c.crt");
    const key = join(dir, "c.key");
    writeFileSync(cert, "x");
    writeFileSync(key, "x");
    const c = load({ client_tls: "require", tls_cert_file: cert, tls_key_file: key });
    expect(c.client_tls).toBe("require");
  });
});

describe("isLoopbackHost", () => {
  it("knows loopback addresses in every spelling a socket or a config may use", () => {
    for (const h of ["127.0.0.1", "127.255.0.9", "::1", "0:0:0:0:0:0:0:1", "[::1]"]) {
      expect(isLoopbackHost(h), h).toBe(true);
    }
    for (const h of ["::ffff:127.0.0.1", "localhost", "LOCALHOST", "db.localhost"]) {
      expect(isLoopbackHost(h), h).toBe(true);
    }
    for (const h of ["0.0.0.0", "::", "10.0.0.1", "192.0.2.2", "::ffff:10.0.0.1", "fd00::2"]) {
      expect(isLoopbackHost(h), h).toBe(false);
    }
    expect(isLoopbackHost("db.internal")).toBe(false);
    expect(isLoopbackHost("")).toBe(false);
  });
});
