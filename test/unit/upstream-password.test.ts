// Rotating upstream passwords: a users password_file followed as Kubernetes updates a Secret (a
// symlink swap), password_command run, cached and timed out, and the choice of the value to log
// in with around a 28P01. Real files and real processes; the command's clock is injected.

import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  CommandPassword,
  CredentialUnavailable,
  FilePassword,
  StaticPassword,
} from "../../src/auth/upstream-password.js";
import { credentialRecorder } from "../helpers/credential-recorder.js";

const dir = mkdtempSync(join(tmpdir(), "pgsidecar-upstream-password-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = (name: string) => join(dir, `${n++}-${name}`);

const recorder = () => credentialRecorder();

/** A Secret volume as the kubelet lays it out: key -> ..data/key, ..data -> a timestamped dir. */
function secretVolume(password: string) {
  const root = fresh("secret");
  mkdirSync(root);
  let version = 0;
  const publish = (value: string) => {
    const d = join(root, `..v${version++}`);
    mkdirSync(d);
    writeFileSync(join(d, "password"), `${value}\n`);
    symlinkSync(d, join(root, "..data_tmp"));
    renameSync(join(root, "..data_tmp"), join(root, "..data"));
  };
  publish(password);
  symlinkSync(join("..data", "password"), join(root, "password"));
  return { path: join(root, "password"), publish };
}

describe("FilePassword (a users password_file)", () => {
  it("follows a Secret update (the ..data symlink swapped) for the next login, and logs no password", async () => {
    const r = recorder();
    const secret = secretVolume("first-secret");
    const p = new FilePassword(secret.path, "first-secret", r.handlers, r.log);
    expect(await p.get()).toBe("first-secret");
    secret.publish("second-secret");
    expect(await p.get()).toBe("second-secret");
    expect(await p.get()).toBe("second-secret");
    // The first check only confirmed what the loader read; then one change.
    expect(r.events).toEqual(["refreshed file changed"]);
    expect(r.text()).toMatch(/upstream password changed \(password_file\)/);
    expect(r.text()).not.toMatch(/first-secret|second-secret/);
  });

  it("keeps the last password while the file is missing or empty, says so once, and recovers", async () => {
    const r = recorder();
    const path = fresh("pw");
    writeFileSync(path, "kept-secret\n");
    const p = new FilePassword(path, "kept-secret", r.handlers, r.log);
    expect(await p.get()).toBe("kept-secret");
    rmSync(path);
    expect(await p.get()).toBe("kept-secret");
    expect(await p.get()).toBe("kept-secret");
    writeFileSync(path, "\n");
    expect(await p.get()).toBe("kept-secret");
    writeFileSync(path, "next-secret\r\n");
    expect(await p.get()).toBe("next-secret");
    expect(r.events).toEqual([
      "refreshed file failed",
      "refreshed file failed",
      "refreshed file failed",
      "refreshed file changed",
    ]);
    const warnings = r.lines.filter((l) => l.includes("password_file could not be read"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("ENOENT");
    expect(r.text()).toMatch(/password_file readable again/);
    expect(r.text()).not.toMatch(/kept-secret|next-secret/);
  });

  it("after a 28P01 reads the file again even when stat() sees no change", async () => {
    const r = recorder();
    const path = fresh("pw");
    writeFileSync(path, "a-secret");
    const p = new FilePassword(path, "stale-secret", r.handlers, r.log);
    // As if the loader's value were stale and stat() had already seen the file.
    expect(await p.refused("stale-secret")).toBe("a-secret");
  });
});

describe("which value a login uses around a 28P01", () => {
  it("source updated before ALTER ROLE: the new value is refused, the accepted one is used until the new one takes", async () => {
    const r = recorder();
    const path = fresh("pw");
    writeFileSync(path, "old-secret");
    const p = new FilePassword(path, "old-secret", r.handlers, r.log);
    p.accepted(await p.get(), false);
    writeFileSync(path, "new-secret-1");
    const tried = await p.get();
    expect(tried).toBe("new-secret-1");
    // The server still has the old one: the relogin uses it, and so do later logins.
    expect(await p.refused(tried)).toBe("old-secret");
    p.accepted("old-secret", true);
    expect(await p.get()).toBe("old-secret");
    // ALTER ROLE ran: the old one is refused, the new one is worth a try again.
    expect(await p.refused("old-secret")).toBe("new-secret-1");
    p.accepted("new-secret-1", true);
    expect(await p.get()).toBe("new-secret-1");
    expect(r.events.filter((e) => e.startsWith("retried"))).toEqual([
      "retried file succeeded",
      "retried file succeeded",
    ]);
  });

  it("ALTER ROLE before the source: nothing else to try now (null); the source changes a moment later", async () => {
    const r = recorder();
    const path = fresh("pw");
    writeFileSync(path, "old-secret");
    const p = new FilePassword(path, "old-secret", r.handlers, r.log);
    p.accepted(await p.get(), false);
    expect(await p.refused("old-secret")).toBeNull();
    writeFileSync(path, "new-secret-22");
    expect(await p.get()).toBe("new-secret-22");
  });

  it("a fixed password is not retried and never changes", async () => {
    const p = new StaticPassword("fixed");
    expect(p.rotates).toBe(false);
    expect(await p.get()).toBe("fixed");
    expect(await p.refused("fixed")).toBeNull();
  });
});

describe("CommandPassword (password_command)", () => {
  function script(body: string): string {
    const path = fresh("cmd.sh");
    writeFileSync(path, `#!/bin/sh\n${body}\n`);
    chmodSync(path, 0o755);
    return path;
  }

  it("takes the trimmed standard output, uses it for the ttl, then runs the command again", async () => {
    const r = recorder();
    const value = fresh("value");
    const runs = fresh("runs");
    writeFileSync(value, "cmd-secret-1");
    const cmd = script(`echo run >> '${runs}'; printf '  %s \\n' "$(cat '${value}')"`);
    let now = 1_000_000;
    const p = new CommandPassword(
      { command: [cmd], ttlMs: 60_000, timeoutMs: 5000 },
      r.handlers,
      r.log,
      () => now,
    );
    expect(p.rotates).toBe(true);
    // Concurrent logins wait for one run.
    expect(await Promise.all([p.get(), p.get(), p.get()])).toEqual([
      "cmd-secret-1",
      "cmd-secret-1",
      "cmd-secret-1",
    ]);
    writeFileSync(value, "cmd-secret-2");
    now += 59_000;
    expect(await p.get()).toBe("cmd-secret-1");
    now += 2000;
    expect(await p.get()).toBe("cmd-secret-2");
    expect(readFileSync(runs, "utf8").trim().split("\n")).toHaveLength(2);
    expect(r.events).toEqual(["refreshed command changed", "refreshed command changed"]);
    expect(r.text()).toMatch(/upstream password changed \(password_command\)/);
    expect(r.text()).not.toMatch(/cmd-secret/);
  });

  it("runs a string with /bin/sh -c", async () => {
    const r = recorder();
    const p = new CommandPassword(
      { command: "printf 'sh-%s' secret | tr a-z A-Z", ttlMs: 0, timeoutMs: 5000 },
      r.handlers,
      r.log,
    );
    expect(await p.get()).toBe("SH-SECRET");
    expect(p.program).toBe("printf");
  });

  it("a failure keeps the last password, logs why without the output, and is retried only after a pause", async () => {
    const r = recorder();
    const mode = fresh("mode");
    writeFileSync(mode, "ok");
    const cmd = script(
      `if [ "$(cat '${mode}')" = ok ]; then echo good-secret-9; else echo "token good-secret-9 expired" >&2; echo partial-out; exit 3; fi`,
    );
    let now = 0;
    const p = new CommandPassword(
      { command: [cmd, "--token", "arg-token-1234"], ttlMs: 1000, timeoutMs: 5000 },
      r.handlers,
      r.log,
      () => now,
    );
    expect(await p.get()).toBe("good-secret-9");
    writeFileSync(mode, "fail");
    now += 1500;
    expect(await p.get()).toBe("good-secret-9");
    // Within the pause after a failure, no new run.
    now += 500;
    expect(await p.get()).toBe("good-secret-9");
    expect(r.events).toEqual(["refreshed command changed", "refreshed command failed"]);
    const text = r.text();
    expect(text).toMatch(/password_command failed; keeping the last password/);
    expect(text).toMatch(/exited with code 3: token \*\*\*\* expired/);
    expect(text).not.toMatch(/good-secret-9|partial-out|arg-token-1234/);
    // A 28P01 runs it at once, pause or not.
    writeFileSync(mode, "ok");
    expect(await p.refused("good-secret-9")).toBeNull();
    expect(r.events.at(-1)).toBe("refreshed command unchanged");
  });

  it("is killed at password_command_timeout", async () => {
    const r = recorder();
    const p = new CommandPassword(
      { command: ["/bin/sleep", "10"], ttlMs: 60_000, timeoutMs: 200 },
      r.handlers,
      r.log,
    );
    const t0 = Date.now();
    await expect(p.get()).rejects.toBeInstanceOf(CredentialUnavailable);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(r.text()).toMatch(/did not finish within 200 ms/);
  });

  it("without any password yet, a login cannot start: CredentialUnavailable names the reason", async () => {
    const r = recorder();
    for (const [command, why] of [
      [["/nonexistent/get-password"], /could not be started \(ENOENT\)/],
      ["true", /printed nothing/],
      ["exit 7", /exited with code 7/],
    ] as const) {
      const p = new CommandPassword({ command, ttlMs: 60_000, timeoutMs: 5000 }, r.handlers, r.log);
      await expect(p.get()).rejects.toThrow(why);
    }
    expect(r.text()).toMatch(/password_command failed; no password yet/);
  });
});
