// The users clients log in as, from `users` and `admin_users`, with the SCRAM secret each needs.

import { scramSecretFromPassword } from "../auth/scram-sha-256.js";
import type { Config } from "../config/schema.js";
import type { KnownUser } from "../frontend/client-auth.js";

/**
 * `c`'s users by name. A user whose password did not change keeps its SCRAM secret from
 * `previous`: deriving one is a PBKDF2 run a reload need not pay again.
 */
export function knownUsers(
  c: Config,
  previous: ReadonlyMap<string, KnownUser>,
): Map<string, KnownUser> {
  const users = new Map<string, KnownUser>();
  for (const u of c.users) {
    const old = previous.get(u.name);
    const scramSecret =
      old && old.password === u.password ? old.scramSecret : scramSecretFromPassword(u.password);
    users.set(u.name, { ...u, admin: u.admin || c.admin_users.includes(u.name), scramSecret });
  }
  return users;
}
