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
  /** The client's name, as bytes (looked up in frames without decoding them). */
  readonly clientName: Buffer;
  /**
   * The head of a Bind of this statement to the unnamed portal, as the server gets it: 'B', the
   * length (written per use), an empty portal name and the server name. Created on first use.
   */
  bindHead: Buffer | null;
  /** Describe of this statement (by its server name), whole; created on first use. */
  describe: Buffer | null;
  /** The next statement of the same ClientStatements whose name bytes hash alike. */
  sameHash: ClientStatement | null;
}

/** FNV-1a of b[start, end), kept to 30 bits so it stays a small integer (a Map key, no boxing). */
export function nameHash(b: Buffer, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ b[i], 0x01000193);
  return h & 0x3fffffff;
}

function sameBytes(name: Buffer, b: Buffer, start: number, end: number): boolean {
  if (name.length !== end - start) return false;
  for (let i = 0; i < name.length; i++) if (name[i] !== b[start + i]) return false;
  return true;
}

export class ClientStatements {
  private readonly byName = new Map<string, ClientStatement>();
  /** The same statements by a hash of the name's bytes (collisions chained by `sameHash`). */
  private byHash: Map<number, ClientStatement> | null = null;
  /** The statement lookup() found last (still registered: cleared when it is not). */
  private last: ClientStatement | null = null;

  get size(): number {
    return this.byName.size;
  }

  get(name: string): ClientStatement | undefined {
    return this.byName.get(name);
  }

  /** The statement named by the bytes b[start, end) of a frame, without decoding them. */
  lookup(b: Buffer, start: number, end: number): ClientStatement | undefined {
    const byHash = this.byHash;
    if (byHash === null) return undefined;
    // A client runs the same few statements over and over: try the last one found first.
    const last = this.last;
    if (last !== null && sameBytes(last.clientName, b, start, end)) return last;
    let stmt = byHash.get(nameHash(b, start, end));
    while (stmt !== undefined && !sameBytes(stmt.clientName, b, start, end)) {
      stmt = stmt.sameHash ?? undefined;
    }
    if (stmt !== undefined) this.last = stmt;
    return stmt;
  }

  /** The client's name for a server-side statement name (for error messages), if it has one. */
  clientNameOf(serverName: string): string | undefined {
    for (const [name, stmt] of this.byName) if (stmt.serverName === serverName) return name;
    return undefined;
  }

  delete(name: string): boolean {
    const stmt = this.byName.get(name);
    if (stmt === undefined) return false;
    this.byName.delete(name);
    this.unhash(stmt);
    return true;
  }

  clear(): void {
    this.byName.clear();
    this.byHash = null;
    this.last = null;
  }

  private set(name: string, stmt: ClientStatement): void {
    const old = this.byName.get(name);
    if (old !== undefined) this.unhash(old);
    this.byName.set(name, stmt);
    this.byHash ??= new Map();
    const h = nameHash(stmt.clientName, 0, stmt.clientName.length);
    stmt.sameHash = this.byHash.get(h) ?? null;
    this.byHash.set(h, stmt);
  }

  private unhash(stmt: ClientStatement): void {
    if (this.last === stmt) this.last = null;
    const byHash = this.byHash;
    if (byHash === null) return;
    const h = nameHash(stmt.clientName, 0, stmt.clientName.length);
    let cur = byHash.get(h);
    if (cur === stmt) {
      if (stmt.sameHash === null) byHash.delete(h);
      else byHash.set(h, stmt.sameHash);
    } else {
      while (cur !== undefined && cur.sameHash !== stmt) cur = cur.sameHash ?? undefined;
      if (cur !== undefined) cur.sameHash = stmt.sameHash;
    }
    stmt.sameHash = null;
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
      clientName: Buffer.from(buf.subarray(start + HEADER, nameEnd)),
      bindHead: null,
      describe: null,
      sameHash: null,
    };
    this.set(clientName, stmt);
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
        this.clear();
        return "DEALLOCATE ALL";
      }
      const name = target.startsWith('"')
        ? target.slice(1, -1).replaceAll('""', '"')
        : target.toLowerCase();
      if (!this.delete(name) && !this.delete(target)) return null;
      return "DEALLOCATE";
    }
    if (/^discard\s+all$/i.test(sql) && outsideTransaction) {
      this.clear();
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

/**
 * The head of a Bind of `stmt` to the unnamed portal, as the server gets it: 'B', a zero length
 * (the caller writes the real one into its copy), an empty portal name and the server name. The
 * client's frame after its statement name's NUL follows it unchanged.
 */
export function bindHead(stmt: ClientStatement): Buffer {
  if (stmt.bindHead !== null) return stmt.bindHead;
  const name = stmt.serverName;
  const head = Buffer.alloc(HEADER + 1 + name.length + 1);
  head[0] = FrontendCode.Bind;
  head.write(name, HEADER + 1, "latin1");
  stmt.bindHead = head;
  return head;
}

/** Describe (F) of `stmt` under its server name. */
export function describeStatement(stmt: ClientStatement): Buffer {
  if (stmt.describe !== null) return stmt.describe;
  const name = stmt.serverName;
  const d = Buffer.alloc(HEADER + 1 + name.length + 1);
  d[0] = FrontendCode.Describe;
  d.writeInt32BE(d.length - 1, 1);
  d[HEADER] = 0x53; // 'S'
  d.write(name, HEADER + 1, "latin1");
  stmt.describe = d;
  return d;
}
