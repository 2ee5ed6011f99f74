// Conservative read-only classification of SQL text, for the `safe` retry policy: the real
// Postgres grammar decides (src/sql/read-only.ts). A false "write" costs a client an error, a
// false "read_only" could apply a write twice.

import { isReadOnly } from "../sql/read-only.js";

export type StatementClass = "read_only" | "write";

export function classifyStatement(sql: string): StatementClass {
  return isReadOnly(sql) ? "read_only" : "write";
}
