// Where a pool's server logins get their password. Rotating sources (RDS IAM tokens,
// password_command, password_file) are made once per source and shared by every pool that logs in
// with them, so one refresh serves them all.

import { RdsIamPassword } from "../auth/rds-iam.js";
import {
  CommandPassword,
  type CredentialEvents,
  FilePassword,
  StaticPassword,
  type UpstreamPassword,
} from "../auth/upstream-password.js";
import type { Config, DatabaseConfig } from "../config/schema.js";
import type { Logger } from "../log.js";

export class UpstreamCredentials {
  /** Rotating upstream passwords by source. */
  private readonly shared = new Map<string, UpstreamPassword>();

  constructor(
    private readonly events: CredentialEvents,
    private readonly log: Logger,
  ) {}

  /**
   * The URL's password, for its user; else, for the URL's user, an RDS IAM token (upstream_auth:
   * aws-rds-iam) or password_command; else the user's own from users, followed when it is a
   * password_file.
   */
  passwordFor(db: DatabaseConfig, user: string, c: Config): UpstreamPassword {
    if (user === db.target.user && db.target.password !== null)
      return new StaticPassword(db.target.password);
    if (user === db.target.user && c.upstream_auth === "aws-rds-iam") {
      const { host, port } = db.target.hosts[0];
      const iam = { hostname: host, port, username: user, region: c.aws_region ?? "" };
      return this.sharedBy(
        `aws-rds-iam:${JSON.stringify(iam)}`,
        () => new RdsIamPassword(iam, this.events, this.log),
      );
    }
    if (user === db.target.user && c.password_command !== null) {
      const settings = {
        command: c.password_command,
        ttlMs: c.password_command_ttl,
        timeoutMs: c.password_command_timeout,
      };
      return this.sharedBy(
        `command:${JSON.stringify(settings)}`,
        () => new CommandPassword(settings, this.events, this.log),
      );
    }
    const u = c.users.find((x) => x.name === user);
    const file = u?.password_file;
    if (u !== undefined && file !== undefined) {
      return this.sharedBy(
        `file:${file}`,
        () => new FilePassword(file, u.password, this.events, this.log),
      );
    }
    return new StaticPassword(u?.password ?? null);
  }

  private sharedBy(key: string, create: () => UpstreamPassword): UpstreamPassword {
    let credential = this.shared.get(key);
    if (credential === undefined) {
      credential = create();
      this.shared.set(key, credential);
    }
    return credential;
  }
}
