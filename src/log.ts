// Structured logger (pino JSON to stdout, or one readable line per event with --log-format pretty).

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

/** Re-renders pino's JSON lines as `time LEVEL msg key=value ...` for humans. */
function prettyStream(out: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) {
        if (!line) continue;
        try {
          const { time, level, msg, pid: _pid, hostname: _host, ...rest } = JSON.parse(line);
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

export function createLogger(level: LogLevel, format: "json" | "pretty" = "json"): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: undefined,
    // Secrets must never reach a log line, even through a careless field.
    redact: { paths: ["password", "*.password", "upstream", "*.upstream"], censor: "****" },
  };
  if (format === "pretty") return pino(options, prettyStream(process.stdout));
  return pino(options, pino.destination({ dest: 1, sync: false }));
}

/** A logger that drops everything, for tests and tools. */
export const silentLogger: Logger = pino({ level: "silent" });
