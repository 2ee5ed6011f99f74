// How a refused configuration is reported: one line naming the key, the value and where it came from.

/** One line, never a password: `invalid config: pool_size = "abc" (from --pool-size): expected ...`. */
export class ConfigError extends Error {
  override name = "ConfigError";
  readonly code = "config_invalid";
}

/** Where a value came from. */
export type ConfigSource =
  | { readonly kind: "default" }
  | { readonly kind: "file"; readonly path: string; readonly line?: number }
  | { readonly kind: "env"; readonly name: string }
  | { readonly kind: "cli"; readonly flag: string };

export function sourceLabel(source: ConfigSource): string {
  switch (source.kind) {
    case "default":
      return "default";
    case "file":
      return source.line === undefined ? source.path : `${source.path}:${source.line}`;
    case "env":
      return source.name;
    case "cli":
      return `--${source.flag}`;
    default: {
      const never: never = source;
      return never;
    }
  }
}
