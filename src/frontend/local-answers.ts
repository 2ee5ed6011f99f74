// Answers a session gives without a server: messages that need none while the client has nothing
// outstanding (a lone Sync or Flush, a Parse some server already accepted, closing a named
// statement, DEALLOCATE / DISCARD ALL of the client's own names, LISTEN through the pool's
// LISTEN server), and the admin console's simple-query protocol.

import type { Pool } from "../backend/pool.js";
import { type ProxyError, ProxyErrorReason, proxyError } from "../errors.js";
import { FrontendCode, TxStatus } from "../protocol/codes.js";
import * as msg from "../protocol/messages.js";
import { ClientCloseReason } from "../reasons.js";
import type { ClientSettings } from "./client-settings.js";
import type { ClientStatements } from "./client-statements.js";
import type { ClientWire } from "./client-wire.js";
import type { ClientListens } from "./listens.js";
import type { NotificationHub } from "./notification-hub.js";
import type { StatementLookup } from "./session-context.js";
import { listenCommand } from "./unit-frames.js";

const HEADER = 5;

/** What local answers read of their session. */
export interface LocalOwner {
  readonly wire: ClientWire;
  readonly txStatus: number;
  readonly statements: ClientStatements;
  readonly settings: ClientSettings;
  /** Transaction pooling, and its pool; null in session mode. */
  readonly transactionPool: Pool | null;
  /** Named statements get content names (transaction mode, max_prepared_statements > 0). */
  readonly namesStatements: boolean;
  readonly hub: NotificationHub | null;
  listens(hub: NotificationHub): ClientListens;
  /** The client's LISTENs end (DISCARD ALL). */
  unlistenAll(): void;
  countStatement(kind: StatementLookup): void;
}

/**
 * Messages that need no server when the client has nothing outstanding: a lone Sync or Flush,
 * closing a named statement, and SQL that only manages the client's own statements. True when
 * answered.
 */
export function answerLocally(
  owner: LocalOwner,
  code: number,
  buf: Buffer,
  start: number,
  end: number,
): boolean {
  const { wire, statements } = owner;
  const pool = owner.transactionPool;
  switch (code) {
    case FrontendCode.Sync:
      wire.write(msg.readyForQuery(owner.txStatus));
      return true;
    case FrontendCode.Flush:
      return true;
    case FrontendCode.Parse: {
      // A named statement some server already accepted needs no server now: it is prepared
      // wherever the client's Bind lands. This saves psycopg's prepare round trip, and keeps a
      // client that prepares synchronously (pgbench -M prepared) from waiting for a server.
      if (pool === null || !owner.namesStatements) return false;
      const nameEnd = buf.indexOf(0, start + HEADER);
      if (nameEnd === start + HEADER) return false;
      const stmt = statements.register(buf, start, end, nameEnd, true);
      if (stmt.sessionChange !== null || !pool.knownStatements.has(stmt.serverName)) return false;
      owner.countStatement("hit");
      wire.write(msg.parseComplete);
      return true;
    }
    case FrontendCode.Close: {
      if (pool === null || buf[start + HEADER] !== 0x53) return false;
      statements.delete(buf.toString("utf8", start + HEADER + 1, end - 1));
      wire.write(msg.closeComplete);
      return true;
    }
    case FrontendCode.Query: {
      if (pool === null) return false;
      const hub = owner.hub;
      if (hub && owner.txStatus === TxStatus.Idle) {
        const command = listenCommand(buf, start + HEADER, end - 1);
        if (command !== null) {
          owner.listens(hub).answer(command);
          return true;
        }
      }
      const tag = statements.applySql(
        buf,
        start + HEADER,
        end - 1,
        owner.txStatus === TxStatus.Idle,
      );
      if (tag === null) return false;
      wire.write(msg.commandComplete(tag));
      if (tag === "DISCARD ALL") {
        // Settings go back to what login established; the client hears of each reported
        // parameter that changes, as Postgres reports them.
        owner.unlistenAll();
        owner.settings.discardAll((name, value) => wire.write(msg.parameterStatus(name, value)));
      }
      wire.write(msg.readyForQuery(owner.txStatus));
      return true;
    }
    default:
      return false;
  }
}

/** What the admin console protocol needs of its session. */
export interface AdminOwner {
  readonly wire: ClientWire;
  /** SHOW, PAUSE, RELOAD ...: the console's answer, before ReadyForQuery. */
  adminQuery(sql: string): Buffer[];
  reportError(err: ProxyError): void;
  close(reason: ClientCloseReason): void;
}

/** A message of an admin console session: simple queries only (psql's extended Sync is answered). */
export function answerAdmin(
  owner: AdminOwner,
  code: number,
  buf: Buffer,
  start: number,
  end: number,
): void {
  const wire = owner.wire;
  if (code === FrontendCode.Terminate) {
    owner.close(ClientCloseReason.ClientExit);
    return;
  }
  if (code !== FrontendCode.Query) {
    if (code === FrontendCode.Sync) wire.write(msg.readyForQueryIdle);
    else if (code === FrontendCode.Parse) {
      owner.reportError(proxyError(ProxyErrorReason.AdminExtended));
    }
    wire.flush();
    return;
  }
  for (const b of owner.adminQuery(buf.toString("utf8", start + HEADER, end - 1))) wire.write(b);
  wire.write(msg.readyForQueryIdle);
  wire.flush();
}
