// The command line: a yargs option per setting, --help grouped by topic, hints for unknown flags.

import type { Options } from "yargs";
import yargs from "yargs";
import { packageVersion } from "../version.js";
import { ConfigError } from "./config-error.js";
import {
  closest,
  ENV_PREFIX,
  redactUrl,
  SETTING_KEYS,
  SETTING_LIST,
  SETTINGS,
  type Setting,
  type SettingKey,
} from "./schema.js";

/**
 * Other tools' names for one of our settings, where the closest spelling would mislead:
 * max_sigterm_delay is one edit from min_sigterm_delay, but means shutdown_timeout.
 */
const KNOWN_AS: Readonly<Record<string, SettingKey>> = { max_sigterm_delay: "shutdown_timeout" };

/** The setting an unknown name probably meant. */
export function settingHint(name: string): string | undefined {
  return KNOWN_AS[name.replaceAll("-", "_").toLowerCase()] ?? closest(name, SETTING_KEYS);
}

/** Help text for a default, as written in the YAML file. */
function defaultText(s: Setting): string {
  const d = s.default;
  if (d === null) return "none";
  if (Array.isArray(d)) return d.length === 0 ? "[]" : d.join(",");
  if (typeof d === "object") return "{}";
  if (d === "") return '""';
  return String(d);
}

/** yargs options for every setting (flag = kebab-case key) plus --config. For cli.ts. */
export function buildCliOptions(): Record<string, Options> {
  const options: Record<string, Options> = {
    config: {
      type: "string",
      describe: `YAML config file (also ${ENV_PREFIX}CONFIG)`,
      requiresArg: true,
    },
  };
  for (const s of SETTING_LIST) {
    const plain = s.type === "string" || s.type === "boolean";
    options[s.flag] = {
      type: s.cli,
      describe: plain ? s.doc : `${s.doc} (${s.type})`,
      defaultDescription: defaultText(s),
      group: `${s.group}:`,
      ...(s.cli === "string" ? { requiresArg: true } : {}),
    };
  }
  return options;
}

export interface CliResult {
  command: "start" | "check-config";
  /** Only the flags given, keyed by snake_case setting name; pass as `loadConfig({ argv })`. */
  values: Record<string, unknown>;
  configFile: string | null;
}

function buildParser(args: string[]) {
  return yargs(args)
    .scriptName("pgsidecar")
    .usage("$0 [start|check-config] [options]")
    .parserConfiguration({
      "camel-case-expansion": false,
      "dot-notation": false,
      "parse-numbers": false,
      "parse-positional-numbers": false,
      "duplicate-arguments-array": false,
    })
    .command(["start", "$0"], "Run the proxy (the default command)")
    .command("check-config", "Validate the configuration, print it (passwords masked) and exit")
    .options(buildCliOptions())
    .strict()
    .help()
    .alias("help", "h")
    .version(packageVersion)
    .wrap(Math.min(120, process.stdout.columns || 100))
    .epilogue(
      `Every flag is also the YAML key with '_' for '-' (pool_size), and the env var ${ENV_PREFIX}<KEY> ` +
        `(${ENV_PREFIX}POOL_SIZE). Precedence: defaults < config file < env < flags. ` +
        "Durations: seconds or 300ms/5s/2m/1h. Sizes: bytes or 64kB/8MB.",
    )
    .fail((message, err) => {
      // yargs reports usage errors as a message, some (missing flag value) as a YError.
      if (err && err.name !== "YError") throw err;
      // yargs may echo an argument (a stray URL with a password): mask it.
      const text = message || err?.message || "invalid arguments";
      let line = redactUrl(text).replace(/\s*\n\s*/g, " ");
      const unknown = /^Unknown arguments?: (.+)$/.exec(line);
      if (unknown) {
        const flags = SETTING_LIST.map((s) => s.flag).concat("config");
        const hints = unknown[1]
          .split(", ")
          .map((a) => {
            const name = a.replace(/^-+/, "").replace(/=.*$/, "");
            const known = KNOWN_AS[name.replaceAll("-", "_")];
            return known === undefined ? closest(name, flags) : SETTINGS[known].flag;
          })
          .filter((h): h is string => h !== undefined);
        if (hints.length > 0) line += ` (did you mean ${hints.map((h) => `--${h}`).join(", ")}?)`;
      }
      throw new ConfigError(`invalid command line: ${line}`);
    });
}

/**
 * Parses the arguments after the script (`hideBin(process.argv)`). --help/--version print and
 * exit as yargs does; a bad flag or command throws ConfigError.
 */
export function parseCli(argv: string[]): CliResult {
  const parsed = buildParser(argv).parseSync() as Record<string, unknown> & { _: unknown[] };
  const values: Record<string, unknown> = {};
  for (const s of SETTING_LIST) {
    const v = parsed[s.flag];
    if (v !== undefined) values[s.key] = v;
  }
  const config = parsed.config;
  return {
    command: parsed._[0] === "check-config" ? "check-config" : "start",
    values,
    configFile: typeof config === "string" && config !== "" ? config : null,
  };
}

/** The --help text. */
export function cliHelp(): Promise<string> {
  return buildParser([]).getHelp();
}
