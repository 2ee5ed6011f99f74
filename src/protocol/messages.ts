// Builders for the messages pgsidecar originates, and prebuilt constants for the fixed ones.

import { AuthCode, BackendCode, FrontendCode, StartupCode } from "./codes.js";
import { BufferWriter } from "./writer.js";

function fixed(code: number, body: number[] = []): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b[0] = code;
  b.writeInt32BE(4 + body.length, 1);
  for (let i = 0; i < body.length; i++) b[5 + i] = body[i];
  return b;
}

export const readyForQueryIdle = fixed(BackendCode.ReadyForQuery, [0x49]);
export const readyForQueryInTx = fixed(BackendCode.ReadyForQuery, [0x54]);
export const readyForQueryFailed = fixed(BackendCode.ReadyForQuery, [0x45]);
export const parseComplete = fixed(BackendCode.ParseComplete);
export const bindComplete = fixed(BackendCode.BindComplete);
export const closeComplete = fixed(BackendCode.CloseComplete);
export const noData = fixed(BackendCode.NoData);
export const emptyQueryResponse = fixed(BackendCode.EmptyQueryResponse);
export const authenticationOk = fixed(BackendCode.Authentication, [0, 0, 0, AuthCode.Ok]);
export const authenticationCleartext = fixed(BackendCode.Authentication, [
  0,
  0,
  0,
  AuthCode.CleartextPassword,
]);
export const syncMessage = fixed(FrontendCode.Sync);
export const flushMessage = fixed(FrontendCode.Flush);
export const terminateMessage = fixed(FrontendCode.Terminate);
/** An empty Query: the cheapest round trip, answered by EmptyQueryResponse + ReadyForQuery. */
export const emptyQuery = (() => {
  const b = Buffer.alloc(6);
  b[0] = FrontendCode.Query;
  b.writeInt32BE(5, 1);
  return b;
})();
export const sslRequestNo = Buffer.from("N");
export const sslRequestYes = Buffer.from("S");
export const sslRequestPacket = (() => {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8, 0);
  b.writeInt32BE(StartupCode.SSLRequest, 4);
  return b;
})();

export function readyForQuery(status: number): Buffer {
  if (status === 0x49) return readyForQueryIdle;
  if (status === 0x54) return readyForQueryInTx;
  return readyForQueryFailed;
}

export interface ErrorFields {
  severity: "ERROR" | "FATAL" | "WARNING" | "NOTICE" | "LOG" | "INFO" | "DEBUG" | "PANIC";
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

function fieldsMessage(code: number, f: ErrorFields): Buffer {
  const w = new BufferWriter(64 + f.message.length);
  w.int8(0x53).cstring(f.severity); // S: localized severity
  w.int8(0x56).cstring(f.severity); // V: non-localized severity (9.6+)
  w.int8(0x43).cstring(f.code); // C: SQLSTATE
  w.int8(0x4d).cstring(f.message); // M
  if (f.detail) w.int8(0x44).cstring(f.detail); // D
  if (f.hint) w.int8(0x48).cstring(f.hint); // H
  w.int8(0);
  return w.flush(code);
}

export function errorResponse(f: ErrorFields): Buffer {
  return fieldsMessage(BackendCode.ErrorResponse, f);
}

export function noticeResponse(f: ErrorFields): Buffer {
  return fieldsMessage(BackendCode.NoticeResponse, f);
}

export function commandComplete(tag: string): Buffer {
  return new BufferWriter(tag.length + 8).cstring(tag).flush(BackendCode.CommandComplete);
}

export function parameterStatus(name: string, value: string): Buffer {
  return new BufferWriter(name.length + value.length + 8)
    .cstring(name)
    .cstring(value)
    .flush(BackendCode.ParameterStatus);
}

export function backendKeyData(pid: number, secret: Buffer): Buffer {
  return new BufferWriter(9 + secret.length)
    .int32(pid)
    .bytes(secret)
    .flush(BackendCode.BackendKeyData);
}

export function negotiateProtocolVersion(newestMinor: number, unsupported: string[]): Buffer {
  const w = new BufferWriter().int32(newestMinor).int32(unsupported.length);
  for (const name of unsupported) w.cstring(name);
  return w.flush(BackendCode.NegotiateProtocolVersion);
}

export function authenticationMD5(salt: Buffer): Buffer {
  return new BufferWriter(16)
    .int32(AuthCode.MD5Password)
    .bytes(salt)
    .flush(BackendCode.Authentication);
}

export function authenticationSASL(mechanisms: string[]): Buffer {
  const w = new BufferWriter().int32(AuthCode.SASL);
  for (const m of mechanisms) w.cstring(m);
  return w.int8(0).flush(BackendCode.Authentication);
}

export function authenticationSASLContinue(data: string): Buffer {
  return new BufferWriter(data.length + 16)
    .int32(AuthCode.SASLContinue)
    .bytes(Buffer.from(data))
    .flush(BackendCode.Authentication);
}

export function authenticationSASLFinal(data: string): Buffer {
  return new BufferWriter(data.length + 16)
    .int32(AuthCode.SASLFinal)
    .bytes(Buffer.from(data))
    .flush(BackendCode.Authentication);
}

export function query(sql: string): Buffer {
  return new BufferWriter(sql.length + 8).cstring(sql).flush(FrontendCode.Query);
}

/** Parse (F): statement name, query text and parameter type OIDs. */
export function parse(name: string, sql: string, paramTypes: ArrayLike<number>): Buffer {
  const w = new BufferWriter(sql.length + name.length + 16).cstring(name).cstring(sql);
  w.int16(paramTypes.length);
  for (let i = 0; i < paramTypes.length; i++) w.int32(paramTypes[i]);
  return w.flush(FrontendCode.Parse);
}

/** Close (F) of a prepared statement ('S') or portal ('P'). */
export function close(kind: "S" | "P", name: string): Buffer {
  return new BufferWriter(name.length + 8)
    .int8(kind.charCodeAt(0))
    .cstring(name)
    .flush(FrontendCode.Close);
}

export function passwordMessage(password: string): Buffer {
  return new BufferWriter(password.length + 8)
    .cstring(password)
    .flush(FrontendCode.PasswordMessage);
}

export function saslInitialResponse(mechanism: string, data: string): Buffer {
  const bytes = Buffer.from(data);
  return new BufferWriter(bytes.length + 32)
    .cstring(mechanism)
    .int32(bytes.length)
    .bytes(bytes)
    .flush(FrontendCode.PasswordMessage);
}

export function saslResponse(data: string): Buffer {
  return new BufferWriter(data.length + 8)
    .bytes(Buffer.from(data))
    .flush(FrontendCode.PasswordMessage);
}

export function startupMessage(params: Record<string, string>): Buffer {
  const w = new BufferWriter(256).int32(StartupCode.Protocol30);
  for (const [k, v] of Object.entries(params)) w.cstring(k).cstring(v);
  return w.int8(0).flushUntyped();
}

export function cancelRequest(pid: number, secret: Buffer): Buffer {
  return new BufferWriter(16 + secret.length)
    .int32(StartupCode.CancelRequest)
    .int32(pid)
    .bytes(secret)
    .flushUntyped();
}
