// Drain: closing each client at its next transaction boundary, so that no transaction is cut
// while time remains (SIGTERM, POST /quitquitquit, the API's stop()).

import { type ClientSession, SessionState } from "../frontend/client-session.js";
import { ClientCloseReason } from "../reasons.js";

/**
 * Nothing in flight and ReadyForQuery 'I' (0x49) last sent; released (Idle) or holding a
 * session/pinned server that owes no reply.
 */
function atTransactionBoundary(s: ClientSession): boolean {
  return (
    s.txStatus === 0x49 &&
    (s.state === SessionState.Idle ||
      (s.state === SessionState.Active && s.lease !== null && s.lease.expected.empty))
  );
}

/**
 * Closes each session as it reaches a boundary, looking every 50 ms, until none is left or
 * `deadline` (epoch ms) passes. Sessions that closed themselves leave `sessions` meanwhile.
 */
export async function closeAtBoundaries(
  sessions: ReadonlySet<ClientSession>,
  deadline: number,
): Promise<void> {
  for (;;) {
    for (const s of [...sessions]) {
      if (atTransactionBoundary(s)) s.close(ClientCloseReason.Shutdown);
    }
    const left = deadline - Date.now();
    if (sessions.size === 0 || left <= 0) return;
    await sleep(Math.min(50, left));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
