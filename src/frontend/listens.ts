// ClientListens: LISTEN / UNLISTEN in transaction mode without pins. The pool's listening server
// listens for the client (NotificationHub), and notifications are queued here until the client
// is between transactions, as Postgres delivers them. Created on the client's first LISTEN.

import type { BackendConnection } from "../backend/backend-connection.js";
import type { ProxyError } from "../errors.js";
import { TxStatus } from "../protocol/codes.js";
import * as msg from "../protocol/messages.js";
import { PinReason } from "../reasons.js";
import type { ClientWire } from "./client-wire.js";
import type { Wait } from "./login.js";
import type { NotificationHub, Subscriber } from "./notification-hub.js";
import { type ListenCommand, listenCommand } from "./unit-frames.js";

/** Notifications kept for a client while it is in a transaction; more are dropped (and counted). */
const MAX_QUEUED_NOTIFICATIONS = 1000;

/** What LISTEN needs of its session. */
export interface ListensOwner {
  readonly wire: ClientWire;
  readonly closed: boolean;
  /** The client is between transactions with nothing in flight or awaited. */
  readonly quiet: boolean;
  readonly txStatus: number;
  /** Messages that came while a LISTEN was answered open a unit. */
  readonly unit: { readonly open: boolean };
  waitFor(wait: Wait): void;
  waitOver(): void;
  requestServer(): void;
  flushClient(): void;
  reportError(err: ProxyError): void;
  countDropped(n: number): void;
}

export class ClientListens implements Subscriber {
  /** Notifications waiting for the client's transaction to end; created when one arrives. */
  private queued: Buffer[] | null = null;
  private dropped = 0;
  /** UNLISTENs of the current unit, applied when it ends. */
  private unlistenAfterUnit: Array<string | null> | null = null;
  /** The client LISTENed through the hub (its subscriptions end with it). */
  private subscribed = false;

  constructor(
    private readonly owner: ListensOwner,
    private readonly hub: NotificationHub,
  ) {}

  /**
   * A lone LISTEN / UNLISTEN with no server held: the pool's listening server listens for the
   * client. LISTEN is answered once that server listens; the client's next messages wait
   * meanwhile, as they would for a server.
   */
  answer(command: ListenCommand): void {
    const owner = this.owner;
    let answered = false;
    if ("unlisten" in command) {
      // After a round trip to the listening server: the client's own earlier NOTIFYs arrive first.
      this.hub.unlisten(command.unlisten, this, () => {
        answered = true;
        if (owner.closed) return;
        owner.waitOver();
        owner.wire.write(msg.commandComplete("UNLISTEN"));
        this.afterWait();
      });
      if (!answered) owner.waitFor({ cancel: () => {} });
      return;
    }
    this.subscribed = true;
    const cancel = this.hub.listen(command.listen, this, (err) => {
      answered = true;
      if (owner.closed) return;
      owner.waitOver();
      if (err) owner.reportError(err);
      else owner.wire.write(msg.commandComplete("LISTEN"));
      this.afterWait();
    });
    if (!answered) owner.waitFor({ cancel });
  }

  /** A LISTEN / UNLISTEN we answered is done: its ReadyForQuery, then what came meanwhile. */
  private afterWait(): void {
    const owner = this.owner;
    owner.wire.write(msg.readyForQuery(owner.txStatus));
    owner.flushClient();
    if (owner.unit.open) owner.requestServer();
    else this.flush();
  }

  /**
   * LISTEN / UNLISTEN inside a unit (after other statements of a pipeline), on `conn`: served by
   * the pool's listening server when that needs no wait, answered in stream order (the command
   * tag); else null (LISTEN of a channel nobody listens to yet): sent to the server, which pins
   * the client.
   */
  static commandInUnit(
    conn: BackendConnection,
    buf: Buffer,
    start: number,
    end: number,
  ): ListenCommand | null {
    if (conn.skipping || conn.txStatus !== TxStatus.Idle) return null;
    if (conn.pins.has(PinReason.Listen)) return null; // its server listens for it already
    return listenCommand(buf, start, end);
  }

  /** A LISTEN / UNLISTEN of a unit (see commandInUnit): its command tag, or null to send it on. */
  inUnit(command: ListenCommand): string | null {
    if ("unlisten" in command) {
      if (!this.subscribed) return null;
      // Applied once the unit ended (after its own NOTIFYs were delivered).
      this.unlistenAfterUnit ??= [];
      this.unlistenAfterUnit.push(command.unlisten);
      return "UNLISTEN";
    }
    if (!this.hub.isListening(command.listen)) return null;
    this.subscribed = true;
    this.hub.listen(command.listen, this, () => {});
    return "LISTEN";
  }

  /** The unit ended: its UNLISTENs apply now. */
  unitOver(): void {
    const channels = this.unlistenAfterUnit;
    if (channels === null) return;
    this.unlistenAfterUnit = null;
    for (const channel of channels) this.hub.unlisten(channel, this, () => {});
  }

  /** DISCARD ALL, or the client left: every subscription ends. */
  unlistenAll(): void {
    if (this.subscribed) this.hub.unlisten(null, this);
  }

  /** The client left: nothing more is delivered. */
  close(): void {
    this.unlistenAll();
    this.queued = null;
  }

  notify(frame: Buffer): void {
    if (this.queued === null) this.queued = [];
    if (this.queued.length >= MAX_QUEUED_NOTIFICATIONS) {
      this.dropped++;
      return;
    }
    this.queued.push(frame);
    this.flush();
  }

  listenerLost(): void {
    this.notify(
      msg.noticeResponse({
        severity: "WARNING",
        code: "01000",
        message:
          "pgsidecar: the connection that LISTENs for this client was lost and replaced; notifications may have been missed",
      }),
    );
  }

  /** Notifications reach the client between transactions, as Postgres delivers them. */
  flush(): void {
    const queued = this.queued;
    const owner = this.owner;
    if (queued === null || queued.length === 0) return;
    if (!owner.quiet || owner.closed) return;
    this.queued = null;
    for (const frame of queued) owner.wire.write(frame);
    if (this.dropped > 0) {
      owner.countDropped(this.dropped);
      owner.wire.write(
        msg.noticeResponse({
          severity: "WARNING",
          code: "01000",
          message: `pgsidecar: ${this.dropped} notifications were dropped: more than ${MAX_QUEUED_NOTIFICATIONS} arrived while this client was busy`,
        }),
      );
      this.dropped = 0;
    }
    owner.flushClient();
  }
}
