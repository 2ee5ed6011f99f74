// MD5 password authentication: PasswordMessage payload and its constant-time check.
import { describe, expect, it } from "vitest";
import { md5Password, verifyMd5Password } from "../../src/auth/md5.js";

// Expected values computed with python3 hashlib, independently of this code:
//   inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
//   "md5" + hashlib.md5(inner.encode() + salt).hexdigest()
const SALT = Buffer.from([1, 2, 3, 4]);
const POSTGRES = "md568be9ed08db75f318087ab337aaea044";
const UNICODE_SALT = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
const UNICODE = "md5aae7104c69c2981684fe7d3a7c824ea0";

describe("md5Password", () => {
  it("matches python3 hashlib for postgres/postgres and salt 01020304", () => {
    expect(md5Password("postgres", "postgres", SALT)).toBe(POSTGRES);
  });

  it("hashes user and password as UTF-8", () => {
    expect(md5Password("jürgen", "pässwörd", UNICODE_SALT)).toBe(UNICODE);
  });

  it("depends on the salt, the user and the password", () => {
    expect(md5Password("postgres", "postgres", Buffer.from([1, 2, 3, 5]))).not.toBe(POSTGRES);
    expect(md5Password("postgre", "postgres", SALT)).not.toBe(POSTGRES);
    expect(md5Password("postgres", "postgre", SALT)).not.toBe(POSTGRES);
  });

  it("reads only the salt's own bytes when it is a view into a larger buffer", () => {
    const frame = Buffer.from([0x52, 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4, 0xff]);
    expect(md5Password("postgres", "postgres", frame.subarray(9, 13))).toBe(POSTGRES);
  });
});

describe("verifyMd5Password", () => {
  it("accepts the right response", () => {
    expect(verifyMd5Password("postgres", "postgres", SALT, POSTGRES)).toBe(true);
    expect(verifyMd5Password("jürgen", "pässwörd", UNICODE_SALT, UNICODE)).toBe(true);
  });

  it("rejects a wrong password, user or salt", () => {
    expect(verifyMd5Password("postgres", "wrong", SALT, POSTGRES)).toBe(false);
    expect(verifyMd5Password("other", "postgres", SALT, POSTGRES)).toBe(false);
    expect(verifyMd5Password("postgres", "postgres", UNICODE_SALT, POSTGRES)).toBe(false);
  });

  it("rejects what PostgreSQL's exact comparison rejects", () => {
    expect(verifyMd5Password("postgres", "postgres", SALT, POSTGRES.toUpperCase())).toBe(false);
    expect(verifyMd5Password("postgres", "postgres", SALT, `${POSTGRES} `)).toBe(false);
    expect(verifyMd5Password("postgres", "postgres", SALT, POSTGRES.slice(0, -1))).toBe(false);
    expect(verifyMd5Password("postgres", "postgres", SALT, "")).toBe(false);
    expect(verifyMd5Password("postgres", "postgres", SALT, "postgres")).toBe(false);
  });

  it("does not throw on a response with multi-byte characters", () => {
    const sameLengthInUtf16 = `${POSTGRES.slice(0, -1)}é`;
    expect(verifyMd5Password("postgres", "postgres", SALT, sameLengthInUtf16)).toBe(false);
  });
});
