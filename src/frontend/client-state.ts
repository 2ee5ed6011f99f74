// A client's state, startup to closed: what ClientSession.enter() moves between and what its
// dispatch decides by. (Not session-state.ts, which is the SQL session state a server carries.)

export const SessionState = {
  Startup: "startup",
  Authenticating: "authenticating",
  /** Authenticated; waiting for the pool to learn the server's parameters. */
  LoggingIn: "logging_in",
  /** Logged in; no server, nothing in flight (or only what we answer ourselves). */
  Idle: "idle",
  /** Waiting for a server from the pool. */
  Waiting: "waiting",
  /** Holding a server (a lease). */
  Active: "active",
  Closed: "closed",
} as const;
export type SessionState = (typeof SessionState)[keyof typeof SessionState];
