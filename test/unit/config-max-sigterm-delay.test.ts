// max_sigterm_delay (Cloud SQL Auth Proxy's name) is what shutdown_timeout already is: the drain
// ends at most this long after SIGTERM. The name is not a setting; each way of writing it is
// answered with shutdown_timeout, not with min_sigterm_delay, one letter away but the opposite.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig, parseCli } from "../../src/config/load.js";
import { SETTINGS } from "../../src/config/schema.js";

describe("max_sigterm_delay", () => {
  it("is not a setting: shutdown_timeout is, and its doc line says so", () => {
    expect("max_sigterm_delay" in SETTINGS).toBe(false);
    expect(SETTINGS.shutdown_timeout.doc).toMatch(/max-sigterm-delay/);
    expect(SETTINGS.shutdown_timeout.doc).toMatch(/counted from the signal/);
  });

  it("points to shutdown_timeout from the command line", () => {
    for (const args of [["--max-sigterm-delay", "5s"], ["--max-sigterm-delay=5s"]]) {
      expect(() => parseCli(args)).toThrow(
        "invalid command line: Unknown argument: max-sigterm-delay (did you mean --shutdown-timeout?)",
      );
    }
    expect(() =>
      loadConfig({ argv: { upstream: "postgres://a@b/c", max_sigterm_delay: "5s" }, env: {} }),
    ).toThrow(
      "invalid config: unknown setting max_sigterm_delay (from the command line): did you mean shutdown_timeout?",
    );
  });

  it("points to shutdown_timeout from the config file", () => {
    const dir = mkdtempSync(join(tmpdir(), "pgsidecar-max-sigterm-"));
    try {
      const file = join(dir, "pgsidecar.yaml");
      writeFileSync(file, "upstream: postgres://a@b/c\nmax_sigterm_delay: 60s\n");
      expect(() => loadConfig({ file, env: {} })).toThrow(
        `invalid config: unknown key max_sigterm_delay (from ${file}:2): did you mean shutdown_timeout?`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
