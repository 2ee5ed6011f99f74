// ServerOpener: opens the servers of one pool: the password from its source, a host that answers
// (server-factory.ts), relogins after a rotating password was refused (28P01), and what a failed
// attempt means (retried after backoff, or reported to the waiters at once).

import type { UpstreamPassword } from "../auth/upstream-password.js";
import * as clock from "../clock.js";
import { ProxyError, ProxyErrorReason, proxyError, ServerError } from "../errors.js";
import type { Logger } from "../log.js";
import type { ConnectFailureReason } from "../reasons.js";
import type { BackendConnection, BackendOptions } from "./backend-connection.js";
import type { KnownStatements } from "./prepared-statements.js";
import {
  connectFailureReason,
  type DialHooks,
  openOnSomeHost,
  type ServerFactory,
} from "./server-factory.js";
import { Slot } from "./server-lists.js";
import type { Upstream } from "./upstream.js";

/**
 * One server being opened: while it has no BackendConnection (the password, DNS, between hosts)
 * it holds its place in pool_size. Also what its login used, for relogins.
 */
export class Opening extends Slot {
  /** The password the last try used. */
  password: string | null = null;
  /** The password to try next (null: ask the source). */
  next: string | null = null;
  /** Relogins so far after a 28P01 (0: the first try). */
  relogins = 0;
}

/** What the opener reads from its pool, at each attempt (a reload replaces them). */
export interface OpenerPool {
  readonly key: string;
  readonly user: string;
  readonly credential: UpstreamPassword;
  readonly upstream: Upstream;
  readonly knownStatements: KnownStatements;
  readonly settings: {
    connectTimeoutMs: number;
    keepalive: BackendOptions["keepalive"];
    maxPreparedStatements: number;
    passwordWithoutTls?: BackendOptions["passwordWithoutTls"];
    maxScramIterations?: number;
  };
}

/** What the opener tells its pool. Membership stays the pool's: it moves the slot and the server. */
export interface OpenerHooks {
  /** `slot` holds a place in pool_size (`held`), or gives it up. */
  hold(slot: Opening, held: boolean): void;
  /** `conn` is dialled for `slot` (it takes the slot's place), or was dropped (the slot takes it back). */
  dial(slot: Opening, conn: BackendConnection, dialling: boolean): void;
  opened(conn: BackendConnection): void;
  /** Every failed attempt, relogins included (the metric). */
  counted(err: Error, reason: ConnectFailureReason): void;
  /** The attempt failed for good; `permanent`: the next one would fail the same way. */
  failed(err: Error, permanent: boolean): void;
  /** The pool was closed: nothing more is opened. */
  closed(): boolean;
}

/**
 * A login refused with a rotating password (28P01) is tried again at most this many times: once
 * with the other value (the source's new one, or the last accepted), and once more if an
 * ALTER ROLE landed between the two and refused that one as well.
 */
const MAX_RELOGINS = 2;
/** Before a relogin with no other value in hand: the source may follow the ALTER ROLE shortly. */
const RELOGIN_PAUSE_MS = 500;

const SQLSTATE_PERMANENT = new Set(["28P01", "28000", "3D000", "42501", "3F000"]);
/** Our own login refusals that the next attempt would repeat: reported at once, not retried. */
const PROXY_PERMANENT = new Set(["tls_verify", "password_without_tls", "scram_iterations"]);

export class ServerOpener {
  constructor(
    private readonly pool: OpenerPool,
    private readonly create: ServerFactory,
    private readonly hooks: OpenerHooks,
    private readonly log: Logger,
  ) {}

  /** How every server of this pool is opened (its address is resolved for each). */
  options(): Omit<BackendOptions, "address"> {
    const { upstream, settings } = this.pool;
    return {
      target: upstream.target,
      user: this.pool.user,
      password: this.pool.credential.latest,
      database: upstream.target.database,
      connectTimeoutMs: settings.connectTimeoutMs,
      keepalive: settings.keepalive,
      maxPreparedStatements: settings.maxPreparedStatements,
      knownStatements: this.pool.knownStatements,
      passwordWithoutTls: settings.passwordWithoutTls,
      maxScramIterations: settings.maxScramIterations,
    };
  }

  /**
   * Opens a server outside the pool (the LISTEN hub's): the same target, credentials and
   * options, not counted in pool_size and never handed to a client.
   */
  async openDedicated(): Promise<BackendConnection> {
    // The password as a pool login gets it: a rotated password_file or command is followed.
    const { upstream, credential } = this.pool;
    const [address, password] = await Promise.all([upstream.resolve(), credential.get()]);
    const conn = this.create({ ...this.options(), password, address });
    await conn.connect();
    credential.accepted(password, false);
    return conn;
  }

  /**
   * Opens one server for `slot`, which holds its place in pool_size (taken synchronously, so
   * the pool does not open too many) until a connection is dialled, and again between hosts.
   */
  open(slot = new Opening()): void {
    const options = this.options();
    const credential = this.pool.credential;
    this.hooks.hold(slot, true);
    const hooks: DialHooks = {
      dialling: (conn) => this.hooks.dial(slot, conn, true),
      dropped: (conn) => this.hooks.dial(slot, conn, false),
      skipped: (conn, attrs) =>
        this.log.info(
          { pool: this.pool.key, address: conn.address, target_session_attrs: attrs },
          "server skipped: its role does not fit target_session_attrs",
        ),
    };
    Promise.resolve(
      slot.next ??
        credential.get().catch((err: Error) => {
          throw proxyError(ProxyErrorReason.CredentialUnavailable, err.message);
        }),
    )
      .then((password) => {
        slot.password = password;
        return openOnSomeHost(this.pool.upstream, { ...options, password }, this.create, hooks);
      })
      .then(
        (conn) => {
          credential.accepted(slot.password, slot.relogins > 0);
          this.pool.upstream.succeeded();
          this.hooks.opened(conn);
        },
        (err: Error) => {
          this.hooks.hold(slot, false);
          this.onFailed(err, credential, slot);
        },
      );
  }

  /**
   * The upstream refused a rotating password (28P01): it may have been rotated a moment ago.
   * The source is read again and the login tried again, at once with a value not refused yet,
   * else after a short pause (the file or the command may follow the ALTER ROLE a little later).
   * Waiters keep waiting meanwhile, and the slot stays taken.
   */
  private relogin(credential: UpstreamPassword, slot: Opening, err: Error): void {
    this.hooks.hold(slot, true);
    credential
      .refused(slot.password)
      .catch(() => null)
      .then((next) => {
        this.log.warn(
          {
            pool: this.pool.key,
            err: err.message,
            relogin: slot.relogins + 1,
            pause: next === null,
          },
          "server login refused (28P01); password source read again, logging in again",
        );
        const go = () => {
          if (this.hooks.closed()) return this.hooks.hold(slot, false);
          slot.next = next;
          slot.relogins++;
          this.open(slot);
        };
        if (next !== null) go();
        else clock.after(RELOGIN_PAUSE_MS, go);
      });
  }

  private onFailed(err: Error, credential: UpstreamPassword, slot: Opening): void {
    const reason = connectFailureReason(err);
    this.hooks.counted(err, reason);
    if (this.hooks.closed()) return;
    if (err instanceof ServerError && err.sqlstate === "28P01" && credential.rotates) {
      if (slot.relogins < MAX_RELOGINS) return this.relogin(credential, slot, err);
      credential.retryRefused();
    }
    const permanent =
      (err instanceof ServerError && SQLSTATE_PERMANENT.has(err.sqlstate)) ||
      (err instanceof ProxyError && PROXY_PERMANENT.has(err.code));
    this.log.warn(
      { pool: this.pool.key, err: err.message, sqlstate: (err as ServerError).sqlstate, reason },
      "server connection failed",
    );
    this.pool.upstream.failed(err, clock.now());
    this.hooks.failed(err, permanent);
  }
}
