// Builders for the messages pgsidecar originates, and prebuilt constants for the fixed ones.
//
// Toward the upstream the proxy is a client, and pg-protocol (node-postgres' own serializer)
// builds what a client sends: Query, Parse, Close, Sync, Flush, Terminate, SSLRequest, the
// password and SASL messages. Two stay hand-written: StartupMessage, because pg-protocol's
// startup() always appends client_encoding=UTF8 (which would override a client_encoding we pass
// on), and CancelRequest, because its cancel() takes the secret as one Int32 while we send back
// whatever key the server gave (protocol 3.2 keys are up to 256 bytes).
//
// Toward its clients the proxy is a server, and pg-protocol only parses server messages: so
// ErrorResponse, NoticeResponse, ReadyForQuery, ParameterStatus, BackendKeyData, the
// Authentication requests, CommandComplete and the other server messages below are built here.
import { serialize } from "pg-protocol";
import { AuthCode, BackendCode, StartupCode } from "./codes.js";
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
export const syncMessage = serialize.sync();
export const flushMessage = serialize.flush();
export const terminateMessage = serialize.end();
/** An empty Query: the cheapest round trip, answered by EmptyQueryResponse + ReadyForQuery. */
export const emptyQuery = serialize.query("");
export const sslRequestNo = Buffer.from("N");
export const sslRequestYes = Buffer.from("S");
export const sslRequestPacket = serialize.requestSsl();

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
  return serialize.query(sql);
}

/**
 * Parse (F): statement name, query text and parameter type OIDs (signed or unsigned: the same
 * four bytes). pg-protocol warns on stderr about a name over 63 characters, which Postgres would
 * truncate.
 */
export function parse(name: string, sql: string, paramTypes: ArrayLike<number>): Buffer {
  return serialize.parse({ name, text: sql, types: Array.from(paramTypes) });
}

/** Close (F) of a prepared statement ('S') or portal ('P'). */
export function close(kind: "S" | "P", name: string): Buffer {
  return serialize.close({ type: kind, name });
}

export function passwordMessage(password: string): Buffer {
  return serialize.password(password);
}

/** SASLInitialResponse (F): the mechanism, then the Int32-prefixed client-first-message. */
export function saslInitialResponse(mechanism: string, data: string): Buffer {
  return serialize.sendSASLInitialResponseMessage(mechanism, data);
}

/** SASLResponse (F): the client-final-message. */
export function saslResponse(data: string): Buffer {
  return serialize.sendSCRAMClientFinalMessage(data);
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
