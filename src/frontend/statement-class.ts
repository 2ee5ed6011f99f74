// Conservative read-only classification of SQL text, for the `safe` retry policy. Anything not
// certainly free of side effects is a write: a false "write" costs a client error, a false
// "read_only" could apply a write twice.

export type StatementClass = "read_only" | "write";

/** Functions known to be free of side effects (stable or immutable built-ins). */
const SAFE_FUNCTIONS = new Set([
  "abs",
  "array_agg",
  "array_length",
  "array_to_string",
  "avg",
  "bool_and",
  "bool_or",
  "btrim",
  "cardinality",
  "cast",
  "ceil",
  "char_length",
  "coalesce",
  "concat",
  "concat_ws",
  "count",
  "current_database",
  "current_schema",
  "current_setting",
  "current_user",
  "date_part",
  "date_trunc",
  "decode",
  "encode",
  "exists",
  "extract",
  "floor",
  "format",
  "generate_series",
  "greatest",
  "jsonb_agg",
  "jsonb_build_object",
  "jsonb_each",
  "jsonb_each_text",
  "jsonb_object_agg",
  "json_agg",
  "json_build_object",
  "least",
  "left",
  "length",
  "lower",
  "ltrim",
  "max",
  "md5",
  "min",
  "now",
  "nullif",
  "octet_length",
  "pg_backend_pid",
  "position",
  "replace",
  "right",
  "round",
  "row_number",
  "rtrim",
  "split_part",
  "string_agg",
  "substr",
  "substring",
  "sum",
  "to_char",
  "to_json",
  "to_jsonb",
  "trim",
  "upper",
  "version",
  "any",
  "all",
  "in",
  "array",
  "values",
  "row",
  "unnest",
  "rank",
  "dense_rank",
  "lag",
  "lead",
  "first_value",
  "last_value",
  "over",
  "filter",
  "current_timestamp",
  "statement_timestamp",
  "transaction_timestamp",
  "clock_timestamp",
  "pg_sleep",
  "pg_is_in_recovery",
  "not",
  "and",
  "or",
  "as",
  "on",
  "from",
  "where",
  "select",
  "using",
  "join",
  "limit",
  "offset",
  "then",
  "else",
  "when",
  "case",
  "is",
  "like",
  "ilike",
  "between",
  "with",
  "union",
  "intersect",
  "except",
  "order",
  "by",
  "group",
  "having",
  "distinct",
  "lateral",
  "join",
  "asc",
  "desc",
  "nulls",
]);

const WRITE_WORDS =
  /\b(insert|update|delete|merge|into|for\s+(update|share|no\s+key\s+update|key\s+share)|nextval|setval|lock|copy|call|do|create|drop|alter|truncate|grant|revoke|vacuum|analyze|cluster|reindex|refresh|notify|listen|set_config|pg_advisory|lo_)\b/i;

/** Strips comments and string literals, so keywords inside them do not count. */
function strip(sql: string): string {
  return sql
    .replace(/--[^\n]*/g, " ")
    .replace(/\/\*[\s\S]*?\*\//g, " ")
    .replace(/\$([a-z_]*)\$[\s\S]*?\$\1\$/gi, " '' ")
    .replace(/'(?:[^']|'')*'/g, " '' ")
    .replace(/"(?:[^"]|"")*"/g, " ident ");
}

export function classifyStatement(sql: string): StatementClass {
  const text = strip(sql).trim().toLowerCase();
  if (text === "") return "read_only";
  const first = /^[a-z]+/.exec(text)?.[0] ?? "";
  switch (first) {
    case "select":
    case "values":
    case "table":
    case "with":
      break;
    case "show":
      return "read_only";
    case "explain":
      return /\banalyze\b|\banalyse\b/.test(text) ? "write" : "read_only";
    default:
      return "write";
  }
  if (WRITE_WORDS.test(text)) return "write";
  // Every function call must be a known side-effect-free one.
  for (const m of text.matchAll(/([a-z_][a-z0-9_.]*)\s*\(/g)) {
    const name = m[1].includes(".") ? m[1].slice(m[1].lastIndexOf(".") + 1) : m[1];
    if (!SAFE_FUNCTIONS.has(name)) return "write";
  }
  return "read_only";
}
