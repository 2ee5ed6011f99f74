// NotificationHub: LISTEN/NOTIFY in transaction mode without pins (issue 13 item 1). One
// dedicated server per pool LISTENs to the union of the channels its clients listen to; each
// NotificationResponse it receives is fanned out to the clients subscribed to that channel. A
// client's LISTEN is answered once the dedicated server listens (a NOTIFY sent after the client's
// LISTEN returned is never missed); when that server dies, a new one LISTENs again and each
// subscriber is told that notifications may have been missed in between (Postgres itself offers
// nothing stronger across a reconnect).

import type { BackendConnection, BackendListener } from "../backend/backend-connection.js";
import { Action } from "../backend/expected-responses.js";
import {
  DisconnectReason,
  type ProxyError,
  ProxyErrorReason,
  proxyError,
  type ServerError,
} from "../errors.js";
import type { Logger } from "../log.js";
import { FrontendCode } from "../protocol/codes.js";
import * as msg from "../protocol/messages.js";
import { quoteIdent } from "./client-settings.js";

export interface Subscriber {
  /** A NotificationResponse (the whole frame) on a channel it listens to. */
  notify(frame: Buffer): void;
  /** The listening server was replaced: notifications in between may have been lost. */
  listenerLost(): void;
}

export interface HubEvents {
  /** The listening server died and is being replaced (pgsidecar_listener_reconnects_total). */
  listenerLost(): void;
  /** A notification reached `n` subscribers. */
  delivered(n: number): void;
}

interface Channel {
  readonly subscribers: Set<Subscriber>;
  /** LISTENs waiting for the server to listen to this channel. */
  waiting: Array<(err: ProxyError | null) => void>;
}

const RECONNECT_MIN_MS = 200;
const RECONNECT_MAX_MS = 5000;

export class NotificationHub implements BackendListener {
  private conn: BackendConnection | null = null;
  private connecting = false;
  private readonly channels = new Map<string, Channel>();
  /** Channels the server confirmed it listens to. */
  private listening = new Set<string>();
  /** The channel set a LISTEN/UNLISTEN query in flight will leave the server with. */
  private syncing: Set<string> | null = null;
  /** A query is in flight on the server (LISTEN/UNLISTEN, or a barrier). */
  private inFlight = false;
  /** Run after the next query's round trip (UNLISTEN barriers), and those of the query in flight. */
  private barriers: Array<() => void> = [];
  private inFlightBarriers: Array<() => void> = [];
  private retryMs = RECONNECT_MIN_MS;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly openServer: () => Promise<BackendConnection>,
    private readonly log: Logger,
    private readonly events: HubEvents,
    /** How long a LISTEN waits for a listening server (query_wait_timeout). */
    private readonly waitTimeoutMs: () => number,
  ) {}

  /** Channels with at least one subscriber. */
  get channelCount(): number {
    return this.channels.size;
  }

  /**
   * Subscribes `s` to `channel`; `done` runs once the server listens to it (at once if it
   * already does), or with an error when no server could be had within the wait timeout.
   * Returns a cancel function for a subscriber that leaves while waiting.
   */
  listen(channel: string, s: Subscriber, done: (err: ProxyError | null) => void): () => void {
    let ch = this.channels.get(channel);
    if (ch === undefined) {
      ch = { subscribers: new Set(), waiting: [] };
      this.channels.set(channel, ch);
    }
    ch.subscribers.add(s);
    if (this.isListening(channel)) {
      done(null);
      return () => {};
    }
    let finished = false;
    const timeoutMs = this.waitTimeoutMs();
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            finish(
              proxyError(
                ProxyErrorReason.ListenTimeout,
                `no server connection to LISTEN on within query_wait_timeout (${timeoutMs} ms)`,
              ),
            );
          }, timeoutMs)
        : null;
    timer?.unref?.();
    const finish = (err: ProxyError | null) => {
      if (finished) return;
      finished = true;
      if (timer) clearTimeout(timer);
      if (err) this.unlisten(channel, s);
      done(err);
    };
    if (this.retryTimer && ![...this.channels.values()].some((c) => c.waiting.length > 0)) {
      // Nobody was waiting for the retry (earlier LISTENs gave up): this one starts afresh.
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.retryMs = RECONNECT_MIN_MS;
    }
    ch.waiting.push(finish);
    this.sync();
    return () => {
      finished = true;
      if (timer) clearTimeout(timer);
    };
  }

  /** Whether the server already listens to `channel` (a LISTEN of it needs no wait). */
  isListening(channel: string): boolean {
    return this.listening.has(channel) && (this.syncing === null || this.syncing.has(channel));
  }

  /**
   * Unsubscribes `s` from `channel`, or from every channel (null: UNLISTEN *). With `done`, only
   * after a round trip to the listening server: notifications of NOTIFYs that committed before
   * the UNLISTEN (the client's own, just sent) reach the server first, and so the client.
   */
  unlisten(channel: string | null, s: Subscriber, done?: () => void): void {
    if (done !== undefined && this.conn !== null) {
      this.barriers.push(() => {
        this.unlisten(channel, s);
        done();
      });
      this.sync();
      return;
    }
    if (channel === null) {
      for (const name of [...this.channels.keys()]) this.unlisten(name, s);
      return;
    }
    const ch = this.channels.get(channel);
    if (ch === undefined || !ch.subscribers.delete(s)) return;
    if (ch.subscribers.size === 0) {
      this.channels.delete(channel);
      this.sync();
    }
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.conn?.destroy(DisconnectReason.Shutdown);
    this.conn = null;
  }

  // --- the listening server --------------------------------------------------------------------

  /** Brings the server's LISTEN set to the subscribed channels, one query at a time. */
  private sync(): void {
    if (this.closed || this.inFlight) return;
    if (this.conn === null && this.barriers.length > 0) {
      // Nothing listens: nothing is in flight to wait for.
      const barriers = this.barriers;
      this.barriers = [];
      for (const b of barriers) b();
    }
    if (this.channels.size === 0 && this.conn !== null && this.listening.size === 0) {
      // Nobody listens: no server kept open for nothing (scale-to-zero friendly).
      const conn = this.conn;
      this.conn = null;
      conn.listener = null;
      conn.destroy(DisconnectReason.IdleTimeout);
      this.sync(); // barriers waiting for it need no round trip now
      return;
    }
    if (this.conn === null) {
      if (this.channels.size > 0) this.connect();
      return;
    }
    let sql = "";
    for (const name of this.channels.keys()) {
      if (!this.listening.has(name)) sql += `LISTEN ${quoteIdent(name)};`;
    }
    for (const name of this.listening) {
      if (!this.channels.has(name)) sql += `UNLISTEN ${quoteIdent(name)};`;
    }
    if (sql === "") {
      this.confirm();
      if (this.barriers.length === 0) return;
      sql = ";"; // a round trip, nothing more
    } else this.syncing = new Set(this.channels.keys());
    this.inFlight = true;
    this.inFlightBarriers = this.barriers;
    this.barriers = [];
    this.conn.expect(FrontendCode.Query, Action.Ignore);
    this.conn.write(msg.query(sql));
  }

  private connect(): void {
    if (this.connecting || this.retryTimer) return;
    this.connecting = true;
    this.openServer().then(
      (conn) => {
        this.connecting = false;
        if (this.closed) {
          conn.destroy(DisconnectReason.Shutdown);
          return;
        }
        this.retryMs = RECONNECT_MIN_MS;
        this.conn = conn;
        this.listening = new Set();
        conn.listener = this;
        this.log.debug({ server: conn.id }, "LISTEN server connected");
        this.sync();
      },
      (err: Error) => {
        this.connecting = false;
        this.log.warn({ err: err.message }, "LISTEN server connection failed");
        this.retryLater();
      },
    );
  }

  private retryLater(): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.sync();
    }, this.retryMs);
    this.retryTimer.unref?.();
    this.retryMs = Math.min(this.retryMs * 2, RECONNECT_MAX_MS);
  }

  /** Runs the LISTENs waiting for channels the server now listens to. */
  private confirm(): void {
    for (const [name, ch] of this.channels) {
      if (!this.listening.has(name) || ch.waiting.length === 0) continue;
      const waiting = ch.waiting;
      ch.waiting = [];
      for (const done of waiting) done(null);
    }
  }

  // --- BackendListener ---------------------------------------------------------------------------

  forward(): void {
    // Replies to our own LISTEN / UNLISTEN (ignored; errors are logged at ready()).
  }

  forwardAsync(buf: Buffer, start: number, end: number): void {
    if (buf[start] !== 0x41 /* A: NotificationResponse */) return;
    const nameStart = start + 9;
    const nameEnd = buf.indexOf(0, nameStart);
    if (nameEnd < 0 || nameEnd >= end) return;
    const ch = this.channels.get(buf.toString("utf8", nameStart, nameEnd));
    if (ch === undefined) return;
    const frame = Buffer.from(buf.subarray(start, end));
    for (const s of ch.subscribers) s.notify(frame);
    this.events.delivered(ch.subscribers.size);
  }

  insert(): void {}

  chunkEnd(): void {}

  ready(): void {
    this.listening = this.syncing ?? this.listening;
    this.syncing = null;
    this.inFlight = false;
    const barriers = this.inFlightBarriers;
    this.inFlightBarriers = [];
    for (const b of barriers) b();
    this.confirm();
    this.sync();
  }

  lost(reason: DisconnectReason, error: ServerError | null): void {
    const hadListeners = this.listening.size > 0;
    this.conn = null;
    this.listening = new Set();
    this.syncing = null;
    this.inFlight = false;
    this.barriers.unshift(...this.inFlightBarriers);
    this.inFlightBarriers = [];
    if (this.closed) return;
    this.log.info({ reason, sqlstate: error?.sqlstate }, "LISTEN server lost; listening again");
    if (hadListeners) {
      this.events.listenerLost();
      const told = new Set<Subscriber>();
      for (const ch of this.channels.values()) {
        for (const s of ch.subscribers) {
          if (told.has(s)) continue;
          told.add(s);
          s.listenerLost();
        }
      }
    }
    this.retryLater();
  }
}
