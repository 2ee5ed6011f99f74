#!/usr/bin/env node
// pgsidecar command line: `start` (default) runs the proxy; `check-config` validates and prints
// the configuration. SIGTERM (or POST /quitquitquit) drains, SIGINT stops at once, SIGHUP reloads
// the configuration.

import {
  type CliResult,
  ConfigError,
  describeConfig,
  loadConfig,
  parseCli,
} from "./config/load.js";
import type { Config } from "./config/schema.js";
import { createLogger } from "./log.js";
import { Sidecar } from "./proxy.js";

function fail(message: string): never {
  process.stderr.write(`pgsidecar: ${message}\n`);
  process.exit(1);
}

function load(cli: CliResult): Config {
  return loadConfig({ argv: cli.values, file: cli.configFile });
}

async function main(): Promise<void> {
  let cli: CliResult;
  let config: Config;
  try {
    cli = parseCli(process.argv.slice(2));
    config = load(cli);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  if (cli.command === "check-config") {
    for (const row of describeConfig(config)) process.stdout.write(`${row.key} = ${row.value}\n`);
    process.stdout.write("configuration is valid\n");
    return;
  }

  const log = createLogger(config.log_level, config.log_format);
  const proxy = new Sidecar(config, log);
  const reload = (origin: "SIGHUP" | "RELOAD") => {
    let next: Config;
    try {
      next = load(cli);
      proxy.reload(next);
    } catch (err) {
      log.error(
        { err: (err as Error).message, origin },
        "reload failed; keeping the previous configuration",
      );
      throw err;
    }
    log.level = next.log_level;
  };
  proxy.console.reloader = () => reload("RELOAD");

  // Node runs as PID 1 in the image: the kernel gives PID 1 no default action for a signal, so each
  // one the sidecar obeys has a handler, installed before start() so that none is lost meanwhile.
  let started = false;
  let pending: NodeJS.Signals | null = null;
  let stopping: "drain" | "stop" | null = null;
  const exit = (code: number) => {
    log.flush?.();
    // Let pino's asynchronous destination write its last lines.
    setTimeout(() => process.exit(code), 50);
  };
  // SIGTERM and POST /quitquitquit: the same drain, then exit 0.
  const drain = (origin: "SIGTERM" | "/quitquitquit") => {
    if (stopping !== null) return;
    stopping = "drain";
    const c = proxy.config;
    log.info(
      { shutdown_timeout_ms: c.shutdown_timeout, min_sigterm_delay_ms: c.min_sigterm_delay },
      `${origin}: draining`,
    );
    // drain() ends by shutdown_timeout; this only guards against a stop that never finishes.
    setTimeout(() => {
      log.error({}, "drain did not finish after shutdown_timeout; exiting");
      exit(1);
    }, c.shutdown_timeout + 5000).unref();
    proxy.drain().then(
      (result) => {
        log.info({ result }, "drained; exiting");
        exit(0);
      },
      (err: Error) => {
        log.error({ err: err.message }, "drain failed");
        exit(1);
      },
    );
  };
  proxy.quitter = () => {
    // The HTTP server is up before start() returns: a request that early waits, as a signal does.
    if (started) drain("/quitquitquit");
    else pending ??= "SIGTERM";
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (!started) {
      if (signal !== "SIGHUP") pending = signal;
      return;
    }
    switch (signal) {
      case "SIGHUP":
        try {
          reload("SIGHUP");
        } catch {
          // logged by reload()
        }
        return;
      case "SIGTERM":
        drain("SIGTERM");
        return;
      case "SIGINT":
        // Fast shutdown, also in the middle of a drain: close clients and servers now.
        if (stopping === "stop") return;
        stopping = "stop";
        log.info({}, "SIGINT: stopping");
        proxy.stop().then(
          () => exit(0),
          (err: Error) => {
            log.error({ err: err.message }, "stop failed");
            exit(1);
          },
        );
        return;
    }
  };
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.on(signal, onSignal);

  try {
    await proxy.start();
  } catch (err) {
    fail((err as Error).message);
  }
  started = true;
  if (pending !== null) onSignal(pending);
}

main().catch((err) => fail((err as Error).stack ?? String(err)));
