// What a client session is given by the proxy: its route to a pool, the live settings it reads,
// and the events it reports. `S` is the session type (ClientSession), kept generic so that this
// file needs nothing from the session's own module.

import type tls from "node:tls";
import type { Pool } from "../backend/pool.js";
import type { Logger } from "../log.js";
import type { ClientCloseReason, PinReason, ReplayOutcome } from "../reasons.js";
import type { CancelRegistry } from "./cancel.js";
import type { AuthType, KnownUser } from "./client-auth.js";
import type { NotificationHub } from "./notification-hub.js";
import type { RetryPolicy } from "./retry-policy.js";

/** Where an authenticated client's work goes. */
export interface Route {
  pool: Pool;
  mode: "session" | "transaction";
  retry: RetryPolicy;
  /** LISTEN/NOTIFY without pins (transaction mode); null in session mode. */
  notifications: NotificationHub | null;
}

/** What a session needs from the proxy; read live, so a reload applies to running sessions. */
export interface SessionContextOf<S> {
  readonly log: Logger;
  readonly cancels: CancelRegistry;
  readonly authType: AuthType;
  readonly loginTimeoutMs: number;
  readonly maxMessageBytes: number;
  readonly maxPreparedStatements: number;
  readonly trackExtraParameters: ReadonlySet<string>;
  readonly tls: tls.SecureContext | null;
  /** client_tls: require. TCP clients that did not negotiate TLS are refused (28000). */
  readonly tlsRequired?: boolean;
  readonly draining: boolean;
  findUser(name: string): KnownUser | undefined;
  /** null: no such database (FATAL 3D000). */
  route(database: string, user: string): Route | null;
  /** Admin console sessions (database `pgsidecar`); null when the user may not use it. */
  openAdmin?(session: S): boolean;
  adminQuery?(session: S, sql: string): Buffer[];
  /** Called once per session, with the reason it closed (counted by reason). */
  sessionClosed(session: S, reason: ClientCloseReason): void;
  events: SessionEventsOf<S>;
}

export type StatementLookup = "hit" | "miss" | "reprepare";

export interface SessionEventsOf<S> {
  clientError(session: S, sqlstate: string): void;
  replay(session: S, outcome: ReplayOutcome): void;
  pinned(session: S, reason: PinReason): void;
  statement(session: S, kind: StatementLookup): void;
  unitDone(session: S, seconds: number, transactionEnded: boolean): void;
  bytes(direction: "in" | "out", n: number): void;
  /** Notifications dropped for a client that fell too far behind (LISTEN in transaction mode). */
  notificationsDropped?(n: number): void;
  /** A bug was caught in a socket handler of this session (pgsidecar_internal_errors_total). */
  internalError(session: S): void;
}
