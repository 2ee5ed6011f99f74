// upstream_auth: aws-rds-iam and aws_region: the region from the setting or the SDK's environment
// names, and the checks at load (TLS on every URL the token goes over, one password source).
import { describe, expect, it } from "vitest";
import { describeConfig, loadConfig } from "../../src/config/load.js";
import { errorOf } from "../helpers/config-errors.js";

const RDS = "postgres://orders_app@orders.cluster-abc.us-east-1.rds.amazonaws.com:5432/orders";
const TLS = `${RDS}?sslmode=verify-full&sslrootcert=/etc/ssl/rds-global-bundle.pem`;

function load(argv: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) {
  return loadConfig({ argv: { upstream: TLS, upstream_auth: "aws-rds-iam", ...argv }, env });
}
describe("upstream_auth", () => {
  it("is password by default, with no region", () => {
    const c = loadConfig({ argv: { upstream: RDS }, env: { AWS_REGION: "eu-west-1" } });
    expect(c.upstream_auth).toBe("password");
    expect(c.aws_region).toBeNull();
  });

  it("aws-rds-iam takes aws_region, else AWS_REGION, else AWS_DEFAULT_REGION", () => {
    expect(load({ aws_region: "us-east-1" }, { AWS_REGION: "eu-west-1" }).aws_region).toBe(
      "us-east-1",
    );
    expect(load({}, { AWS_REGION: "eu-west-1", AWS_DEFAULT_REGION: "us-west-2" }).aws_region).toBe(
      "eu-west-1",
    );
    expect(load({}, { AWS_DEFAULT_REGION: "us-gov-west-1" }).aws_region).toBe("us-gov-west-1");
    const env = loadConfig({
      env: {
        PGSIDECAR_UPSTREAM: TLS,
        PGSIDECAR_UPSTREAM_AUTH: "aws-rds-iam",
        PGSIDECAR_AWS_REGION: "ap-southeast-2",
      },
    });
    expect(env.aws_region).toBe("ap-southeast-2");
    const rows = describeConfig(env).filter(
      (r) => r.key === "upstream_auth" || r.key === "aws_region",
    );
    expect(rows.map((r) => `${r.key}=${r.value}`)).toEqual([
      "upstream_auth=aws-rds-iam",
      "aws_region=ap-southeast-2",
    ]);
  });

  it("without any region, names the setting and the environment variable", () => {
    expect(errorOf(() => load({}))).toMatch(
      /^invalid config: aws_region = null \(from default\): expected an AWS region \(such as us-east-1\), or AWS_REGION in the environment, since upstream_auth is aws-rds-iam$/,
    );
    expect(errorOf(() => load({ aws_region: "useast1" }))).toMatch(
      /aws_region = "useast1" \(from --aws-region\): expected an AWS region name such as us-east-1/,
    );
    expect(errorOf(() => load({}, { AWS_REGION: "nowhere" }))).toMatch(
      /AWS_REGION = "nowhere" \(from the environment\): expected an AWS region name/,
    );
  });

  it("refuses an sslmode below require on any URL the token would go over", () => {
    const region = { aws_region: "us-east-1" };
    for (const mode of ["prefer", "disable"]) {
      const url = `${RDS}?sslmode=${mode}`;
      const message = errorOf(() => load({ ...region, upstream: url }));
      expect(message).toContain(`invalid config: upstream = "postgres://orders_app@`);
      expect(message).toContain(
        `expected sslmode=require, verify-ca or verify-full (not ${mode}), since upstream_auth is aws-rds-iam`,
      );
    }
    // The default sslmode is prefer, as in libpq: an RDS URL without sslmode is refused too.
    expect(errorOf(() => load({ ...region, upstream: RDS }))).toContain("(not prefer)");
    expect(load({ ...region, upstream: `${RDS}?sslmode=require` }).upstream?.sslmode).toBe(
      "require",
    );
    const databases = { reports: `${RDS.replace("/orders", "/reports")}?sslmode=disable` };
    expect(errorOf(() => load({ ...region, databases: JSON.stringify(databases) }))).toMatch(
      /^invalid config: databases\.reports\.upstream = .*\(not disable\)/,
    );
    // A URL with a password of its own logs in with it, not with a token: no TLS demanded.
    const own = { reports: "postgres://etl:secret-pw@10.0.0.9:5432/reports" };
    const c = load({ ...region, databases: JSON.stringify(own) });
    expect(c.databases.reports.target.password).toBe("secret-pw");
  });

  it("refuses a unix socket, a URL password and password_command beside it", () => {
    const region = { aws_region: "us-east-1" };
    expect(
      errorOf(() => load({ ...region, upstream: "postgres://app@/app?host=/var/run/postgresql" })),
    ).toContain("expected a TCP host (an RDS endpoint), not a unix socket");
    const withPassword = TLS.replace("orders_app@", "orders_app:hunter2@");
    const message = errorOf(() => load({ ...region, upstream: withPassword }));
    expect(message).toMatch(/^invalid config: upstream_auth = "aws-rds-iam" .*URL has a password/);
    expect(message).not.toContain("hunter2");
    expect(errorOf(() => load({ ...region, password_command: "vault read x" }))).toMatch(
      /upstream_auth = "aws-rds-iam" .*expected password, since password_command is set/,
    );
    expect(errorOf(() => load({ upstream_auth: "iam", ...region }))).toContain(
      'expected one of "password", "aws-rds-iam"',
    );
  });
});
