// ClientSettings: the settings one client expects on whatever server runs its work. Startup
// parameters, the parameters servers report (TimeZone, application_name, ...), and session SETs
// the client ran itself travel with the client instead of pinning it to one server: before its
// work, each server it lands on is brought to these values (DESIGN.md section 4).

import type { BackendConnection } from "../backend/backend-connection.js";
import { TRACKED_PARAMETERS } from "./session-state.js";

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
  /** ParameterStatus values as this client last saw them (canonical server names). */
  private readonly reported = new Map<string, string>();
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

  /**
   * Login completes with the parameters a server reported (`serverParams`): the client's own
   * values win, reported and `trackExtra` parameters are tracked from now on, and the settings
   * as login left them are remembered (RESET goes back to them). Returns what the client is told.
   */
  loggedIn(
    serverParams: ReadonlyMap<string, string>,
    trackExtra: ReadonlySet<string>,
  ): ReadonlyMap<string, string> {
    const tracked = new Set([...TRACKED_PARAMETERS, ...trackExtra]);
    for (const [name, value] of serverParams) {
      const lc = name.toLowerCase();
      const mine = this.wanted.get(lc);
      if (mine) mine.name = name;
      else if (tracked.has(lc)) this.wanted.set(lc, { name, value });
      this.reported.set(name, mine ? mine.value : value);
    }
    this.login = new Map();
    for (const [lc, s] of this.wanted) this.login.set(lc, { ...s });
    return this.reported;
  }

  /**
   * A server reported a parameter; `ignored`: during a SET of ours. Returns true when the client
   * must be told (a ParameterStatus it would not get from the server).
   */
  serverReported(
    name: string,
    value: string,
    ignored: boolean,
    trackExtra: ReadonlySet<string>,
  ): boolean {
    const lc = name.toLowerCase();
    const mine = this.wanted.get(lc);
    if (ignored) {
      // Our own SET: adopt the server's spelling, and tell the client if its view changed.
      if (mine) mine.value = value;
      if (this.reported.get(name) !== value && (mine || !this.reported.has(name))) {
        this.reported.set(name, value);
        return true;
      }
      return false;
    }
    this.reported.set(name, value);
    if (mine) mine.value = value;
    else if (TRACKED_PARAMETERS.has(lc) || trackExtra.has(lc)) this.wanted.set(lc, { name, value });
    return false;
  }

  /**
   * DISCARD ALL answered without a server: settings go back to what login established, and
   * `tell` hears of each reported parameter that changes, as Postgres reports them.
   */
  discardAll(tell: (name: string, value: string) => void): void {
    this.resetAll();
    for (const [name, value] of this.reported) {
      const wanted = this.wanted.get(name.toLowerCase());
      if (wanted === undefined || wanted.value === value) continue;
      this.reported.set(name, wanted.value);
      tell(name, wanted.value);
    }
  }

  /**
   * The statements that bring `conn` to this client's settings, recording on `conn` what they
   * set; "" when it already matches. Parameters servers report are compared by value with what
   * `conn` reported instead.
   */
  sqlFor(conn: BackendConnection): string {
    const reported = this.reported;
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
