// ClientSettings: the settings one client expects on whatever server runs its work. Startup
// parameters, the parameters servers report (TimeZone, application_name, ...), and session SETs
// the client ran itself travel with the client instead of pinning it to one server: before its
// work, each server it lands on is brought to these values (DESIGN.md section 4).

import type { BackendConnection } from "../backend/backend-connection.js";

export interface Setting {
  /** The parameter's name as the client or server spelled it. */
  name: string;
  value: string;
  /** For a setting the client SET itself: the statement that re-applies it exactly. */
  sql?: string;
}

/** A session SET or RESET seen in a unit, applied to the record once the unit ended cleanly. */
export type PendingSetting = { set: { name: string; sql: string } } | { reset: string };

export class ClientSettings {
  private readonly wanted = new Map<string, Setting>();
  /** What login established (startup parameters): RESET goes back to these. */
  private login: Map<string, Setting> | null = null;
  private pending: PendingSetting[] = [];

  get(lc: string): Setting | undefined {
    return this.wanted.get(lc);
  }

  set(lc: string, setting: Setting): void {
    this.wanted.set(lc, setting);
  }

  has(lc: string): boolean {
    return this.wanted.has(lc);
  }

  entries(): IterableIterator<[string, Setting]> {
    return this.wanted.entries();
  }

  /** Remembers the settings as login left them. */
  sealLogin(): void {
    this.login = new Map();
    for (const [lc, s] of this.wanted) this.login.set(lc, { ...s });
  }

  /**
   * The statements that bring `conn` to this client's settings, recording on `conn` what they
   * set; "" when it already matches. `reported`: the parameters servers report, compared by
   * value with what `conn` reported instead.
   */
  sqlFor(conn: BackendConnection, reported: ReadonlyMap<string, string>): string {
    let sql = "";
    for (const [lc, s] of this.wanted) {
      if (s.sql === undefined && reported.has(s.name)) {
        if (conn.params.get(s.name) === s.value) continue;
        sql += `${setStatement(s.name, s.value)};`;
        continue;
      }
      const statement = s.sql ?? setStatement(s.name, s.value);
      if (conn.settingStatement(lc) === statement) continue;
      conn.recordSetting(lc, statement);
      sql += `${statement};`;
    }
    for (const lc of conn.settingNames()) {
      if (this.wanted.has(lc)) continue;
      conn.forgetSetting(lc);
      sql += `RESET ${quoteIdent(lc)};`;
    }
    return sql;
  }

  hold(change: PendingSetting): void {
    this.pending.push(change);
  }

  get hasPending(): boolean {
    return this.pending.length > 0;
  }

  dropPending(): void {
    this.pending = [];
  }

  /**
   * The unit that ran the pending SETs and RESETs ended cleanly on `conn`: the client expects
   * them everywhere from now on, and `conn` has them.
   */
  commitPending(conn: BackendConnection): void {
    for (const change of this.pending) {
      if ("set" in change) {
        const lc = change.set.name.toLowerCase();
        this.wanted.set(lc, { name: change.set.name, value: change.set.sql, sql: change.set.sql });
        conn.recordSetting(lc, change.set.sql);
      } else if (change.reset === "all") {
        this.resetAll();
        conn.forgetSettings();
      } else {
        const lc = change.reset.toLowerCase();
        const initial = this.login?.get(lc);
        if (initial) this.wanted.set(lc, { ...initial });
        else this.wanted.delete(lc);
        conn.forgetSetting(lc);
      }
    }
    this.pending = [];
  }

  /** RESET ALL / DISCARD ALL: back to what login established. */
  resetAll(): void {
    for (const lc of [...this.wanted.keys()]) {
      const initial = this.login?.get(lc);
      if (initial) this.wanted.set(lc, { ...initial });
      else this.wanted.delete(lc);
    }
  }
}

/** The SET that gives a parameter a startup value (also the record of it on a server). */
export function setStatement(name: string, value: string): string {
  return `SET ${quoteIdent(name)} = ${quoteLiteral(value)}`;
}

export function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_.]*$/i.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

export function quoteLiteral(value: string): string {
  const body = value.replaceAll("'", "''");
  return value.includes("\\") ? `E'${body.replaceAll("\\", "\\\\")}'` : `'${body}'`;
}
