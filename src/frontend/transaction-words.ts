// Transaction control statements, recognised by their leading keywords. Used on the cold paths
// only (after a server was lost): what a statement does to the transaction decides what the
// client is told (DESIGN.md section 1).

/** What a statement does to the transaction it runs in. */
export type TransactionControl =
  /** ROLLBACK / ABORT (with WORK, TRANSACTION, AND [NO] CHAIN): ends the transaction. */
  | "rollback"
  /** ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name: stays inside the transaction. */
  | "rollback_to"
  /** COMMIT / END: may commit. */
  | "commit"
  /** PREPARE TRANSACTION 'x': the transaction's outcome is decided later, but it may survive. */
  | "prepare_transaction"
  /** COMMIT PREPARED / ROLLBACK PREPARED: resolves a prepared transaction, may commit. */
  | "commit_prepared"
  | "begin"
  | "savepoint"
  | "release"
  | "other";

/** The first `n` keywords of SQL text, lower-cased; blanks and comments are skipped. */
export function leadingWords(sql: string, n: number): string[] {
  const words: string[] = [];
  let i = 0;
  const len = Math.min(sql.length, 4096);
  while (words.length < n && i < len) {
    const c = sql.charCodeAt(i);
    if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) i++;
    else if (c === 0x2d && sql.charCodeAt(i + 1) === 0x2d) {
      const nl = sql.indexOf("\n", i);
      i = nl < 0 ? len : nl + 1;
    } else if (c === 0x2f && sql.charCodeAt(i + 1) === 0x2a) {
      // Postgres block comments nest.
      let depth = 1;
      i += 2;
      while (i < len && depth > 0) {
        if (sql.startsWith("/*", i)) {
          depth++;
          i += 2;
        } else if (sql.startsWith("*/", i)) {
          depth--;
          i += 2;
        } else i++;
      }
    } else {
      const m = /^[A-Za-z_][A-Za-z0-9_$]*/.exec(sql.slice(i, i + 64));
      if (m === null) break;
      words.push(m[0].toLowerCase());
      i += m[0].length;
    }
  }
  return words;
}

export function transactionControl(sql: string): TransactionControl {
  const [first, second, third] = leadingWords(sql, 3);
  switch (first) {
    case "rollback":
    case "abort": {
      if (second === "prepared") return "commit_prepared";
      const next = second === "work" || second === "transaction" ? third : second;
      return next === "to" ? "rollback_to" : "rollback";
    }
    case "commit":
      return second === "prepared" ? "commit_prepared" : "commit";
    case "end":
      return "commit";
    case "prepare":
      return second === "transaction" ? "prepare_transaction" : "other";
    case "begin":
      return "begin";
    case "start":
      return second === "transaction" ? "begin" : "other";
    case "savepoint":
      return "savepoint";
    case "release":
      return "release";
    default:
      return "other";
  }
}

/**
 * Whether SQL text may commit a transaction: any COMMIT, END or PREPARE keyword anywhere in it
 * (a multi-statement Query, a function body). Over-reporting is the safe side: it turns "rolled
 * back" into "outcome unknown", never the reverse.
 */
export function mayCommit(sql: string): boolean {
  return /\b(commit|end|prepare)\b/i.test(sql);
}
