// ClientSettings: the settings one client expects on whatever server runs its work. Startup
// parameters, the parameters servers report (TimeZone, application_name, ...), and session SETs
// the client ran itself travel with the client instead of pinning it to one server: before its
// work, each server it lands on is brought to these values (DESIGN.md section 4).

import type { BackendConnection } from "../backend/backend-connection.js";
import * as msg from "../protocol/messages.js";
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

/**
 * The settings and reported parameters as login left them, shared by every client that logged in
 * to the same values (most clients of a pool): never written. A client copies a map the first time
 * it changes it (copy on write), so an idle client holds no settings of its own.
 */
interface Frozen {
  readonly wanted: ReadonlyMap<string, Readonly<Setting>>;
  readonly reported: ReadonlyMap<string, string>;
  /** ParameterStatus for each reported parameter, as login sends them; built on first use. */
  messages: Buffer | null;
}

/**
 * Frozen records by what login starts from: the server's parameters (a pool's serverParams, never
 * written once set), the extra tracked parameters (replaced, not written, by a reload) and the
 * client's startup settings. A hit costs a login no Map, Setting or message of its own. Bounded:
 * when full it starts over (the clients keep theirs).
 */
const frozenByLogin = new WeakMap<
  ReadonlyMap<string, string>,
  WeakMap<ReadonlySet<string>, Map<string, Frozen>>
>();
const MAX_FROZEN = 256;

function frozenFor(
  serverParams: ReadonlyMap<string, string>,
  trackExtra: ReadonlySet<string>,
): Map<string, Frozen> {
  let byExtra = frozenByLogin.get(serverParams);
  if (byExtra === undefined) {
    byExtra = new WeakMap();
    frozenByLogin.set(serverParams, byExtra);
  }
  let byStartup = byExtra.get(trackExtra);
  if (byStartup === undefined) {
    byStartup = new Map();
    byExtra.set(trackExtra, byStartup);
  }
  if (byStartup.size >= MAX_FROZEN) byStartup.clear();
  return byStartup;
}

const NO_SETTINGS: ReadonlyMap<string, Setting> = new Map();
const EMPTY = Buffer.alloc(0);
const NO_PENDING: readonly PendingSetting[] = [];

export class ClientSettings {
  /** Until login: this client's own (startup parameters). After: a Frozen map until written. */
  private wanted: Map<string, Setting> = NO_SETTINGS as Map<string, Setting>;
  /** ParameterStatus values as this client last saw them (canonical server names). */
  private reported: Map<string, string> = NO_SETTINGS as unknown as Map<string, string>;
  /** What login established (startup parameters), frozen: RESET goes back to these. */
  private login: Frozen | null = null;
  /** `wanted` / `reported` are this client's own (copied from the frozen ones, or before login). */
  private ownWanted = false;
  private ownReported = false;
  private pending: PendingSetting[] = NO_PENDING as PendingSetting[];

  get(lc: string): Setting | undefined {
    return this.wanted.get(lc);
  }

  set(lc: string, setting: Setting): void {
    this.writableWanted().set(lc, setting);
  }

  has(lc: string): boolean {
    return this.wanted.has(lc);
  }

  entries(): IterableIterator<[string, Setting]> {
    return this.wanted.entries();
  }

  /** `wanted`, this client's own: a copy (settings included) the first time after login. */
  private writableWanted(): Map<string, Setting> {
    if (!this.ownWanted) {
      const copy = new Map<string, Setting>();
      for (const [lc, st] of this.wanted) copy.set(lc, { ...st });
      this.wanted = copy;
      this.ownWanted = true;
    }
    return this.wanted;
  }

  private writableReported(): Map<string, string> {
    if (!this.ownReported) {
      this.reported = new Map(this.reported);
      this.ownReported = true;
    }
    return this.reported;
  }

  /**
   * Login completes with the parameters a server reported (`serverParams`): the client's own
   * values win, reported and `trackExtra` parameters are tracked from now on, and the settings
   * as login left them are remembered (RESET goes back to them). Returns what the client is told.
   * `serverParams` must not be written afterwards: the result is shared by what login starts from.
   */
  loggedIn(
    serverParams: ReadonlyMap<string, string>,
    trackExtra: ReadonlySet<string>,
  ): ReadonlyMap<string, string> {
    let startup = "";
    for (const [lc, st] of this.wanted) startup += `${lc}\0${st.name}\0${st.value}\0`;
    const known = frozenFor(serverParams, trackExtra);
    let frozen = known.get(startup);
    if (frozen === undefined) {
      const wanted = this.writableWanted();
      const reported = new Map<string, string>();
      for (const [name, value] of serverParams) {
        const lc = name.toLowerCase();
        const mine = wanted.get(lc);
        if (mine) mine.name = name;
        else if (TRACKED_PARAMETERS.has(lc) || trackExtra.has(lc)) wanted.set(lc, { name, value });
        reported.set(name, mine ? mine.value : value);
      }
      frozen = { wanted, reported, messages: null };
      known.set(startup, frozen);
    }
    this.login = frozen;
    this.wanted = frozen.wanted as Map<string, Setting>;
    this.reported = frozen.reported as Map<string, string>;
    this.ownWanted = false;
    this.ownReported = false;
    return this.reported;
  }

  /** ParameterStatus for each parameter loggedIn() reported, one buffer shared by its clients. */
  loginMessages(): Buffer {
    const login = this.login;
    if (login === null) return EMPTY;
    login.messages ??= Buffer.concat(
      [...login.reported].map(([name, value]) => msg.parameterStatus(name, value)),
    );
    return login.messages;
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
      if (mine && mine.value !== value) this.writableWanted().set(lc, { ...mine, value });
      if (this.reported.get(name) !== value && (mine || !this.reported.has(name))) {
        this.writableReported().set(name, value);
        return true;
      }
      return false;
    }
    if (this.reported.get(name) !== value) this.writableReported().set(name, value);
    if (mine) {
      if (mine.value !== value) this.writableWanted().set(lc, { ...mine, value });
    } else if (TRACKED_PARAMETERS.has(lc) || trackExtra.has(lc)) {
      this.writableWanted().set(lc, { name, value });
    }
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
      this.writableReported().set(name, wanted.value);
      tell(name, wanted.value);
    }
  }

  /**
   * The statements that bring `conn` to this client's settings, recording on `conn` what they
   * set; "" when it already matches. Parameters servers report are compared by value with what
   * `conn` reported instead.
   */
  sqlFor(conn: BackendConnection): string {
    // Clients that never changed a setting share one frozen record: a server found to match it
    // still does until our record of that server changes (most checkouts end here).
    const shared = this.ownWanted || this.ownReported ? null : this.login;
    if (shared !== null && conn.matchesSettings(shared)) return "";
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
    if (sql === "" && shared !== null) conn.rememberSettingsMatch(shared);
    return sql;
  }

  hold(change: PendingSetting): void {
    if (this.pending === NO_PENDING) this.pending = [];
    this.pending.push(change);
  }

  get hasPending(): boolean {
    return this.pending.length > 0;
  }

  dropPending(): void {
    this.pending = NO_PENDING as PendingSetting[];
  }

  /**
   * The unit that ran the pending SETs and RESETs ended cleanly on `conn`: the client expects
   * them everywhere from now on, and `conn` has them.
   */
  commitPending(conn: BackendConnection): void {
    for (const change of this.pending) {
      if ("set" in change) {
        const lc = change.set.name.toLowerCase();
        this.writableWanted().set(lc, {
          name: change.set.name,
          value: change.set.sql,
          sql: change.set.sql,
        });
        conn.recordSetting(lc, change.set.sql);
      } else if (change.reset === "all") {
        this.resetAll();
        conn.forgetSettings();
      } else {
        const lc = change.reset.toLowerCase();
        const initial = this.login?.wanted.get(lc);
        if (initial) this.writableWanted().set(lc, { ...initial });
        else if (this.wanted.has(lc)) this.writableWanted().delete(lc);
        conn.forgetSetting(lc);
      }
    }
    this.pending = NO_PENDING as PendingSetting[];
  }

  /**
   * RESET ALL / DISCARD ALL: back to what login established. Every parameter login set is still
   * wanted (a RESET puts its login value back), so that is the login record itself, shared again.
   */
  resetAll(): void {
    if (this.login === null) {
      if (this.wanted.size > 0) this.writableWanted().clear();
      return;
    }
    this.wanted = this.login.wanted as Map<string, Setting>;
    this.ownWanted = false;
  }
}

/**
 * The statement that gives a parameter a startup value (also the record of it on a server). It is
 * set_config, not SET: the value is read as Postgres reads a startup parameter, where `SET
 * search_path = 'a,b'` would make one schema named "a,b" of a list (GUC_LIST_QUOTE parameters).
 */
export function setStatement(name: string, value: string): string {
  return `SELECT pg_catalog.set_config(${quoteLiteral(name)}, ${quoteLiteral(value)}, false)`;
}

export function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_.]*$/i.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

export function quoteLiteral(value: string): string {
  const body = value.replaceAll("'", "''");
  return value.includes("\\") ? `E'${body.replaceAll("\\", "\\\\")}'` : `'${body}'`;
}
