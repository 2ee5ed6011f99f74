// password_command and its settings: the two forms, what SHOW CONFIG shows of it (the program,
// not its arguments), and the checks at load.
import { describe, expect, it } from "vitest";
import { describeConfig, loadConfig } from "../../src/config/load.js";
import { errorOf } from "../helpers/config-errors.js";

const URL_NO_PASSWORD = "postgres://app@db.internal:5432/app";

function load(argv: Record<string, unknown>) {
  return loadConfig({ argv: { upstream: URL_NO_PASSWORD, ...argv }, env: {} });
}
describe("password_command", () => {
  it("is off by default; ttl 5m and timeout 10s", () => {
    const c = load({});
    expect(c.password_command).toBeNull();
    expect(c.password_command_ttl).toBe(300_000);
    expect(c.password_command_timeout).toBe(10_000);
  });

  it("takes a command line (shell) or a list (argv, no shell)", () => {
    expect(
      load({ password_command: "vault kv get -field=password secret/db" }).password_command,
    ).toBe("vault kv get -field=password secret/db");
    const env = loadConfig({
      env: {
        PGSIDECAR_UPSTREAM: URL_NO_PASSWORD,
        PGSIDECAR_PASSWORD_COMMAND: "/bin/get-pw --role app",
        PGSIDECAR_PASSWORD_COMMAND_TTL: "0",
      },
    });
    expect(env.password_command).toBe("/bin/get-pw --role app");
    expect(env.password_command_ttl).toBe(0);
    expect(load({ password_command: ["/bin/get-pw", "--role", "app"] }).password_command).toEqual([
      "/bin/get-pw",
      "--role",
      "app",
    ]);
  });

  it("shows only its program in SHOW CONFIG (an argument may be a token)", () => {
    for (const command of [
      "/usr/bin/vault read -token=s.abcdef secret/db",
      ["/usr/bin/vault", "-token=s.abcdef"],
    ]) {
      const row = describeConfig(load({ password_command: command })).find(
        (r) => r.key === "password_command",
      );
      expect(row?.value).toBe("/usr/bin/vault ...");
      expect(JSON.stringify(describeConfig(load({ password_command: command })))).not.toContain(
        "s.abcdef",
      );
    }
  });

  it("refuses a bad value without showing it, and an upstream URL that has a password too", () => {
    expect(errorOf(() => load({ password_command: [] }))).toBe(
      "invalid config: password_command = **** (from --password-command): expected a command line (a string), or a list of strings (argv, run without a shell)",
    );
    expect(errorOf(() => load({ password_command: ["vault", 3] }))).toMatch(/= \*\*\*\* /);
    expect(
      errorOf(() =>
        loadConfig({
          argv: { upstream: "postgres://app:s3cret@db.internal/app", password_command: "get-pw" },
          env: {},
        }),
      ),
    ).toBe(
      "invalid config: password_command = **** (from --password-command): expected no password_command, since the upstream URL has a password (remove one of the two)",
    );
    expect(errorOf(() => load({ password_command: "get-pw", password_command_timeout: "0" }))).toBe(
      'invalid config: password_command_timeout = "0" (from --password-command-timeout): expected a duration above 0',
    );
  });
});
