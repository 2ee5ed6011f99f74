// A rotating password source's events (refreshes, retries) and log lines, as a test reads them.

import type { CredentialEvents } from "../../src/auth/upstream-password.js";
import type { LogLevel } from "../../src/log.js";
import { captureLog } from "./log-capture.js";

export function credentialRecorder(level: LogLevel = "info") {
  const events: string[] = [];
  const handlers: CredentialEvents = {
    refreshed: (source, outcome) => events.push(`refreshed ${source} ${outcome}`),
    retried: (source, outcome) => events.push(`retried ${source} ${outcome}`),
  };
  return { events, handlers, ...captureLog(level) };
}
