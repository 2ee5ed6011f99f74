// Where a pool's upstream password comes from: fixed (the URL's, or a users entry's), a file that
// is rotated under us (users[].password_file, a mounted Kubernetes Secret), a command
// (password_command: Vault, a cloud CLI), or an RDS IAM token (upstream_auth: aws-rds-iam, in
// rds-iam.ts). New server logins ask for it; open servers keep theirs.

import { spawn } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import type { Logger } from "../log.js";

export const CredentialSource = {
  Static: "static",
  File: "file",
  Command: "command",
  AwsRdsIam: "aws-rds-iam",
} as const;
export type CredentialSource = (typeof CredentialSource)[keyof typeof CredentialSource];
/** The sources that are read again (every one but a fixed password), as metric labels. */
export const ROTATING_SOURCES = ["file", "command", "aws-rds-iam"] as const;
export type RotatingSource = (typeof ROTATING_SOURCES)[number];
/** What a refresh (a re-read of the file, a run of the command) found. */
export const RefreshOutcome = ["changed", "unchanged", "failed"] as const;
export type RefreshOutcome = (typeof RefreshOutcome)[number];
/** How the relogins after a 28P01 ended: one succeeded, or the last was refused too. */
export const RetryOutcome = ["succeeded", "failed"] as const;
export type RetryOutcome = (typeof RetryOutcome)[number];

export interface CredentialEvents {
  refreshed(source: RotatingSource, outcome: RefreshOutcome): void;
  retried(source: CredentialSource, outcome: RetryOutcome): void;
}

/** No password could be had at all (never read, never printed): the login cannot start. */
export class CredentialUnavailable extends Error {
  override name = "CredentialUnavailable";
}

/**
 * A password for new server logins. Besides the source's latest value it remembers the last one
 * the upstream accepted: while the latest is known to be refused (the Secret was updated before
 * `ALTER ROLE` ran), logins keep using the accepted one, until the source changes again or that
 * one is refused too.
 */
export abstract class UpstreamPassword {
  abstract readonly source: CredentialSource;
  protected current: string | null;
  private acceptedValue: string | null = null;
  private refusedValue: string | null = null;
  private inFlight: Promise<void> | null = null;

  constructor(initial: string | null) {
    this.current = initial;
  }

  /** A rotating source: worth one refresh and retry when the upstream answers 28P01. */
  get rotates(): boolean {
    return this.source !== CredentialSource.Static;
  }

  /** The latest value known, without asking the source (for logins that cannot wait). */
  get latest(): string | null {
    return this.current;
  }

  /** The password for the next login. Throws CredentialUnavailable when there is none at all. */
  async get(): Promise<string | null> {
    await this.once(() => this.check());
    const c = this.current;
    if (c !== null && c === this.refusedValue && this.acceptedValue !== null)
      return this.acceptedValue;
    return c;
  }

  /** A login with `value` succeeded (`retried`: it was a relogin after a 28P01). */
  accepted(value: string | null, retried: boolean): void {
    this.acceptedValue = value;
    if (this.refusedValue === value) this.refusedValue = null;
    if (retried) this.events.retried(this.source, "succeeded");
  }

  /**
   * The upstream refused `value` (28P01): refreshes the source at once and returns the value
   * worth a relogin (the source's new one, else the last accepted), or null for none now.
   */
  async refused(value: string | null): Promise<string | null> {
    this.refusedValue = value;
    await this.once(() => this.refresh());
    if (this.current !== null && this.current !== value) return this.current;
    if (this.acceptedValue !== null && this.acceptedValue !== value) return this.acceptedValue;
    return null;
  }

  /** The last relogin after a 28P01 was refused as well: the client gets the 28P01. */
  retryRefused(): void {
    this.events.retried(this.source, "failed");
  }

  protected abstract readonly events: CredentialEvents;
  /** Re-reads the source if it may have changed (cheap when it has not). */
  protected abstract check(): Promise<void>;
  /** Re-reads the source now. */
  protected abstract refresh(): Promise<void>;

  /** One read of the source at a time; concurrent logins wait for the same one. */
  private once(read: () => Promise<void>): Promise<void> {
    if (this.inFlight === null) {
      this.inFlight = read().finally(() => {
        this.inFlight = null;
      });
    }
    return this.inFlight;
  }
}

const NO_EVENTS: CredentialEvents = { refreshed() {}, retried() {} };

/** A password given in the config: the URL's, or a users entry's `password`. */
export class StaticPassword extends UpstreamPassword {
  readonly source = CredentialSource.Static;
  protected readonly events: CredentialEvents;
  constructor(password: string | null, events: CredentialEvents = NO_EVENTS) {
    super(password);
    this.events = events;
  }
  protected async check(): Promise<void> {}
  protected async refresh(): Promise<void> {}
}

/**
 * users[].password_file. Before each login the file is stat()ed (through symlinks: a Secret
 * update swaps the `..data` link, so the inode changes) and read again only when its identity,
 * size or times changed; after a 28P01 it is read again regardless. As at load, one trailing
 * newline is not part of the password. A file that cannot be read, or is empty, keeps the last
 * value.
 */
export class FilePassword extends UpstreamPassword {
  readonly source = CredentialSource.File;
  /** ino:size:mtime:ctime of the file as last read; null before the first check. */
  private stamp: string | null = null;
  private failing = false;

  constructor(
    readonly path: string,
    /** What the config loader read at start or reload. */
    initial: string,
    protected readonly events: CredentialEvents,
    private readonly log: Logger,
  ) {
    super(initial);
  }

  protected async check(): Promise<void> {
    let stamp: string;
    try {
      const s = await stat(this.path);
      stamp = `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
    } catch (err) {
      this.failed(`cannot stat it (${(err as NodeJS.ErrnoException).code ?? "error"})`);
      return;
    }
    if (stamp === this.stamp) return;
    const first = this.stamp === null;
    this.stamp = stamp;
    await this.read(first);
  }

  protected refresh(): Promise<void> {
    return this.read(false);
  }

  /** `quiet`: the first check after start, which only confirms what the loader read. */
  private async read(quiet: boolean): Promise<void> {
    let text: string;
    try {
      text = (await readFile(this.path, "utf8")).replace(/\r?\n$/, "");
    } catch (err) {
      this.failed(`cannot read it (${(err as NodeJS.ErrnoException).code ?? "error"})`);
      return;
    }
    if (text === "") {
      this.failed("it is empty");
      return;
    }
    if (this.failing) {
      this.failing = false;
      this.log.info({ path: this.path }, "password_file readable again");
    }
    if (text === this.current) {
      if (!quiet) this.events.refreshed("file", "unchanged");
      return;
    }
    this.current = text;
    this.events.refreshed("file", "changed");
    this.log.info(
      { path: this.path },
      "upstream password changed (password_file); used for new server logins",
    );
  }

  private failed(why: string): void {
    // A file that cannot be read is looked at again at the next login: stamp it as unknown.
    this.stamp = null;
    this.events.refreshed("file", "failed");
    // Logged when it starts failing, not at every login while it does.
    if (this.failing) return;
    this.failing = true;
    this.log.warn(
      { path: this.path, err: why },
      "password_file could not be read; keeping the last password",
    );
  }
}

/** password_command: a shell command line, or argv (a YAML list: no shell). */
export type PasswordCommand = string | readonly string[];

export interface CommandSettings {
  command: PasswordCommand;
  /** password_command_ttl: how long a printed password is used; 0 = run for every login. */
  ttlMs: number;
  /** password_command_timeout: the command is killed after this long. */
  timeoutMs: number;
}

/** The longest standard output taken as a password; more is a failure (not a password). */
const MAX_STDOUT = 64 * 1024;
/** How much of standard error is kept for the log line. */
const MAX_STDERR = 4096;
/** After a failure with a value still in hand, the command is run again no sooner than this. */
const FAILURE_BACKOFF_MS = 5000;

/**
 * password_command: runs the command, takes its standard output (trimmed) as the password and
 * uses it for password_command_ttl; after that, the next login runs it again. A failure (exit
 * code, signal, timeout, no output) is logged without the output and keeps the last good value.
 */
export class CommandPassword extends UpstreamPassword {
  readonly source = CredentialSource.Command;
  /** When the value expires (epoch ms); 0 before the first run. */
  private expiresAt = 0;
  /** No new run after a failure before this (epoch ms), when a value is in hand. */
  private retryAt = 0;
  private lastError = "";

  constructor(
    private readonly settings: CommandSettings,
    protected readonly events: CredentialEvents,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    super(null);
  }

  /** For logs: the program, never its arguments (a token could be one). */
  get program(): string {
    const c = this.settings.command;
    const first = typeof c === "string" ? (c.trim().split(/\s+/)[0] ?? "") : (c[0] ?? "");
    return first.split("/").pop() ?? first;
  }

  protected async check(): Promise<void> {
    const now = this.now();
    if (this.current !== null && (now < this.expiresAt || now < this.retryAt)) return;
    await this.run();
    if (this.current === null) {
      throw new CredentialUnavailable(
        `password_command (${this.program}) gave no password: ${this.lastError}`,
      );
    }
  }

  protected refresh(): Promise<void> {
    return this.run();
  }

  private async run(): Promise<void> {
    const result = await runCommand(this.settings.command, this.settings.timeoutMs);
    const now = this.now();
    let error: string | null = result.error;
    const password = result.stdout.trim();
    if (error === null && password === "") error = "it printed nothing";
    if (error !== null) {
      // Whatever it printed may hold the password, or a part of it: only the error is logged,
      // and standard error with any known value masked.
      const stderr = mask(result.stderr, [password, this.current ?? ""]);
      this.lastError = stderr ? `${error}: ${stderr}` : error;
      this.retryAt = now + Math.min(FAILURE_BACKOFF_MS, Math.max(this.settings.ttlMs, 1000));
      this.events.refreshed("command", "failed");
      this.log.warn(
        { program: this.program, err: this.lastError },
        this.current === null
          ? "password_command failed; no password yet"
          : "password_command failed; keeping the last password",
      );
      return;
    }
    this.expiresAt = now + this.settings.ttlMs;
    this.retryAt = 0;
    if (password === this.current) {
      this.events.refreshed("command", "unchanged");
      return;
    }
    const first = this.current === null;
    this.current = password;
    this.events.refreshed("command", "changed");
    if (!first)
      this.log.info(
        { program: this.program },
        "upstream password changed (password_command); used for new server logins",
      );
  }
}

interface CommandResult {
  stdout: string;
  stderr: string;
  /** Why it failed, without anything it printed; null when it exited 0. */
  error: string | null;
}

/** Runs `command` with stdin closed, the process's environment, and a SIGKILL at the timeout. */
export function runCommand(command: PasswordCommand, timeoutMs: number): Promise<CommandResult> {
  const [file, args] =
    typeof command === "string" ? ["/bin/sh", ["-c", command]] : [command[0], command.slice(1)];
  return new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    let tooLong = false;
    let done = false;
    const finish = (error: string | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ stdout: tooLong ? "" : stdout, stderr, error });
    };
    const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"] });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      finish(`it did not finish within ${timeoutMs} ms (password_command_timeout)`);
    }, timeoutMs);
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (s: string) => {
      if (stdout.length + s.length > MAX_STDOUT) {
        tooLong = true;
        child.kill("SIGKILL");
        finish(`it printed more than ${MAX_STDOUT} bytes`);
        return;
      }
      stdout += s;
    });
    child.stderr.on("data", (s: string) => {
      if (stderr.length < MAX_STDERR) stderr += s.slice(0, MAX_STDERR - stderr.length);
    });
    child.on("error", (err: NodeJS.ErrnoException) => {
      finish(`it could not be started (${err.code ?? err.message})`);
    });
    child.on("close", (code, signal) => {
      if (code === 0) finish(null);
      else finish(signal ? `it was killed by ${signal}` : `it exited with code ${code}`);
    });
  });
}

/** The last non-empty line of `text`, at most 200 characters, each secret replaced by ****. */
function mask(text: string, secrets: string[]): string {
  let out = text;
  for (const s of secrets) if (s.length >= 4) out = out.split(s).join("****");
  const lines = out.split(/\r?\n/).filter((l) => l.trim() !== "");
  const last = (lines.pop() ?? "").trim();
  return last.length > 200 ? `${last.slice(0, 197)}...` : last;
}
