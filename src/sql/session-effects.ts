// What SQL text does to session state that a transaction-pooled server would carry from one
// client to the next (DESIGN.md section 4), read from the real parse tree: every statement of a
// multi-statement Query, any case, set_config(..., false), functions inside CTEs and subqueries.
// What cannot be parsed, or means different things under the two standard_conforming_strings
// settings, pins.

import { PinReason } from "../reasons.js";
import { nonStandardStringsVariant } from "./escapes.js";
import { boolConst, nameList, nodeBody, nodeType, parseSql, stringConst, walk } from "./parser.js";

// PinReason lives in reasons.ts (metrics and backend use it too); re-exported for callers.
export { PinReason };

/** Parameters whose changes Postgres reports with ParameterStatus: they are re-applied, not pinned. */
export const TRACKED_PARAMETERS: ReadonlySet<string> = new Set([
  "client_encoding",
  "datestyle",
  "timezone",
  "intervalstyle",
  "standard_conforming_strings",
  "application_name",
]);

export type DiscardTarget = "all" | "plans" | "temp" | "sequences";

/**
 * One thing a statement does to session state, in statement order. Pins and unpins are what the
 * proxy cannot restore; the other effects describe state it could carry to the next server.
 */
export type SessionEffect =
  | { readonly pin: PinReason }
  /** "all": DISCARD ALL left nothing behind. */
  | { readonly unpin: PinReason | "all" }
  /** A session setting, and a statement that re-applies it on another server. */
  | { readonly set: { readonly name: string; readonly sql: string } }
  /** RESET name, SET name TO DEFAULT, RESET ALL ("all": no parameter can be named ALL). */
  | { readonly reset: string }
  | { readonly discard: DiscardTarget }
  /** DEALLOCATE name; null for DEALLOCATE ALL (a statement may be named "all"). */
  | { readonly deallocate: string | null }
  | { readonly listen: string }
  /** UNLISTEN channel; null for UNLISTEN *. */
  | { readonly unlisten: string | null };

export type SessionEffects = readonly SessionEffect[];

/** The answer for the common statement: shared, never allocated. */
export const NO_EFFECTS: SessionEffects = Object.freeze([]);

const UNPARSED: SessionEffects = Object.freeze([{ pin: PinReason.Unparsed }]);

/** pg_advisory_lock[_shared] and the try_ forms take session-level locks; _xact_ ones do not. */
const SESSION_LOCKS = new Set([
  "pg_advisory_lock",
  "pg_advisory_lock_shared",
  "pg_try_advisory_lock",
  "pg_try_advisory_lock_shared",
]);

/** Spellings boolin accepts for true (unique prefixes of true/yes, on, 1). */
const TRUE_WORDS = new Set(["t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"]);

/** Statements that only reference objects: naming pg_temp there does not create anything. */
const DML = new Set(["SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"]);

/**
 * Fields holding a qualified object name as a list of identifiers (function, type, domain,
 * aggregate, operator, collation, conversion). Lists of string literals (function bodies, enum
 * labels) are not names, and may spell pg_temp with escapes the prefilter cannot see.
 */
const NAME_LISTS = new Set([
  "funcname",
  "names",
  "defnames",
  "typeName",
  "domainname",
  "conversion_name",
]);

/** CURSOR_OPT_HOLD in parsenodes.h. */
const CURSOR_OPT_HOLD = 0x0020;

/**
 * What the SQL text (one Query string, or one Parse) does to session state, statement by
 * statement. Call it only for text the prefilter let through: any text that fails to parse pins.
 */
export function sessionEffects(sql: string): SessionEffects {
  const effects = effectsOf(sql);
  if (effects === null) return UNPARSED;
  const variant = nonStandardStringsVariant(sql);
  if (variant === null) return effects.length === 0 ? NO_EFFECTS : effects;
  // With standard_conforming_strings off the server may read other statements than the parser
  // did: keep every pin either reading finds, and trust no unpin.
  const other = variant === false ? null : effectsOf(variant);
  const pins: SessionEffect[] = [];
  const seen = new Set<PinReason>();
  for (const e of [...effects, ...(other ?? [])]) {
    if ("pin" in e && !seen.has(e.pin)) {
      seen.add(e.pin);
      pins.push(e);
    }
  }
  if (other === null || (pins.length === 0 && effects.length + other.length > 0)) {
    pins.push({ pin: PinReason.Unparsed });
  }
  return pins.length === 0 ? NO_EFFECTS : pins;
}

/** The effects the parser finds in the text as written; null when it does not parse. */
export function effectsOf(sql: string): SessionEffect[] | null {
  const parsed = parseSql(sql);
  if (!parsed.ok) return null;
  const effects: SessionEffect[] = [];
  for (const stmt of parsed.stmts) statementEffects(nodeType(stmt), nodeBody(stmt), effects);
  return effects;
}

function statementEffects(type: string, s: Record<string, unknown>, out: SessionEffect[]): void {
  switch (type) {
    case "VariableSetStmt":
      variableSet(s, out);
      break;
    case "ListenStmt":
      out.push({ listen: String(s.conditionname ?? "") }, { pin: PinReason.Listen });
      break;
    case "UnlistenStmt":
      if (s.conditionname === undefined) {
        out.push({ unlisten: null }, { unpin: PinReason.Listen });
      } else out.push({ unlisten: String(s.conditionname) });
      break;
    case "DeclareCursorStmt":
      if ((Number(s.options ?? 0) & CURSOR_OPT_HOLD) !== 0) out.push({ pin: PinReason.HoldCursor });
      break;
    case "ClosePortalStmt":
      // CLOSE ALL closes every cursor, WITH HOLD ones included.
      if (s.portalname === undefined) out.push({ unpin: PinReason.HoldCursor });
      break;
    case "PrepareStmt":
      out.push({ pin: PinReason.SqlPrepare });
      break;
    case "DeallocateStmt":
      if (s.isall === true || s.name === undefined) {
        out.push(
          { deallocate: null },
          { unpin: PinReason.SqlPrepare },
          { unpin: PinReason.PreparedStatement },
        );
      } else out.push({ deallocate: String(s.name) });
      break;
    case "DiscardStmt":
      discard(String(s.target), out);
      break;
    case "DoStmt":
    case "CallStmt":
    case "LoadStmt":
      out.push({ pin: PinReason.UnknownCode });
      break;
  }
  functionsAndTemp(type, s, out);
}

function discard(target: string, out: SessionEffect[]): void {
  switch (target) {
    case "DISCARD_ALL":
      out.push({ discard: "all" }, { unpin: "all" });
      break;
    case "DISCARD_TEMP":
      out.push({ discard: "temp" }, { unpin: PinReason.TempTable });
      break;
    case "DISCARD_PLANS":
      out.push({ discard: "plans" });
      break;
    case "DISCARD_SEQUENCES":
      out.push({ discard: "sequences" });
      break;
    default:
      out.push({ pin: PinReason.Unparsed });
  }
}

/** SET / RESET in all their forms (VariableSetStmt). SET LOCAL ends with the transaction. */
function variableSet(s: Record<string, unknown>, out: SessionEffect[]): void {
  if (s.is_local === true) return;
  const name = String(s.name ?? "").toLowerCase();
  switch (s.kind) {
    case "VAR_RESET_ALL":
      // RESET ALL leaves role and session_authorization alone (GUC_NO_RESET_ALL).
      out.push({ reset: "all" }, { unpin: PinReason.Set });
      return;
    case "VAR_SET_MULTI":
      // SET TRANSACTION ... lasts one transaction; SET SESSION CHARACTERISTICS the session.
      if (name !== "transaction") out.push({ pin: PinReason.Set });
      return;
    case "VAR_RESET":
    case "VAR_SET_DEFAULT":
      reset(name, out);
      return;
    case "VAR_SET_VALUE": {
      const args = Array.isArray(s.args) ? s.args : [];
      if (name === "role" && args.length === 1 && stringConst(args[0])?.toLowerCase() === "none") {
        reset(name, out); // SET ROLE NONE is RESET ROLE
        return;
      }
      const value = renderArgs(args);
      setting(name, value === null ? null : `SET ${quoteIdent(name)} TO ${value}`, out);
      return;
    }
    default:
      // VAR_SET_CURRENT, or a kind this code does not know.
      out.push({ pin: PinReason.Set });
  }
}

function reset(name: string, out: SessionEffect[]): void {
  out.push({ reset: name });
  if (name === "role") out.push({ unpin: PinReason.SetRole });
  else if (name === "session_authorization") out.push({ unpin: PinReason.SessionAuthorization });
}

/** A session setting of `name`; `sql` re-applies it elsewhere (null when it cannot be rebuilt). */
function setting(name: string, sql: string | null, out: SessionEffect[]): void {
  if (sql !== null) out.push({ set: { name, sql } });
  if (name === "role") out.push({ pin: PinReason.SetRole });
  else if (name === "session_authorization") out.push({ pin: PinReason.SessionAuthorization });
  else if (!TRACKED_PARAMETERS.has(name) || sql === null) out.push({ pin: PinReason.Set });
}

/**
 * Finds, anywhere in a statement (CTEs, subqueries, function arguments), calls that change
 * session state, and the temporary objects it creates.
 */
function functionsAndTemp(type: string, s: Record<string, unknown>, out: SessionEffect[]): void {
  // EXPLAIN counts as DDL here: EXPLAIN ANALYZE CREATE TABLE pg_temp.t AS ... creates one.
  const ddl = !DML.has(type);
  let temp = false;
  walk(s, (key, value) => {
    const v = value as Record<string, unknown>;
    if (key === "FuncCall") functionCall(v, out);
    else if (!temp) {
      if (v.relpersistence === "t") temp = true;
      else if (
        (key === "intoClause" || key === "into") &&
        isTempSchema((v.rel as { schemaname?: unknown })?.schemaname)
      ) {
        temp = true;
      } else if (ddl && (isTempSchema(v.schemaname) || (NAME_LISTS.has(key) && isTempName(v)))) {
        temp = true;
      }
    }
    return true;
  });
  if (temp) out.push({ pin: PinReason.TempTable });
}

/** A qualified name whose schema is pg_temp (pg_temp.f), as an identifier list. */
function isTempName(list: unknown): boolean {
  const names = nameList(list);
  return names !== null && names.length >= 2 && isTempSchema(names[0]);
}

/** pg_temp, the alias of this session's temporary schema, or pg_temp_N, its real name. */
function isTempSchema(name: unknown): boolean {
  return typeof name === "string" && /^pg_temp(?:_\d+)?$/i.test(name);
}

function functionCall(call: Record<string, unknown>, out: SessionEffect[]): void {
  const names = nameList(call.funcname);
  // A name that is not a plain list cannot be a function we know; nothing to record.
  if (names === null || names.length === 0) return;
  // Any schema: a user's own set_config or lock wrapper is treated as the built-in would be.
  const name = names[names.length - 1].toLowerCase();
  if (SESSION_LOCKS.has(name)) out.push({ pin: PinReason.AdvisoryLock });
  else if (name === "pg_advisory_unlock_all") out.push({ unpin: PinReason.AdvisoryLock });
  else if (name === "set_config") setConfig(Array.isArray(call.args) ? call.args : [], out);
}

/** set_config(name, value, is_local): a session setting unless is_local is a literal true. */
function setConfig(args: unknown[], out: SessionEffect[]): void {
  if (args.length === 3) {
    const local = boolConst(args[2]);
    const localText = stringConst(args[2]);
    if (
      local === true ||
      (localText !== undefined && TRUE_WORDS.has(localText.trim().toLowerCase()))
    )
      return;
  }
  const name = args.length === 3 ? stringConst(args[0]) : undefined;
  if (name === undefined) {
    out.push({ pin: PinReason.Set });
    return;
  }
  const value = stringConst(args[1]);
  const lower = name.toLowerCase();
  setting(
    lower,
    value === undefined
      ? null
      : `SELECT pg_catalog.set_config(${quoteLiteral(lower)}, ${quoteLiteral(value)}, false)`,
    out,
  );
}

/** The SQL text of SET's value list, rebuilt from its constants; null if any is not one. */
function renderArgs(args: unknown[]): string | null {
  const parts: string[] = [];
  for (const arg of args) {
    const c = (arg as { A_Const?: Record<string, Record<string, unknown>> })?.A_Const;
    if (c === undefined) return null;
    if (c.sval !== undefined) parts.push(quoteLiteral(String(c.sval.sval ?? "")));
    else if (c.ival !== undefined) parts.push(String(c.ival.ival ?? 0));
    else if (c.fval !== undefined) parts.push(String(c.fval.fval));
    else if (c.boolval !== undefined) parts.push(c.boolval.boolval === true ? "true" : "false");
    else return null;
  }
  return parts.length === 0 ? null : parts.join(", ");
}

/** As Postgres's quote_literal: E'' with doubled backslashes when there are any. */
function quoteLiteral(s: string): string {
  const q = `'${s.replaceAll("'", "''")}'`;
  return s.includes("\\") ? `E${q.replaceAll("\\", "\\\\")}` : q;
}

function quoteIdent(s: string): string {
  return `"${s.replaceAll('"', '""')}"`;
}
