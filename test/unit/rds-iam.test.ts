// RDS IAM tokens (upstream_auth: aws-rds-iam). The token AWS's signer mints with fixed keys and a
// fixed clock is checked against the format AWS documents for `aws rds generate-db-auth-token`
// (awscli's examples/rds/generate-auth-token.rst) and against a SigV4 presign written here from
// AWS's published algorithm with node:crypto, plus botocore's own published test vector; then the
// cache and renewal of RdsIamPassword with an injected clock and minter. No network: the signer
// signs locally and the keys are given.

import { createHash, createHmac } from "node:crypto";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  RdsIamPassword,
  rdsSigner,
  TOKEN_LIFETIME_MS,
  TOKEN_REFRESH_MS,
} from "../../src/auth/rds-iam.js";
import { CredentialUnavailable } from "../../src/auth/upstream-password.js";
import { credentialRecorder } from "../helpers/credential-recorder.js";

const KEYS = {
  accessKeyId: "AKIDEXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};
const ENDPOINT = {
  hostname: "orders.cluster-abc123xyz.us-east-1.rds.amazonaws.com",
  port: 5432,
  username: "orders_app",
  region: "us-east-1",
};
const AT = new Date("2026-12-03T10:11:12Z");

/** RFC 3986 encoding, as SigV4 canonical query strings want it. */
const rfc3986 = (s: string) =>
  encodeURIComponent(s).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
const hmac = (key: string | Buffer, s: string) => createHmac("sha256", key).update(s).digest();

/**
 * A SigV4 query-string presign of `GET host:port/?Action=connect&DBUser=user` for service rds-db,
 * 900 seconds, only the host header signed, the payload hash of an empty body: the steps of
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html.
 */
function presign(
  e: { hostname: string; port: number; username: string; region: string },
  keys: { accessKeyId: string; secretAccessKey: string; sessionToken?: string },
  at: Date,
): string {
  const amzDate = at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
  const day = amzDate.slice(0, 8);
  const scope = `${day}/${e.region}/rds-db/aws4_request`;
  const params: Record<string, string> = {
    Action: "connect",
    DBUser: e.username,
    "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
    "X-Amz-Credential": `${keys.accessKeyId}/${scope}`,
    "X-Amz-Date": amzDate,
    "X-Amz-Expires": "900",
    "X-Amz-SignedHeaders": "host",
  };
  if (keys.sessionToken !== undefined) params["X-Amz-Security-Token"] = keys.sessionToken;
  const query = Object.keys(params)
    .sort()
    .map((k) => `${rfc3986(k)}=${rfc3986(params[k])}`)
    .join("&");
  const host = `${e.hostname}:${e.port}`;
  const canonical = ["GET", "/", query, `host:${host}\n`, "host", sha256("")].join("\n");
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(canonical)].join("\n");
  let key = hmac(`AWS4${keys.secretAccessKey}`, day);
  for (const part of [e.region, "rds-db", "aws4_request"]) key = hmac(key, part);
  const signature = createHmac("sha256", key).update(toSign).digest("hex");
  return `${host}/?${query}&X-Amz-Signature=${signature}`;
}

/**
 * A token as `host:port/` and its query parameters, as written (still percent-encoded), in sorted
 * order: RDS reads a query string, so the order does not matter (the CLI prints the signature
 * last, the JS signer sorts the keys), the names, values and their encoding do.
 */
function parts(token: string): { base: string; params: string[] } {
  const q = token.indexOf("?");
  return {
    base: token.slice(0, q),
    params: token
      .slice(q + 1)
      .split("&")
      .sort(),
  };
}

/** The parameters `aws rds generate-db-auth-token` prints, with their values for ENDPOINT at AT. */
const DOCUMENTED: ReadonlyArray<[string, RegExp]> = [
  ["Action", /^connect$/],
  ["DBUser", /^orders_app$/],
  ["X-Amz-Algorithm", /^AWS4-HMAC-SHA256$/],
  ["X-Amz-Credential", /^AKIDEXAMPLE%2F20261203%2Fus-east-1%2Frds-db%2Faws4_request$/],
  ["X-Amz-Date", /^20261203T101112Z$/],
  ["X-Amz-Expires", /^900$/],
  ["X-Amz-SignedHeaders", /^host$/],
  ["X-Amz-Signature", /^[0-9a-f]{64}$/],
];

afterEach(() => {
  vi.useRealTimers();
});

describe("the token @aws-sdk/rds-signer mints", () => {
  it("has the documented format and the signature of an independent SigV4 presign", async () => {
    vi.useFakeTimers({ toFake: ["Date"], now: AT });
    const token = await rdsSigner(ENDPOINT, KEYS)();
    const { base, params } = parts(token);
    expect(base).toBe("orders.cluster-abc123xyz.us-east-1.rds.amazonaws.com:5432/");
    const byName = new Map(params.map((p) => p.split("=") as [string, string]));
    expect([...byName.keys()].sort()).toEqual(DOCUMENTED.map(([name]) => name).sort());
    for (const [name, value] of DOCUMENTED) expect(byName.get(name), name).toMatch(value);
    expect(parts(token)).toEqual(parts(presign(ENDPOINT, KEYS, AT)));
    // Pinned (computed once with presign() above), so that a change on either side shows.
    expect(byName.get("X-Amz-Signature")).toBe(
      "ae96618bf775367337c3154c68104c1a0f4138397f8b3a047e2b4149260bd72a",
    );
  });

  it("reproduces botocore's published generate_db_auth_token vector", async () => {
    // botocore tests/unit/test_signers.py, TestGenerateDBAuthToken.test_generate_db_auth_token.
    const e = {
      hostname: "prod-instance.us-east-1.rds.amazonaws.com",
      port: 3306,
      username: "someusername",
      region: "us-east-1",
    };
    const keys = { accessKeyId: "akid", secretAccessKey: "skid" };
    const at = new Date("2016-11-07T17:39:33Z");
    const signature = "d1138cdbc0ca63eec012ec0fc6c2267e03642168f5884a7795320d4c18374c61";
    vi.useFakeTimers({ toFake: ["Date"], now: at });
    const token = await rdsSigner(e, keys)();
    expect(parts(token)).toEqual(
      parts(
        "prod-instance.us-east-1.rds.amazonaws.com:3306/?Action=connect&DBUser=someusername" +
          "&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=akid%2F20161107%2Fus-east-1%2Frds-db%2Faws4_request" +
          `&X-Amz-Date=20161107T173933Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=${signature}`,
      ),
    );
    expect(parts(presign(e, keys, at))).toEqual(parts(token));
  });

  it("carries a session token (temporary credentials: IRSA, ECS, instance roles)", async () => {
    vi.useFakeTimers({ toFake: ["Date"], now: AT });
    const keys = { ...KEYS, sessionToken: "FwoGZXIvYXdzEXAMPLE/session+token=" };
    const token = await rdsSigner(ENDPOINT, keys)();
    expect(parts(token).params).toContain(
      "X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE%2Fsession%2Btoken%3D",
    );
    expect(parts(token)).toEqual(parts(presign(ENDPOINT, keys, AT)));
  });

  it("signs for the user, endpoint and region given", async () => {
    vi.useFakeTimers({ toFake: ["Date"], now: AT });
    const other = { ...ENDPOINT, port: 6543, username: "user@x", region: "eu-central-1" };
    const token = await rdsSigner(other, KEYS)();
    expect(token).toMatch(/^orders\.[^/]+:6543\/\?Action=connect&DBUser=user%40x&/);
    expect(token).toContain("%2Feu-central-1%2Frds-db%2F");
    expect(parts(token)).toEqual(parts(presign(other, KEYS, AT)));
  });
});

const recorder = () => credentialRecorder("debug");

/** A minter that counts its calls and mints `token-<n>`, or fails while `failing`. */
function fakeMinter() {
  const state = { calls: 0, failing: false };
  const mint = async () => {
    state.calls++;
    if (state.failing)
      throw Object.assign(new Error("Could not load credentials"), {
        name: "CredentialsProviderError",
      });
    return `host:5432/?Action=connect&X-Amz-Signature=secret${state.calls}`;
  };
  return { state, mint };
}

describe("RdsIamPassword", () => {
  it("mints at the first login, reuses the token, and renews it after 10 minutes", async () => {
    const r = recorder();
    const m = fakeMinter();
    let now = 1_000_000;
    const p = new RdsIamPassword(ENDPOINT, r.handlers, r.log, m.mint, () => now);
    expect(p.rotates).toBe(true);
    expect(p.latest).toBeNull();
    const first = await p.get();
    expect(first).toContain("secret1");
    now += TOKEN_REFRESH_MS - 1;
    expect(await p.get()).toBe(first);
    expect(m.state.calls).toBe(1);
    now += 1;
    expect(await p.get()).toContain("secret2");
    expect(r.events).toEqual(["refreshed aws-rds-iam changed", "refreshed aws-rds-iam changed"]);
  });

  it("mints a new token after a 28P01, and concurrent logins share one mint", async () => {
    const r = recorder();
    const m = fakeMinter();
    const p = new RdsIamPassword(ENDPOINT, r.handlers, r.log, m.mint, () => 0);
    const [a, b, c] = await Promise.all([p.get(), p.get(), p.get()]);
    expect(new Set([a, b, c]).size).toBe(1);
    expect(m.state.calls).toBe(1);
    const next = await p.refused(a);
    expect(next).toContain("secret2");
    p.accepted(next, true);
    expect(r.events.at(-1)).toBe("retried aws-rds-iam succeeded");
  });

  it("keeps a valid token when a mint fails, then fails logins once it is about to expire", async () => {
    const r = recorder();
    const m = fakeMinter();
    let now = 0;
    const p = new RdsIamPassword(ENDPOINT, r.handlers, r.log, m.mint, () => now);
    const token = await p.get();
    m.state.failing = true;
    now = TOKEN_REFRESH_MS;
    expect(await p.get()).toBe(token);
    // Within the failure backoff: no new try.
    const calls = m.state.calls;
    expect(await p.get()).toBe(token);
    expect(m.state.calls).toBe(calls);
    now = TOKEN_LIFETIME_MS - 30_000;
    await expect(p.get()).rejects.toBeInstanceOf(CredentialUnavailable);
    await expect(p.get()).rejects.toThrow(
      /no RDS IAM token could be minted: CredentialsProviderError/,
    );
    expect(p.latest).toBeNull();
    expect(r.events.filter((e) => e.endsWith("failed")).length).toBeGreaterThanOrEqual(2);
    m.state.failing = false;
    expect(await p.get()).toMatch(/secret\d+$/);
    // Logged when it starts failing and when it recovers: endpoint, user, region, never the token.
    const text = r.text();
    expect(text).toContain("RDS IAM token could not be minted");
    expect(text).toContain("RDS IAM token minted again");
    expect(text).toContain(
      '"endpoint":"orders.cluster-abc123xyz.us-east-1.rds.amazonaws.com:5432"',
    );
    expect(text).not.toMatch(/secret\d/);
    expect(text).not.toContain("X-Amz-Signature");
  });

  it("with no token at all, a failed mint fails the login with CredentialUnavailable", async () => {
    const r = recorder();
    const m = fakeMinter();
    m.state.failing = true;
    const p = new RdsIamPassword(ENDPOINT, r.handlers, r.log, m.mint, () => 0);
    await expect(p.get()).rejects.toBeInstanceOf(CredentialUnavailable);
    // No token in hand: the next login tries again at once.
    await expect(p.get()).rejects.toBeInstanceOf(CredentialUnavailable);
    expect(m.state.calls).toBe(2);
  });
});
