// The fallback database "*" (issue 13 item 5): implied by any_database with an upstream, or
// written under databases; how it loads, what it refuses and how SHOW CONFIG shows it.
import { describe, expect, it } from "vitest";
import { describeConfig, loadConfig } from "../../src/config/load.js";
import { errorOf } from "../helpers/config-errors.js";

const UPSTREAM = "postgres://app:s3cr3t@db.internal:5432/appdb";

function load(argv: Record<string, unknown>) {
  return loadConfig({ env: {}, argv });
}

describe("fallback database", () => {
  it("is implied by default: the upstream's server and settings, database '*'", () => {
    const c = load({ upstream: UPSTREAM, pool_size: 7 });
    expect(c.any_database).toBe(true);
    expect(Object.keys(c.databases)).toEqual(["appdb"]);
    expect(c.fallback_database).toEqual({
      name: "*",
      target: { ...c.upstream, database: "*" },
      pool_size: 7,
      min_pool_size: 0,
      pool_mode: "transaction",
      retry: "safe",
    });
  });

  it("is off with any_database: false", () => {
    const c = load({ upstream: UPSTREAM, any_database: "false" });
    expect(c.fallback_database).toBeNull();
  });

  it("needs a server: none without upstream or a '*' entry", () => {
    const c = load({ databases: "{r: 'postgres://x:pw@replica/r'}" });
    expect(c.fallback_database).toBeNull();
  });

  it("may be written as '*' under databases, with its own server and pool settings", () => {
    const c = load({
      upstream: UPSTREAM,
      databases: "{'*': {upstream: 'postgres://other.internal:6543/ignored', pool_size: 3}}",
    });
    expect(Object.keys(c.databases)).toEqual(["appdb"]);
    expect(c.fallback_database).toMatchObject({
      name: "*",
      pool_size: 3,
      // User and password from upstream; the database is the client's, so it reads '*'.
      target: {
        host: "other.internal",
        port: 6543,
        user: "app",
        password: "s3cr3t",
        database: "*",
      },
    });
  });

  it("refuses a '*' entry with any_database: false", () => {
    expect(
      errorOf(() =>
        load({
          upstream: UPSTREAM,
          any_database: "false",
          databases: "{'*': 'postgres://other.internal/x'}",
        }),
      ),
    ).toBe(
      'invalid config: any_database = false (from --any-database): expected true, since databases has a "*" entry (or remove that entry)',
    );
  });

  it("is listed by SHOW CONFIG as databases.*", () => {
    const rows = new Map(describeConfig(load({ upstream: UPSTREAM })).map((r) => [r.key, r]));
    expect(rows.get("databases")?.value).toBe("appdb,*");
    expect(rows.get("databases.*")?.value).toBe(
      "postgres://app:****@db.internal:5432/*?sslmode=prefer pool_size=20 min_pool_size=0 pool_mode=transaction retry=safe",
    );
    expect(rows.get("any_database")).toMatchObject({ value: "true", default: "true" });
  });
});
