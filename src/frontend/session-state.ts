// Detects session state a transaction-pooled server would carry from one client to the next
// (DESIGN.md section 4): a byte prefilter on the hot path, the real Postgres parser behind it.

import { mayCarrySessionState } from "../sql/prefilter.js";
import { NO_EFFECTS, type SessionEffects, sessionEffects } from "../sql/session-effects.js";

export {
  type DiscardTarget,
  NO_EFFECTS,
  PinReason,
  type SessionEffect,
  type SessionEffects,
  TRACKED_PARAMETERS,
} from "../sql/session-effects.js";

/** What a stored statement does when executed: null when nothing (the common case). */
export type StateChange = SessionEffects | null;

/**
 * What the SQL text in b[start, end) does to session state, in statement order. Most statements
 * are decided by the prefilter, and get the shared empty NO_EFFECTS without any allocation.
 */
export function detectSessionState(b: Buffer, start: number, end: number): SessionEffects {
  if (!mayCarrySessionState(b, start, end)) return NO_EFFECTS;
  return sessionEffects(b.toString("utf8", start, end));
}
