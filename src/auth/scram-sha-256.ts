// SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: both ends of the exchange, no sockets.
//
// ScramServerExchange authenticates our clients against a stored secret, with the checks of
// PostgreSQL's src/backend/libpq/auth-scram.c. ScramClientExchange logs the proxy in to the
// upstream, as libpq's fe-auth-scram.c does. Channel binding is not offered (we advertise only
// "SCRAM-SHA-256", never "-PLUS"). Message flow: https://www.postgresql.org/docs/current/sasl-authentication.html
//
//   C: client-first-message   n,,n=<ignored>,r=<client nonce>
//   S: server-first-message   r=<client nonce><server nonce>,s=<salt b64>,i=<iterations>
//   C: client-final-message   c=biws,r=<both nonces>,p=<ClientProof b64>
//   S: server-final-message   v=<ServerSignature b64>
//
//   SaltedPassword  = Hi(SASLprep(password), salt, i)          Hi = PBKDF2-HMAC-SHA-256, 32 bytes
//   ClientKey       = HMAC(SaltedPassword, "Client Key")        StoredKey = SHA-256(ClientKey)
//   ServerKey       = HMAC(SaltedPassword, "Server Key")
//   AuthMessage     = client-first-bare "," server-first "," client-final-without-proof
//   ClientProof     = ClientKey XOR HMAC(StoredKey, AuthMessage)
//
// The exchange is split by side: scram-server.ts (stored secrets, ScramServerExchange),
// scram-client.ts (ScramClientExchange), scram-common.ts (errors, message reader, crypto) and
// saslprep.ts. This module is the one callers import.
export {
  DEFAULT_MAX_SERVER_ITERATIONS,
  ScramClientExchange,
  type ScramClientOptions,
} from "./scram-client.js";
export { SCRAM_SHA_256, ScramError, type ScramErrorCode } from "./scram-common.js";
export {
  formatScramSecret,
  mockScramSecret,
  parseScramSecret,
  type ScramSecret,
  ScramServerExchange,
  scramSecretFromPassword,
} from "./scram-server.js";
