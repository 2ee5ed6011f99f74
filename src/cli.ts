#!/usr/bin/env node
// pgsidecar command line: `start` (default) runs the proxy; `check-config` validates and prints
// the configuration. SIGTERM drains, SIGINT stops at once, SIGHUP reloads the configuration.

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
  const reload = () => {
    try {
      const next = load(cli);
      log.level = next.log_level;
      proxy.reload(next);
    } catch (err) {
      log.error(
        { err: (err as Error).message },
        "reload failed; keeping the previous configuration",
      );
      throw err;
    }
  };
  proxy.console.reloader = reload;
  try {
    await proxy.start();
  } catch (err) {
    fail((err as Error).message);
  }

  let stopping = false;
  process.on("SIGHUP", () => {
    try {
      reload();
    } catch {
      // logged by reload()
    }
  });
  process.on("SIGTERM", () => {
    if (stopping) return;
    stopping = true;
    log.info({ timeout_ms: proxy.config.shutdown_timeout }, "SIGTERM: draining");
    proxy.drain().then(
      (result) => {
        log.info({ result }, "drained; exiting");
        log.flush?.();
        setTimeout(() => process.exit(0), 50);
      },
      () => process.exit(1),
    );
  });
  process.on("SIGINT", () => {
    log.info({}, "SIGINT: stopping");
    proxy.stop().finally(() => {
      log.flush?.();
      setTimeout(() => process.exit(0), 50);
    });
  });
}

main().catch((err) => fail((err as Error).stack ?? String(err)));
