// The CLI refuses bad start-up input with one clear line and a non-zero exit, and never prints a
// password: a port in use, an unreadable config file, a malformed URL, an invalid value.
import net from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../helpers/processes.js";

const cli = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));
const upstream = "postgres://app:s3cret-pw@127.0.0.1:5999/app";

async function start(args: string[]) {
  const r = await run(process.execPath, [cli, ...args], {
    timeoutMs: 20_000,
    env: { ...process.env, PGSIDECAR_CONFIG: "" },
  });
  return { ...r, lines: r.stderr.trim().split("\n").filter(Boolean) };
}

describe("CLI start-up errors", () => {
  let blocker: net.Server;
  let busyPort = 0;
  beforeAll(async () => {
    blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()));
    busyPort = (blocker.address() as net.AddressInfo).port;
  });
  afterAll(() => blocker.close());

  it("a listen port in use: one line naming the address, exit 1", async () => {
    const r = await start([
      "--listen",
      `127.0.0.1:${busyPort}`,
      "--http-listen",
      "off",
      "--upstream",
      upstream,
    ]);
    expect(r.code).toBe(1);
    expect(r.lines).toEqual([
      `pgsidecar: cannot listen on 127.0.0.1:${busyPort}: address already in use`,
    ]);
  });

  it("an unreadable config file: one line with the path and the reason", async () => {
    const r = await start(["--config", "/nonexistent/pgsidecar.yaml"]);
    expect(r.code).toBe(1);
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]).toContain("/nonexistent/pgsidecar.yaml");
    expect(r.lines[0]).toContain("ENOENT");
  });

  it("a malformed upstream URL: one line, password masked", async () => {
    const r = await start(["--upstream", "postgres://app:s3cret-pw@127.0.0.1:notaport/app"]);
    expect(r.code).toBe(1);
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]).toMatch(/upstream/);
    expect(r.stderr + r.stdout).not.toContain("s3cret-pw");
  });

  it("an invalid value: one line naming key, value and what was expected", async () => {
    const r = await start(["--upstream", upstream, "--pool-size", "lots"]);
    expect(r.code).toBe(1);
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]).toContain("pool_size");
    expect(r.lines[0]).toContain("lots");
    expect(r.lines[0]).toMatch(/expected/);
  });

  it("--help documents every flag the issue names", async () => {
    const r = await run(process.execPath, [cli, "--help"], { timeoutMs: 20_000 });
    expect(r.code).toBe(0);
    for (const flag of [
      "--listen",
      "--upstream",
      "--pool-mode",
      "--pool-size",
      "--config",
      "--retry",
      "--http-listen",
    ]) {
      expect(r.stdout).toContain(flag);
    }
  });
});
