// upstream_auth: aws-rds-iam. The upstream password is an RDS IAM authentication token: a SigV4
// presigned URL (`host:port/?Action=connect&DBUser=...&X-Amz-Signature=...`) valid 15 minutes,
// signed locally by AWS's own signer (@aws-sdk/rds-signer) with the default AWS credential chain
// (environment, shared files, web identity / IRSA, ECS, EC2 instance metadata). RDS checks it
// during a cleartext password exchange, which is why the upstream connection must use TLS (the
// config loader refuses an sslmode below require).

import type { Logger } from "../log.js";
import {
  type CredentialEvents,
  CredentialSource,
  CredentialUnavailable,
  UpstreamPassword,
} from "./upstream-password.js";

/** How long RDS accepts a token (X-Amz-Expires=900). */
export const TOKEN_LIFETIME_MS = 15 * 60_000;
/** A token is replaced at the first login this long after it was minted, well before it expires. */
export const TOKEN_REFRESH_MS = 10 * 60_000;
/** A token this close to its expiry is not used: the login itself takes time, clocks drift. */
const EXPIRY_MARGIN_MS = 60_000;
/** After a failed mint with a usable token in hand, no new mint before this. */
const FAILURE_BACKOFF_MS = 5000;

export interface RdsIamSettings {
  /** The endpoint the token is signed for (the URL's first host) and its port. */
  readonly hostname: string;
  readonly port: number;
  /** The database user (DBUser). */
  readonly username: string;
  readonly region: string;
}

/** Static keys (tests); without them the default AWS credential chain is used. */
export interface AwsKeys {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

/** Mints one token. */
export type TokenMinter = () => Promise<string>;

/**
 * A minter backed by `@aws-sdk/rds-signer`. The SDK is loaded at the first mint, so that a
 * sidecar without IAM auth does not pay for loading it; the Signer (and the credential chain it
 * caches) is made once.
 */
export function rdsSigner(settings: RdsIamSettings, credentials?: AwsKeys): TokenMinter {
  let signer: Promise<{ getAuthToken(): Promise<string> }> | null = null;
  return async () => {
    signer ??= import("@aws-sdk/rds-signer").then(
      ({ Signer }) =>
        new Signer({
          hostname: settings.hostname,
          port: settings.port,
          username: settings.username,
          region: settings.region,
          ...(credentials === undefined ? {} : { credentials }),
        }),
    );
    return (await signer).getAuthToken();
  };
}

/**
 * The token for new server logins: minted at the first login, and again at the first login
 * TOKEN_REFRESH_MS (10 minutes) after, or right away after a 28P01. A failed mint keeps the token
 * in hand while it is still good (another mint is tried after a few seconds); without one, the
 * login fails with CredentialUnavailable. The token is never logged: log lines name the endpoint,
 * the user and the region.
 */
export class RdsIamPassword extends UpstreamPassword {
  readonly source = CredentialSource.AwsRdsIam;
  /** When the token in hand was minted (epoch ms); 0 before the first. */
  private mintedAt = 0;
  /** No new mint after a failure before this (epoch ms), while the token in hand is good. */
  private retryAt = 0;
  private lastError = "";
  private failing = false;

  constructor(
    private readonly settings: RdsIamSettings,
    protected readonly events: CredentialEvents,
    private readonly log: Logger,
    private readonly mint: TokenMinter = rdsSigner(settings),
    private readonly now: () => number = Date.now,
  ) {
    super(null);
  }

  protected async check(): Promise<void> {
    const now = this.now();
    const fresh = now - this.mintedAt < TOKEN_REFRESH_MS;
    if (this.usable(now) && (fresh || now < this.retryAt)) return;
    await this.renew();
    if (!this.usable(this.now())) {
      this.current = null;
      throw new CredentialUnavailable(`no RDS IAM token could be minted: ${this.lastError}`);
    }
  }

  protected refresh(): Promise<void> {
    return this.renew();
  }

  private usable(now: number): boolean {
    return this.current !== null && now < this.mintedAt + TOKEN_LIFETIME_MS - EXPIRY_MARGIN_MS;
  }

  private async renew(): Promise<void> {
    const startedAt = this.now();
    let token: string;
    try {
      token = await this.mint();
    } catch (err) {
      // The SDK's errors name the provider that failed, not a key; cut to one short line anyway.
      const e = err as Error;
      this.lastError = `${e.name}: ${String(e.message).split("\n")[0].slice(0, 200)}`;
      this.retryAt = this.now() + FAILURE_BACKOFF_MS;
      this.events.refreshed("aws-rds-iam", "failed");
      if (!this.failing) {
        this.failing = true;
        this.log.warn(
          { ...this.where(), err: this.lastError },
          this.usable(this.now())
            ? "RDS IAM token could not be minted; keeping the current one while it is valid"
            : "RDS IAM token could not be minted; server logins fail until one is",
        );
      }
      return;
    }
    if (this.failing) {
      this.failing = false;
      this.log.info(this.where(), "RDS IAM token minted again");
    }
    // Counted from before the mint: the signer dated the token then, or later.
    this.mintedAt = startedAt;
    this.retryAt = 0;
    this.current = token;
    this.events.refreshed("aws-rds-iam", "changed");
    this.log.debug(this.where(), "RDS IAM token minted; used for new server logins");
  }

  private where(): Record<string, string | number> {
    const s = this.settings;
    return { endpoint: `${s.hostname}:${s.port}`, user: s.username, region: s.region };
  }
}
