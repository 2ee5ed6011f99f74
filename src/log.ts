// Structured logger: pino JSON lines on stdout (numeric pino levels, epoch-ms `time`), or one
// readable line per event with --log-format pretty. Secrets never reach either: known fields are
// redacted, and any text that looks like a URL with credentials or a conninfo password is masked.

import { Writable } from "node:stream";
import { pino } from "pino";

export type Logger = pino.Logger;
export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "silent";

const LEVEL_NAMES: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};

const MASK = "****";

/** Fields whose value is a secret, or a connection string that may carry one. */
const REDACT_PATHS = [
  "password",
  "*.password",
  "passfile",
  "secret",
  "*.secret",
  "scramSecret",
  "*.scramSecret",
  "upstream",
  "*.upstream",
  "connectionString",
  "*.connectionString",
];

/** scheme://user:password@ -> scheme://user:****@ (Postgres URLs, and any other). */
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*:)[^\s@/]*@/gi;
/** password=... in a libpq conninfo string, quoted or not. */
const CONNINFO_PASSWORD = /\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']+)/gi;

/** Masks credentials in free text (messages, error strings). */
export function scrubSecrets(text: string): string {
  if (!text.includes("@") && !/password\s*=/i.test(text)) return text;
  return text.replace(URL_CREDENTIALS, `$1${MASK}@`).replace(CONNINFO_PASSWORD, `$1${MASK}`);
}

function scrubValue(value: unknown, depth: number): unknown {
  if (typeof value === "string") return scrubSecrets(value);
  if (depth > 3 || value === null || typeof value !== "object") return value;
  if (value instanceof Error) {
    // As pino's err serializer renders it, with the text scrubbed.
    const out: Record<string, unknown> = { type: value.name, message: scrubSecrets(value.message) };
    for (const [k, v] of Object.entries(value)) out[k] = scrubValue(v, depth + 1);
    if (value.stack) out.stack = scrubSecrets(value.stack);
    return out;
  }
  if (Array.isArray(value)) return value.map((v) => scrubValue(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = scrubValue(v, depth + 1);
  return out;
}

/** Re-renders pino's JSON lines as `time LEVEL msg key=value ...` for humans. */
function prettyStream(out: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) {
        if (!line) continue;
        try {
          // No pid/hostname from pino (base is undefined): a `pid` here is a server's.
          const { time, level, msg, ...rest } = JSON.parse(line);
          const extras = Object.entries(rest)
            .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
            .join(" ");
          out.write(
            `${new Date(time).toISOString()} ${LEVEL_NAMES[level] ?? level} ${msg ?? ""}${extras ? ` ${extras}` : ""}\n`,
          );
        } catch {
          out.write(`${line}\n`);
        }
      }
      done();
    },
  });
}

export function loggerOptions(level: LogLevel): pino.LoggerOptions {
  return {
    level,
    base: undefined,
    redact: { paths: REDACT_PATHS, censor: MASK },
    // Only lines that are written pay for this (pino skips disabled levels before it).
    formatters: {
      log: (obj) => scrubValue(obj, 0) as Record<string, unknown>,
    },
    hooks: {
      logMethod(args, method) {
        for (let i = 0; i < args.length; i++) {
          const a = args[i];
          if (typeof a === "string") (args as unknown[])[i] = scrubSecrets(a);
        }
        return method.apply(this, args);
      },
    },
  };
}

export function createLogger(level: LogLevel, format: "json" | "pretty" = "json"): Logger {
  const options = loggerOptions(level);
  if (format === "pretty") return pino(options, prettyStream(process.stdout));
  return pino(options, pino.destination({ dest: 1, sync: false }));
}

/** A logger that drops everything, for tests and tools. */
export const silentLogger: Logger = pino({ level: "silent" });
