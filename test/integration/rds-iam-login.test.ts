// upstream_auth: aws-rds-iam against a real Postgres. Postgres cannot check an IAM token as RDS
// does, but it can hold one as a password: the role's (SCRAM) password is set to the token the
// signer mints for a fixed clock, and the sidecar, started with the same clock and AWS keys in the
// environment (the default credential chain reads them, no network), must log in with it over
// TLS (sslmode=verify-full against the cluster's CA). Then the renewal after 10 minutes and the one
// relogin after a 28P01, and the token nowhere in logs, /metrics, /status or SHOW output.

import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { rdsSigner } from "../../src/auth/rds-iam.js";
import { loadConfig } from "../../src/config/load.js";
import { Sidecar } from "../../src/proxy.js";
import { captureLog } from "../helpers/log-capture.js";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";
import { queryOnce } from "../helpers/pg-query.js";

const T0 = new Date("2026-12-03T10:11:12Z").getTime();
const MINUTE = 60_000;
const KEYS = {
  accessKeyId: "AKIDEXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};
const USER = "iam_app";
const CLIENT_PASSWORD = "app-to-sidecar";
/** The environment the default credential chain reads; IMDS off, so a miss never goes out. */
const AWS_ENV: Record<string, string | undefined> = {
  AWS_ACCESS_KEY_ID: KEYS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: KEYS.secretAccessKey,
  AWS_SESSION_TOKEN: undefined,
  AWS_PROFILE: undefined,
  AWS_EC2_METADATA_DISABLED: "true",
};

describe("upstream_auth: aws-rds-iam with a real Postgres", () => {
  let cluster: PgCluster;
  let sidecar: Sidecar;
  const logs = captureLog("debug");
  const tokens: string[] = [];
  const savedEnv: Record<string, string | undefined> = {};

  /** The token the signer mints at `at` for the sidecar's endpoint (localhost:port, USER). */
  async function tokenAt(at: number): Promise<string> {
    vi.setSystemTime(at);
    const endpoint = { hostname: "localhost", port: cluster.port, username: USER };
    const token = await rdsSigner({ ...endpoint, region: "us-east-1" }, KEYS)();
    tokens.push(token);
    return token;
  }

  async function setRolePassword(token: string): Promise<void> {
    await cluster.query(`ALTER ROLE ${USER} PASSWORD '${token}'`);
  }

  function query(sql: string, database = "postgres") {
    const client = { host: "127.0.0.1", port: sidecar.port, database };
    return queryOnce({ ...client, user: USER, password: CLIENT_PASSWORD }, sql);
  }

  async function http(path: string): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${sidecar.httpPort}${path}`);
    return res.text();
  }

  /** The sum of a metric's series that carry all of `labels` (`a="x",b="y"`). */
  async function metric(name: string, labels: string): Promise<number> {
    const wanted = labels.split(",");
    return (await http("/metrics"))
      .split("\n")
      .filter((l) => l.startsWith(`${name}{`) && wanted.every((w) => l.includes(w)))
      .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
  }

  /** Closes the sidecar's servers of USER upstream, so that the next query logs in again. */
  async function dropServers(): Promise<void> {
    await cluster.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '${USER}'`,
    );
  }

  beforeAll(async () => {
    for (const [k, v] of Object.entries(AWS_ENV)) {
      savedEnv[k] = process.env[k];
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    // Only Date is faked: sockets and timers run in real time, the signer dates tokens at T0.
    vi.useFakeTimers({ toFake: ["Date"], now: T0 });
    cluster = await startCluster({ ssl: true });
    await cluster.createUser(USER, "placeholder-replaced-below");
    await setRolePassword(await tokenAt(T0));
    const config = loadConfig({
      argv: {
        listen: "127.0.0.1:0",
        http_listen: "127.0.0.1:0",
        upstream: `postgres://${USER}@localhost:${cluster.port}/postgres?sslmode=verify-full&sslrootcert=${cluster.caFile}`,
        upstream_auth: "aws-rds-iam",
        users: JSON.stringify([{ name: USER, password: CLIENT_PASSWORD, admin: true }]),
        pool_size: 2,
        query_wait_timeout: "20s",
      },
      env: { AWS_REGION: "us-east-1" },
    });
    sidecar = new Sidecar(config, logs.log);
    await sidecar.start();
  });

  afterAll(async () => {
    await sidecar?.stop().catch(() => {});
    await cluster?.destroy();
    vi.useRealTimers();
    for (const [k, v] of Object.entries(savedEnv)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it("logs in with the minted token over verified TLS", async () => {
    vi.setSystemTime(T0);
    const rows = await query(
      "SELECT current_user AS who, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    expect(rows).toEqual([{ who: USER, ssl: true }]);
    expect(
      await metric(
        "pgsidecar_credential_refreshes_total",
        'source="aws-rds-iam",outcome="changed"',
      ),
    ).toBe(1);
  });

  it("mints a new token for the first login 10 minutes later", async () => {
    const later = T0 + 11 * MINUTE;
    await setRolePassword(await tokenAt(later));
    await dropServers();
    const rows = await query("SELECT current_user AS who");
    expect(rows).toEqual([{ who: USER }]);
    expect(
      await metric(
        "pgsidecar_credential_refreshes_total",
        'source="aws-rds-iam",outcome="changed"',
      ),
    ).toBe(2);
    // Renewed before the login, not after a refusal.
    expect(await metric("pgsidecar_upstream_connect_failures_total", 'sqlstate="28P01"')).toBe(0);
  });

  it("after a 28P01, mints once more and logs in again: the client sees nothing", async () => {
    // The role's password moves on (a token of a minute later) while the sidecar's is still fresh.
    const next = T0 + 12 * MINUTE;
    await setRolePassword(await tokenAt(next));
    await dropServers();
    const rows = await query("SELECT 1 AS one");
    expect(rows).toEqual([{ one: 1 }]);
    expect(
      await metric(
        "pgsidecar_credential_login_retries_total",
        'source="aws-rds-iam",outcome="succeeded"',
      ),
    ).toBe(1);
    expect(
      await metric("pgsidecar_upstream_connect_failures_total", 'sqlstate="28P01"'),
    ).toBeGreaterThanOrEqual(1);
  });

  it("never shows a token in logs, /metrics, /status or SHOW", async () => {
    const shown: string[] = [];
    for (const what of ["CONFIG", "POOLS", "SERVERS", "CLIENTS", "STATS"]) {
      shown.push(JSON.stringify(await query(`SHOW ${what}`, "pgsidecar")));
    }
    shown.push(await http("/metrics"), await http("/status"), logs.text());
    const everything = shown.join("\n");
    expect(everything).toContain("aws-rds-iam");
    expect(logs.text()).toContain("RDS IAM token minted");
    expect(tokens.length).toBe(3);
    for (const token of tokens) {
      expect(everything).not.toContain(token);
      expect(everything).not.toContain(token.slice(-64)); // its signature
    }
    expect(everything).not.toContain("X-Amz-Signature");
    expect(everything).not.toContain(KEYS.secretAccessKey);
  });
});
