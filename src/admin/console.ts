// AdminConsole: the `pgsidecar` admin database, answering SHOW POOLS | CLIENTS | SERVERS | STATS |
// CONFIG | VERSION and PAUSE, RESUME, RELOAD, RECONNECT over the simple query protocol, as
// PgBouncer's console does. Rows are text; passwords never appear.

import { readFileSync } from "node:fs";
import { describeConfig } from "../config/load.js";
import type { ClientSession } from "../frontend/client-session.js";
import { BackendCode } from "../protocol/codes.js";
import * as msg from "../protocol/messages.js";
import { BufferWriter } from "../protocol/writer.js";
import type { Sidecar } from "../proxy.js";

type Cell = string | number | boolean | null;
type Row = Record<string, Cell>;

const TEXT_OID = 25;
const INT8_OID = 20;

export class AdminConsole {
  readonly version = `pgsidecar ${packageVersion()}`;
  /** Re-reads the configuration (set by the CLI); RELOAD fails without it. */
  reloader: (() => void) | null = null;

  constructor(private readonly proxy: Sidecar) {}

  query(_session: ClientSession, sql: string): Buffer[] {
    const words = sql
      .trim()
      .replace(/;\s*$/, "")
      .split(/\s+/)
      .map((w) => w.toLowerCase());
    try {
      switch (words[0]) {
        case "show":
          return this.show(words[1] ?? "");
        case "pause":
          for (const p of this.selectPools(words[1])) p.pause();
          return [msg.commandComplete("PAUSE")];
        case "resume":
          for (const p of this.selectPools(words[1])) p.resume();
          return [msg.commandComplete("RESUME")];
        case "reconnect":
          for (const p of this.selectPools(words[1])) p.reconnectAll();
          return [msg.commandComplete("RECONNECT")];
        case "reload":
          if (!this.reloader)
            return [error("55000", "RELOAD is not available: no configuration source")];
          this.reloader();
          return [msg.commandComplete("RELOAD")];
        case "":
          return [msg.emptyQueryResponse];
        default:
          return [
            error(
              "42601",
              `unsupported admin command: ${words[0]}`,
              "Try SHOW POOLS, SHOW CLIENTS, SHOW SERVERS, SHOW STATS, SHOW CONFIG, SHOW VERSION, PAUSE, RESUME, RELOAD, RECONNECT.",
            ),
          ];
      }
    } catch (err) {
      return [error("XX000", (err as Error).message)];
    }
  }

  private selectPools(database: string | undefined) {
    const pools = [...this.proxy.pools.values()];
    return database ? pools.filter((p) => p.database === database) : pools;
  }

  private show(what: string): Buffer[] {
    switch (what) {
      case "pools":
        return table("SHOW", this.poolRows());
      case "clients":
        return table("SHOW", this.clientRows());
      case "servers":
        return table("SHOW", this.serverRows());
      case "stats":
        return table("SHOW", this.statsRows());
      case "config":
        return table(
          "SHOW",
          describeConfig(this.proxy.config).map((r) => ({
            key: r.key,
            value: r.value,
            default: r.default,
            source: r.source ?? "",
          })),
        );
      case "version":
        return table("SHOW", [{ version: this.version }]);
      default:
        return [
          error(
            "42601",
            `unknown SHOW target: ${what}`,
            "Try POOLS, CLIENTS, SERVERS, STATS, CONFIG, VERSION.",
          ),
        ];
    }
  }

  poolRows(): Row[] {
    return this.proxy.snapshot().map((p) => ({
      database: p.database,
      user: p.user,
      cl_active: p.clientsActive,
      cl_waiting: p.clientsWaiting,
      cl_idle: p.clientsIdle,
      sv_active: p.active,
      sv_idle: p.idle,
      sv_connecting: p.connecting,
      sv_checking: p.checking,
      maxwait_ms: this.proxy.pools.get(`${p.database}/${p.user}`)?.maxWaitMs ?? 0,
      pool_mode: this.proxy.config.databases[p.database]?.pool_mode ?? "",
      pool_size: this.proxy.pools.get(`${p.database}/${p.user}`)?.settings.poolSize ?? 0,
      paused: p.paused,
    }));
  }

  clientRows(): Row[] {
    const rows: Row[] = [];
    for (const s of this.proxy.sessions) {
      rows.push({
        id: s.id,
        user: s.user,
        database: s.database,
        state: s.state,
        application_name: s.applicationName,
        connect_time: new Date(s.connectedAt).toISOString(),
        server_id: s.lease?.id ?? null,
        tx_status: String.fromCharCode(s.txStatus),
        pins: [...s.pins].join(","),
        prepared_statements: s.preparedCount,
      });
    }
    return rows;
  }

  serverRows(): Row[] {
    const rows: Row[] = [];
    for (const pool of this.proxy.pools.values()) {
      const add = (conn: (typeof pool.idle)[number], state: string) => {
        rows.push({
          id: conn.id,
          database: pool.database,
          user: pool.user,
          state,
          address: conn.address,
          pid: conn.pid,
          connect_time: new Date(conn.createdAt).toISOString(),
          idle_seconds: state === "idle" ? Math.round((Date.now() - conn.idleSince) / 1000) : 0,
          tx_status: String.fromCharCode(conn.txStatus),
          pins: [...conn.pins].join(","),
          prepared_statements: conn.prepared.size,
        });
      };
      for (const c of pool.active) add(c, "active");
      for (const c of pool.idle) add(c, "idle");
      for (const c of pool.maintaining) add(c, "checking");
      for (const c of pool.connecting) add(c, "connecting");
    }
    return rows;
  }

  private statsRows(): Row[] {
    const m = this.proxy.metrics;
    const rows: Row[] = [];
    const queries = counterValues(m.queries);
    const transactions = counterValues(m.transactions);
    for (const pool of this.proxy.pools.values()) {
      const key = `${pool.database}\u0000${pool.user}`;
      rows.push({
        database: pool.database,
        user: pool.user,
        total_query_count: queries.get(key) ?? 0,
        total_xact_count: transactions.get(key) ?? 0,
        sv_opened: counterValues(m.serversOpened).get(key) ?? 0,
      });
    }
    return rows;
  }
}

/** Sums a labelled counter per (database, user) synchronously, from prom-client's internal hash. */
function counterValues(counter: unknown): Map<string, number> {
  const out = new Map<string, number>();
  const hashMap =
    (counter as { hashMap?: Record<string, { value: number; labels: Record<string, string> }> })
      .hashMap ?? {};
  for (const entry of Object.values(hashMap)) {
    const key = `${entry.labels.database}\u0000${entry.labels.user}`;
    out.set(key, (out.get(key) ?? 0) + entry.value);
  }
  return out;
}

function error(code: string, message: string, hint?: string): Buffer {
  return msg.errorResponse({ severity: "ERROR", code, message, hint });
}

/** RowDescription + DataRows (text) + CommandComplete for a list of uniform rows. */
export function table(tag: string, rows: Row[]): Buffer[] {
  const out: Buffer[] = [];
  const columns = rows.length > 0 ? Object.keys(rows[0]) : [];
  const desc = new BufferWriter().int16(columns.length);
  for (const col of columns) {
    const numeric = typeof rows[0][col] === "number";
    desc
      .cstring(col)
      .int32(0)
      .int16(0)
      .int32(numeric ? INT8_OID : TEXT_OID)
      .int16(-1)
      .int32(-1)
      .int16(0);
  }
  out.push(desc.flush(BackendCode.RowDescription));
  for (const row of rows) {
    const w = new BufferWriter().int16(columns.length);
    for (const col of columns) {
      const v = row[col];
      if (v === null || v === undefined) w.int32(-1);
      else {
        const bytes = Buffer.from(String(v));
        w.int32(bytes.length).bytes(bytes);
      }
    }
    out.push(w.flush(BackendCode.DataRow));
  }
  out.push(msg.commandComplete(`${tag} ${rows.length}`));
  return out;
}

function packageVersion(): string {
  try {
    // dist/admin/console.js -> ../../package.json
    const url = new URL("../../package.json", import.meta.url);
    return JSON.parse(readFileSync(url, "utf8")).version;
  } catch {
    return "0.1.0";
  }
}
