// The real Postgres parser (libpg_query, PG 17 grammar, compiled to WASM): loaded once at start,
// then called synchronously off the hot path. Callers treat every failure conservatively.

import { loadModule, type Node, type ParseResult, parseSync } from "libpg-query";

/** Statements longer than this (bytes of SQL text) are not parsed, and count as unknown. */
export const MAX_PARSE_BYTES = 1024 * 1024;

export type ParseOutcome =
  | { readonly ok: true; readonly stmts: readonly Node[] }
  | { readonly ok: false; readonly reason: "not_loaded" | "too_large" | "syntax" };

const NOT_LOADED: ParseOutcome = { ok: false, reason: "not_loaded" };
const TOO_LARGE: ParseOutcome = { ok: false, reason: "too_large" };
const SYNTAX: ParseOutcome = { ok: false, reason: "syntax" };
const EMPTY: ParseOutcome = { ok: true, stmts: [] };

let loaded = false;
let loadError: unknown;
// The WASM module starts compiling when libpg-query is imported; this only records when it is done,
// so a caller that forgot loadSqlParser() still gets the parser soon after import.
const loading = loadModule().then(
  () => {
    loaded = true;
  },
  (err: unknown) => {
    loadError = err;
  },
);

/**
 * Loads the parser's WASM module. The proxy awaits it once before accepting clients; until it
 * resolves, every statement is classified conservatively (not read-only; pinned if it might carry
 * session state).
 */
export async function loadSqlParser(): Promise<void> {
  await loading;
  if (!loaded) {
    const why = loadError instanceof Error ? loadError.message : String(loadError);
    throw new Error(`cannot load the SQL parser (libpg-query WASM): ${why}`);
  }
}

export function sqlParserLoaded(): boolean {
  return loaded;
}

/** Parses SQL text into its statements (the `stmt` of each RawStmt), in order. */
export function parseSql(sql: string): ParseOutcome {
  if (!loaded) return NOT_LOADED;
  // UTF-8 takes at most 3 bytes per UTF-16 unit; measure exactly only when it could matter.
  if (sql.length * 3 > MAX_PARSE_BYTES && Buffer.byteLength(sql) > MAX_PARSE_BYTES) {
    return TOO_LARGE;
  }
  // libpg-query refuses blank text; Postgres answers it with EmptyQueryResponse.
  if (sql.trim() === "") return EMPTY;
  let result: ParseResult;
  try {
    result = parseSync(sql) as ParseResult;
  } catch {
    return SYNTAX;
  }
  const stmts: Node[] = [];
  for (const raw of result.stmts ?? []) {
    if (raw.stmt === undefined) return SYNTAX;
    stmts.push(raw.stmt);
  }
  return { ok: true, stmts };
}

/** The single key of a parse-tree node (`{ SelectStmt: {...} }` -> "SelectStmt"). */
export function nodeType(node: Node): string {
  for (const key in node) return key;
  return "";
}

/** The body of a parse-tree node (`{ SelectStmt: body }` -> body). */
export function nodeBody(node: Node): Record<string, unknown> {
  for (const key in node) return (node as unknown as Record<string, Record<string, unknown>>)[key];
  return {};
}

/**
 * Visits every object in a parse tree, depth first, with the key it sits under (a node type such
 * as "FuncCall", or a field name such as "lockingClause"). Returning false stops the walk, and
 * the walk then returns false.
 */
export function walk(value: unknown, visit: (key: string, value: unknown) => boolean): boolean {
  if (Array.isArray(value)) {
    for (const item of value) if (!walk(item, visit)) return false;
    return true;
  }
  if (value === null || typeof value !== "object") return true;
  const obj = value as Record<string, unknown>;
  for (const key in obj) {
    const child = obj[key];
    if (child === null || typeof child !== "object") continue;
    if (!visit(key, child)) return false;
    if (!walk(child, visit)) return false;
  }
  return true;
}

/** The names of a qualified name list (`[{ String: { sval } }, ...]`), or null if not all strings. */
export function nameList(list: unknown): string[] | null {
  if (!Array.isArray(list)) return null;
  const names: string[] = [];
  for (const item of list) {
    const sval = (item as { String?: { sval?: string } })?.String?.sval;
    if (typeof sval !== "string") return null;
    names.push(sval);
  }
  return names;
}

/** The value of an A_Const string literal node, or undefined for anything else. */
export function stringConst(node: unknown): string | undefined {
  const c = (node as { A_Const?: { sval?: { sval?: string }; isnull?: boolean } })?.A_Const;
  if (c === undefined || c.sval === undefined) return undefined;
  return c.sval.sval ?? "";
}

/** The value of an A_Const boolean literal node (`true`/`false`), or undefined otherwise. */
export function boolConst(node: unknown): boolean | undefined {
  const c = (node as { A_Const?: { boolval?: { boolval?: boolean } } })?.A_Const;
  if (c === undefined || c.boolval === undefined) return undefined;
  return c.boolval.boolval === true;
}
