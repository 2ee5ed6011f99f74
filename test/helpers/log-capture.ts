// A pgsidecar logger (the real options: redaction, scrubbing) whose lines a test can read.

import { Writable } from "node:stream";
import pino from "pino";
import { type Logger, type LogLevel, loggerOptions } from "../../src/log.js";

export interface LogCapture {
  log: Logger;
  /** Every JSON line written so far. */
  lines: string[];
  text(): string;
}

export function captureLog(level: LogLevel = "debug"): LogCapture {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { log: pino(loggerOptions(level), sink), lines, text: () => lines.join("") };
}
