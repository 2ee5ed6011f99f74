// Postgres URLs read as libpq reads them, where pg-connection-string (which parses each host and
// the user info) alone would differ: several hosts with ports, an unencoded '/' in a password,
// '+' in the query, a percent-encoded '/' in the database, and no side effects at load (no file
// read for sslrootcert, no process warning for sslmode).
import { afterEach, describe, expect, it, vi } from "vitest";
import { parsePostgresUrl } from "../../src/config/url.js";

afterEach(() => {
  vi.restoreAllMocks();
});

describe("parsePostgresUrl", () => {
  it("reads several hosts with their ports, IPv6 included", () => {
    expect(parsePostgresUrl("postgres://u:p@h1:5433,[::1]:5434,h3/db").hosts).toEqual([
      { host: "h1", port: 5433 },
      { host: "::1", port: 5434 },
      { host: "h3", port: 5432 },
    ]);
  });

  it("ends the user info at the last '@': unencoded '/' and '@' stay in the password", () => {
    expect(parsePostgresUrl("postgres://u:p/w@x@h1:1,h2/db")).toMatchObject({
      user: "u",
      password: "p/w@x",
      hosts: [
        { host: "h1", port: 1 },
        { host: "h2", port: 5432 },
      ],
      database: "db",
    });
  });

  it("decodes as libpq: '+' is no space, the database fully, socket directories", () => {
    expect(parsePostgresUrl("postgres://u@h/d%2Fb%40c?password=a+b")).toMatchObject({
      password: "a+b",
      database: "d/b@c",
    });
    expect(parsePostgresUrl("postgres://u@%2Fvar%2Frun%2Fpostgresql:5433/x").hosts).toEqual([
      { host: "/var/run/postgresql", port: 5433 },
    ]);
    expect(parsePostgresUrl("postgres://u@:5433/x").hosts).toEqual([
      { host: "localhost", port: 5433 },
    ]);
  });

  it("refuses what node-postgres would take silently", () => {
    const why = (url: string) => {
      try {
        parsePostgresUrl(url);
      } catch (err) {
        return (err as { expected: string }).expected;
      }
      return "accepted";
    };
    expect(why("postgres://u:s3%ZZ@h/db")).toContain("bad percent-encoding in the password");
    expect(why("postgres://u@h/d%ZZ")).toContain("bad percent-encoding in the database");
    expect(why("postgres://u:p@h/db#x")).toContain("'#' must be percent-encoded");
    expect(why("postgres://u@h/db?application_name=x")).toContain(
      'unsupported parameter "application_name"',
    );
    expect(why("postgres://u@h1:5432,h2:x/db")).toContain(
      'port "x" is not a number from 1 to 65535',
    );
    expect(why("postgres://u@h:0/db")).toContain('port "0" is not a number from 1 to 65535');
    expect(why("postgres://u@[::1/db")).toContain("is not valid");
  });

  it("reads no file and emits no warning at load (sslrootcert, sslmode)", () => {
    const warn = vi.spyOn(process, "emitWarning");
    const parts = parsePostgresUrl(
      "postgres://u@h/db?sslmode=require&sslrootcert=/nonexistent/ca.pem",
    );
    expect(parts).toMatchObject({ sslmode: "require", sslrootcert: "/nonexistent/ca.pem" });
    parsePostgresUrl("postgres://u@h/db?sslmode=verify-ca");
    expect(warn).not.toHaveBeenCalled();
  });
});
