// Structural checks of the frontend messages the relay reads or forwards, with the checks (and the
// words) of Postgres's own reader: postgres.c SocketBackend / PostgresMain and libpq/pqformat.c.
//
// Postgres reads a malformed message, answers it with an ERROR and goes on; pgsidecar must look
// into some of them (statement names, the SQL of a Query) and must never forward one that a
// backend would die of (a Sync longer than 10000 bytes ends the backend without a word). So a
// malformed message is a protocol violation of its sender: FATAL 08P01, that client only.

import { FrontendCode } from "./codes.js";

/**
 * Postgres's PQ_SMALL_MESSAGE_LIMIT: Close, Describe, Execute, Flush, Sync, Terminate, CopyDone and
 * CopyFail longer than this (length word included) make the backend drop the connection.
 */
export const SMALL_MESSAGE_LIMIT = 10000;
/** Postgres's PQ_LARGE_MESSAGE_LIMIT (MaxAllocSize - 1) for Bind, Parse, Query, FunctionCall, CopyData. */
export const LARGE_MESSAGE_LIMIT = 0x3fffffff - 1;

const HEADER = 5;
// pqformat.c's words for each way a message can fall short.
const NO_DATA = "no data left in message";
const INSUFFICIENT = "insufficient data left in message";
const BAD_STRING = "invalid string in message";
const BAD_FORMAT = "invalid message format";
const BAD_LENGTH = "invalid message length";

/**
 * Why the frontend message `code` at [start, end) of `buf` (type byte and length word included,
 * as FrameScanner delivers it) is malformed, or null when it is well formed. Only the layout is
 * checked: whether a statement exists or a parameter count fits is the server's to say.
 * Linear in the message, and allocates nothing for a well-formed one.
 */
export function frontendMessageError(
  code: number,
  buf: Buffer,
  start: number,
  end: number,
): string | null {
  const length = end - start - 1; // the length word's value
  const body = start + HEADER;
  switch (code) {
    case FrontendCode.Query: {
      if (length > LARGE_MESSAGE_LIMIT) return BAD_LENGTH;
      // One string, and nothing after it: a NUL inside the text is "invalid message format".
      const p = skipString(buf, body, end);
      if (p < 0) return BAD_STRING;
      return p === end ? null : BAD_FORMAT;
    }
    case FrontendCode.Parse: {
      if (length > LARGE_MESSAGE_LIMIT) return BAD_LENGTH;
      // Statement name, query, Int16 parameter type count (read unsigned), Int32 OIDs.
      let p = skipString(buf, body, end);
      if (p >= 0) p = skipString(buf, p, end);
      if (p < 0) return BAD_STRING;
      if (end - p < 2) return INSUFFICIENT;
      const types = uint16(buf, p);
      p += 2;
      if (end - p < 4 * types) return INSUFFICIENT;
      return p + 4 * types === end ? null : BAD_FORMAT;
    }
    case FrontendCode.Bind:
      if (length > LARGE_MESSAGE_LIMIT) return BAD_LENGTH;
      return bindError(buf, body, end);
    case FrontendCode.Describe:
    case FrontendCode.Close: {
      if (length > SMALL_MESSAGE_LIMIT) return BAD_LENGTH;
      // 'S' (statement) or 'P' (portal), then the name; Postgres checks the subtype last.
      if (body >= end) return NO_DATA;
      const p = skipString(buf, body + 1, end);
      if (p < 0) return BAD_STRING;
      if (p !== end) return BAD_FORMAT;
      const kind = buf[body];
      if (kind === 0x53 || kind === 0x50) return null;
      return `invalid ${code === FrontendCode.Close ? "CLOSE" : "DESCRIBE"} message subtype ${kind}`;
    }
    case FrontendCode.Execute: {
      if (length > SMALL_MESSAGE_LIMIT) return BAD_LENGTH;
      // Portal name, Int32 row limit.
      const p = skipString(buf, body, end);
      if (p < 0) return BAD_STRING;
      if (end - p < 4) return INSUFFICIENT;
      return p + 4 === end ? null : BAD_FORMAT;
    }
    case FrontendCode.Sync:
    case FrontendCode.Flush:
      if (length > SMALL_MESSAGE_LIMIT) return BAD_LENGTH;
      return body === end ? null : BAD_FORMAT;
    case FrontendCode.Terminate:
    case FrontendCode.CopyDone:
      // Postgres does not read their bodies (CopyDone outside COPY is ignored altogether).
      return length > SMALL_MESSAGE_LIMIT ? BAD_LENGTH : null;
    case FrontendCode.CopyFail:
      if (length > SMALL_MESSAGE_LIMIT) return BAD_LENGTH;
      // The error text is read as a string; what follows its NUL is not looked at.
      return skipString(buf, body, end) < 0 ? BAD_STRING : null;
    case FrontendCode.CopyData:
      return length > LARGE_MESSAGE_LIMIT ? BAD_LENGTH : null;
    case FrontendCode.FunctionCall:
      if (length > LARGE_MESSAGE_LIMIT) return BAD_LENGTH;
      return functionCallError(buf, body, end);
    default:
      return `invalid frontend message type ${code}`;
  }
}

/**
 * Bind (F): portal, statement, Int16 format count + Int16 each, Int16 parameter count, per
 * parameter Int32 length (-1 = NULL) + bytes, Int16 result format count + Int16 each.
 */
function bindError(buf: Buffer, body: number, end: number): string | null {
  let p = skipString(buf, body, end);
  if (p >= 0) p = skipString(buf, p, end);
  if (p < 0) return BAD_STRING;
  if (end - p < 2) return INSUFFICIENT;
  const formats = uint16(buf, p);
  p += 2;
  if (end - p < 2 * formats + 2) return INSUFFICIENT;
  p += 2 * formats;
  const params = uint16(buf, p);
  p += 2;
  if (formats > 1 && formats !== params) {
    return `bind message has ${formats} parameter formats but ${params} parameters`;
  }
  for (let i = 0; i < params; i++) {
    if (end - p < 4) return INSUFFICIENT;
    const len = int32(buf, p);
    p += 4;
    if (len === -1) continue;
    if (len < 0 || len > end - p) return INSUFFICIENT;
    p += len;
  }
  if (end - p < 2) return INSUFFICIENT;
  const results = uint16(buf, p);
  p += 2;
  if (end - p < 2 * results) return INSUFFICIENT;
  return p + 2 * results === end ? null : BAD_FORMAT;
}

/**
 * FunctionCall (F): Int32 function OID, Int16 format count + Int16 each, Int16 argument count, per
 * argument Int32 length (-1 = NULL) + bytes, Int16 result format.
 */
function functionCallError(buf: Buffer, body: number, end: number): string | null {
  let p = body;
  if (end - p < 6) return INSUFFICIENT;
  p += 4;
  const formats = uint16(buf, p);
  p += 2;
  if (end - p < 2 * formats + 2) return INSUFFICIENT;
  p += 2 * formats;
  const args = uint16(buf, p);
  p += 2;
  if (formats > 1 && formats !== args) {
    return `function call message contains ${formats} argument formats but ${args} arguments`;
  }
  for (let i = 0; i < args; i++) {
    if (end - p < 4) return INSUFFICIENT;
    const len = int32(buf, p);
    p += 4;
    if (len === -1) continue;
    if (len < 0) return `invalid argument size ${len} in function call message`;
    if (len > end - p) return INSUFFICIENT;
    p += len;
  }
  if (end - p < 2) return INSUFFICIENT;
  return p + 2 === end ? null : BAD_FORMAT;
}

/** The position after the NUL that ends the string at `pos`, or -1 when there is none before `end`. */
function skipString(buf: Buffer, pos: number, end: number): number {
  if (pos >= end) return -1;
  const nul = buf.indexOf(0, pos);
  return nul < 0 || nul >= end ? -1 : nul + 1;
}

/** Postgres reads counts with pq_getmsgint(msg, 2): unsigned. */
function uint16(buf: Buffer, p: number): number {
  return (buf[p] << 8) | buf[p + 1];
}

function int32(buf: Buffer, p: number): number {
  return (buf[p] << 24) | (buf[p + 1] << 16) | (buf[p + 2] << 8) | buf[p + 3];
}
