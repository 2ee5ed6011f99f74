// The message of the ConfigError a configuration is refused with: one line, code config_invalid.

import { expect } from "vitest";
import { ConfigError } from "../../src/config/load.js";

/** The ConfigError message thrown by fn; fails the test when fn throws something else or returns. */
export function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe("config_invalid");
    expect((err as ConfigError).name).toBe("ConfigError");
    const message = (err as Error).message;
    expect(message).not.toContain("\n");
    return message;
  }
  throw new Error("expected a ConfigError");
}
