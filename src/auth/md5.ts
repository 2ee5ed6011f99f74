// MD5 password authentication: what a client answers to AuthenticationMD5Password (B), and its check.
//
// PostgreSQL's scheme (https://www.postgresql.org/docs/current/auth-password.html):
//   "md5" + md5hex(md5hex(password + user) + salt)
// where md5hex(password + user) is also what pg_authid stores for an md5 role, and salt is the
// 4 random bytes of AuthenticationMD5Password. Strings go in as UTF-8.
import { createHash, timingSafeEqual } from "node:crypto";

/** The PasswordMessage (F) payload answering AuthenticationMD5Password (B) with this salt. */
export function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = md5Hex(Buffer.from(password + user, "utf8"));
  return `md5${md5Hex(Buffer.concat([Buffer.from(inner, "latin1"), salt]))}`;
}

/**
 * Checks a client's PasswordMessage payload against the password we know for `user`. Exact match,
 * as PostgreSQL's strcmp: "MD5..." or uppercase hex is wrong. Constant time over the 35 bytes.
 */
export function verifyMd5Password(
  user: string,
  password: string,
  salt: Buffer,
  response: string,
): boolean {
  const expected = Buffer.from(md5Password(user, password, salt), "latin1");
  const actual = Buffer.from(response, "utf8");
  // The length is no secret (always 35), so a mismatch may return early.
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

function md5Hex(data: Buffer): string {
  return createHash("md5").update(data).digest("hex");
}
