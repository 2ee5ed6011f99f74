// Short strings every client of a pool repeats (user, database, application_name): one copy each,
// not one per client.

/**
 * Bounded (it is filled from StartupMessages, before authentication): names up to 63 characters,
 * and when full it starts over.
 */
const interned = new Map<string, string>();

/** The one copy of `s` (itself when it is too long to share). */
export function intern(s: string): string {
  if (s.length > 63) return s;
  const known = interned.get(s);
  if (known !== undefined) return known;
  if (interned.size >= 1024) interned.clear();
  interned.set(s, s);
  return s;
}
