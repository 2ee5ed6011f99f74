// AdminConsole: the `pgsidecar` admin database, answering SHOW POOLS | CLIENTS | SERVERS | STATS |
// CONFIG | VERSION and PAUSE, RESUME, RELOAD, RECONNECT over the simple query protocol, as
// PgBouncer's console does. Rows are text; passwords never appear.

import { describeConfig } from "../config/load.js";
import type { ClientSession } from "../frontend/client-session.js";
import { BackendCode } from "../protocol/codes.js";
import * as msg from "../protocol/messages.js";
import { BufferWriter } from "../protocol/writer.js";
import type { Sidecar } from "../proxy.js";
import { packageVersion } from "../version.js";

type Cell = string | number | boolean | null;
type Row = Record<string, Cell>;

const TEXT_OID = 25;
const INT8_OID = 20;

export class AdminConsole {
  readonly version = `pgsidecar ${packageVersion}`;
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
      maxwait_ms: Math.round(p.maxWaitSeconds * 1000),
      pool_mode: this.proxy.databaseConfig(p.database)?.pool_mode ?? "",
      pool_size: p.poolSize,
      paused: p.paused,
      upstream_up: p.upstreamUp,
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

  /** Totals since start per pool, from the same numbers /metrics exports. Times in microseconds. */
  statsRows(): Row[] {
    const us = (seconds: number) => Math.round(seconds * 1e6);
    const rows: Row[] = [];
    for (const s of this.proxy.metrics.pools.values()) {
      let closed = 0;
      for (const n of s.serversClosed.values()) closed += n;
      let failures = 0;
      for (const n of s.connectFailures.values()) failures += n;
      let errors = 0;
      for (const n of s.clientErrors.values()) errors += n;
      let pins = 0;
      for (const n of s.pins.values()) pins += n;
      const q = s.querySeconds;
      const x = s.transactionSeconds;
      const w = s.checkoutWait;
      rows.push({
        database: s.database,
        user: s.user,
        total_xact_count: s.transactions,
        total_query_count: s.queries,
        total_xact_time: us(x.sum),
        total_query_time: us(q.sum),
        total_wait_time: us(w.sum),
        avg_xact_time: x.count ? us(x.sum / x.count) : 0,
        avg_query_time: q.count ? us(q.sum / q.count) : 0,
        avg_wait_time: w.count ? us(w.sum / w.count) : 0,
        sv_opened: s.serversOpened,
        sv_closed: closed,
        connect_failures: failures,
        client_errors: errors,
        replays_succeeded: s.replays.succeeded,
        replays_gave_up: s.replays.gave_up,
        replays_not_retryable: s.replays.not_retryable,
        pins,
        prepared_hits: s.statements.hit,
        prepared_misses: s.statements.miss,
        prepared_reprepares: s.statements.reprepare,
      });
    }
    return rows;
  }
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
