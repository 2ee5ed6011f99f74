// ClientStatements: one client's named prepared statements in transaction mode. Each is renamed
// by content (hash of query text and parameter types), so every client preparing the same
// statement shares one server-side copy, and a server lacking it can be given it at any time.

import { createHash } from "node:crypto";
import { FrontendCode } from "../protocol/codes.js";
import { detectSessionState, type StateChange } from "./session-state.js";

const HEADER = 5;

export interface ClientStatement {
  /** Content-derived server-side name: the same text and types share one server statement. */
  serverName: string;
  /** The Parse (F) to send a server that lacks the statement. */
  parse: Buffer;
  /** The query text, for retry classification. */
  sql: string;
  /** What executing it does to session state (SET, LISTEN, ...), applied where it runs; null
   * when nothing. */
  sessionChange: StateChange;
}

export class ClientStatements {
  private readonly byName = new Map<string, ClientStatement>();

  get size(): number {
    return this.byName.size;
  }

  get(name: string): ClientStatement | undefined {
    return this.byName.get(name);
  }

  /** The client's name for a server-side statement name (for error messages), if it has one. */
  clientNameOf(serverName: string): string | undefined {
    for (const [name, stmt] of this.byName) if (stmt.serverName === serverName) return name;
    return undefined;
  }

  delete(name: string): boolean {
    return this.byName.delete(name);
  }

  clear(): void {
    this.byName.clear();
  }

  /**
   * Records the named statement of a client Parse (F) frame `buf[start, end)` whose name ends at
   * `nameEnd`. Parsing the same name with the same body again returns the existing entry.
   */
  register(
    buf: Buffer,
    start: number,
    end: number,
    nameEnd: number,
    trackSessionState: boolean,
  ): ClientStatement {
    const clientName = buf.toString("utf8", start + HEADER, nameEnd);
    const body = buf.subarray(nameEnd + 1, end);
    const serverName = `pgsc_${createHash("sha1").update(body).digest("hex")}`;
    const existing = this.byName.get(clientName);
    if (existing !== undefined && existing.serverName === serverName) return existing;
    const parse = Buffer.allocUnsafe(HEADER + serverName.length + 1 + body.length);
    parse[0] = FrontendCode.Parse;
    parse.writeInt32BE(parse.length - 1, 1);
    parse.write(serverName, HEADER, "latin1");
    parse[HEADER + serverName.length] = 0;
    body.copy(parse, HEADER + serverName.length + 1);
    const sqlEnd = buf.indexOf(0, nameEnd + 1);
    const effects = trackSessionState ? detectSessionState(buf, nameEnd + 1, sqlEnd) : null;
    const stmt: ClientStatement = {
      serverName,
      parse,
      sql: buf.toString("utf8", nameEnd + 1, sqlEnd),
      sessionChange: effects !== null && effects.length > 0 ? effects : null,
    };
    this.byName.set(clientName, stmt);
    return stmt;
  }

  /**
   * SQL that manages the client's own statement names: `DEALLOCATE [PREPARE] name|ALL` (psycopg
   * sends it when its cache rotates, and after ROLLBACK or DROP) and `DISCARD ALL` outside a
   * transaction. Returns the CommandComplete tag to answer with, or null if the text is anything
   * else (or names a statement this client does not have: the server then reports it).
   */
  applySql(buf: Buffer, start: number, end: number, outsideTransaction: boolean): string | null {
    if (end - start > 200) return null;
    // Most queries are something else: decide on the first non-blank byte before decoding.
    let i = start;
    while (i < end && (buf[i] === 0x20 || buf[i] === 0x0a || buf[i] === 0x09 || buf[i] === 0x0d))
      i++;
    if ((buf[i] | 0x20) !== 0x64) return null; // 'd': DEALLOCATE / DISCARD
    // Trailing blanks and semicolons (`DISCARD ALL ;`, `DEALLOCATE q1;;`) end the one statement.
    const sql = buf
      .toString("utf8", start, end)
      .replace(/[ \t\n\r\f\v;]+$/, "")
      .trim();
    const m = /^deallocate\s+(?:prepare\s+)?("(?:[^"]|"")+"|[^\s;]+)$/i.exec(sql);
    if (m) {
      const target = m[1];
      if (target.toLowerCase() === "all") {
        this.byName.clear();
        return "DEALLOCATE ALL";
      }
      const name = target.startsWith('"')
        ? target.slice(1, -1).replaceAll('""', '"')
        : target.toLowerCase();
      if (!this.byName.delete(name) && !this.byName.delete(target)) return null;
      return "DEALLOCATE";
    }
    if (/^discard\s+all$/i.test(sql) && outsideTransaction) {
      this.byName.clear();
      return "DISCARD ALL";
    }
    return null;
  }
}

/** Copies a frame with the NUL-terminated name at [nameStart, nameEnd) replaced by `name`. */
export function spliceName(
  buf: Buffer,
  start: number,
  end: number,
  nameStart: number,
  nameEnd: number,
  name: string,
): Buffer {
  const out = Buffer.allocUnsafe(end - start - (nameEnd - nameStart) + name.length);
  buf.copy(out, 0, start, nameStart);
  out.write(name, nameStart - start, "latin1");
  buf.copy(out, nameStart - start + name.length, nameEnd, end);
  out.writeInt32BE(out.length - 1, 1);
  return out;
}
