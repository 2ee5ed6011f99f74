// BackendConnection: one upstream socket. Logs in (ServerLogin), then scans the server's messages
// by header and passes them to whoever holds the lease; what the server's session holds (replies
// owed, statements, settings, pins) is tracked by its ServerSession half. It knows the
// transaction status and whether it is fit for reuse (`bad`).

import net from "node:net";
import * as clock from "../clock.js";
import {
  DisconnectReason,
  ProxyErrorReason,
  proxyError,
  reasonForFatal,
  type ServerError,
  serverErrorFrom,
} from "../errors.js";
import { BackendCode, TxStatus } from "../protocol/codes.js";
import { FrameScanner, type FrameSink, streamedCodes } from "../protocol/frame-scanner.js";
import * as msg from "../protocol/messages.js";
import { Action } from "./expected-responses.js";
import { type BackendOptions, isCertificateError, ServerLogin } from "./server-login.js";
import { errorCodeIs, isFatal, namesServerStatement } from "./server-messages.js";
import { ServerSession } from "./server-session.js";
import { roleFits, serverRole } from "./upstream.js";

export type { BackendOptions } from "./server-login.js";

/** Whoever holds a backend (a client session, or the pool's own check/reset) hears its replies. */
export interface BackendListener {
  /** Server bytes to pass on to the client, as a range of a received chunk. */
  forward(buf: Buffer, start: number, end: number): void;
  /** Server bytes that are not part of any reply (notices, notifications, parameter changes). */
  forwardAsync(buf: Buffer, start: number, end: number): void;
  /** Whatever was held back must reach the client now (it has to act on it). */
  mustFlush?(): void;
  /** A reply we answer ourselves (ParseComplete, CloseComplete), in stream order. */
  insert(bytes: Buffer): void;
  /** The end of one received chunk: flush what was forwarded. */
  chunkEnd(): void;
  /** A ReadyForQuery after which nothing more is owed. */
  ready(status: number): void;
  /** A ReadyForQuery of a pipeline with more Syncs still owed. */
  synced?(status: number): void;
  /** An ErrorResponse that names a server-side statement (pgsc_...): the client knows another. */
  renamedError?(buf: Buffer, start: number, end: number): void;
  /** A NotificationResponse from a NOTIFY this server itself ran (it carries the server's pid). */
  ownNotification?(buf: Buffer, start: number, end: number): void;
  /** A ParameterStatus from the server (recorded in `params`; forwarded by us unless `ignored`). */
  parameter?(name: string, value: string, ignored: boolean): void;
  /** The connection died while leased. */
  lost(reason: DisconnectReason, error: ServerError | null): void;
}

const BACKEND_STREAMED = streamedCodes(BackendCode.DataRow, BackendCode.CopyData);
/** Server messages are trusted but bounded: 1 GB is Postgres's own limit on a field. */
const MAX_SERVER_MESSAGE = 0x40000000 + 1024;

let nextId = 1;

export class BackendConnection extends ServerSession implements FrameSink {
  readonly id = nextId++;
  /** ParameterStatus values as this server last reported them. */
  readonly params = new Map<string, string>();
  pid = 0;
  secret: Buffer = Buffer.alloc(0);
  txStatus: number = TxStatus.Idle;
  readonly createdAt = clock.now();
  /** When the connection last went idle in the pool; drives server_idle_timeout. */
  idleSince = clock.now();
  /** When bytes last arrived from the server: proof of life (server_check_delay, response_timeout). */
  lastReceivedAt = clock.now();
  /** When bytes were last written to the server. */
  lastSentAt = 0;
  /** Set once the connection must not be reused; the reason is recorded when it closes. */
  bad = false;
  closeReason: DisconnectReason | null = null;
  listener: BackendListener | null = null;
  /**
   * The server's kernel reset the connection: the server closed with bytes of ours unread (or
   * was gone before they arrived). Linux sends a FIN, not a reset, when everything was read.
   */
  resetByPeer = false;
  /** ErrorResponses received while leased (did a unit end cleanly?). */
  errors = 0;
  /** 25006 read_only_sql_transaction errors received (a failover's refusal, if the role changed). */
  readOnlyRefusals = 0;
  /** The server reported a role that no longer fits target_session_attrs (it is retired). */
  roleMismatch = false;
  /** Bytes written since the lease began (for "was anything sent" decisions). */
  bytesSent = 0;
  /** Called once when the connection is gone, whatever the cause. */
  onClose: ((conn: BackendConnection) => void) | null = null;

  private socket: net.Socket | null = null;
  private readonly scanner = new FrameScanner(MAX_SERVER_MESSAGE, BACKEND_STREAMED);
  /** Until the server's first ReadyForQuery. */
  private login: ServerLogin | null = null;
  private loggedIn = false;
  /** Action applied to the pieces of a streamed message still arriving. */
  private streamAction: Action = Action.Forward;
  private fatal: ServerError | null = null;
  private closed = false;

  constructor(readonly options: BackendOptions) {
    super(options.maxPreparedStatements, options.knownStatements ?? null);
  }

  get address(): string {
    const a = this.options.address;
    return "path" in a ? a.path : `${a.host}:${a.port}`;
  }

  /** Opens the socket (with TLS per sslmode) and logs in. Rejects with ServerError or ProxyError. */
  connect(): Promise<void> {
    const conn = this;
    this.login = new ServerLogin(this.options, {
      get socket() {
        return conn.socket;
      },
      get closed() {
        return conn.closed;
      },
      get address() {
        return conn.address;
      },
      attach: (sock) => this.attach(sock),
      fail: (err, reason) => this.fail(err, reason),
    });
    return this.login.start();
  }

  private attach(sock: net.Socket): void {
    this.socket = sock;
    sock.on("data", (chunk: Buffer) => this.onData(chunk));
    sock.on("error", (err: NodeJS.ErrnoException) => this.onSocketGone(err));
    sock.on("close", () => this.onSocketGone(null));
    sock.on("end", () => sock.destroy());
  }

  /** A bug met while handling this server's bytes (the connection was destroyed for it). */
  internalError: Error | null = null;

  private onData(chunk: Buffer): void {
    try {
      this.lastReceivedAt = clock.now();
      if (this.login?.sslAnswer(chunk)) return;
      this.scanner.push(chunk, this);
    } catch (err) {
      // Last resort: nothing escapes a socket handler (it would end the process). Only this
      // connection goes; its client hears of a lost server, the pool counts and logs the reason.
      if (this.internalError !== null) return;
      this.internalError = err instanceof Error ? err : new Error(String(err));
      try {
        this.fail(proxyError(ProxyErrorReason.ServerInternalError), DisconnectReason.ProtocolError);
      } catch {
        this.socket?.destroy(); // the listener failed as well: at least the socket goes
      }
    }
  }

  // --- FrameSink -------------------------------------------------------------------------------

  onMessage(code: number, buf: Buffer, start: number, end: number): void {
    if (!this.loggedIn) return this.onLoginMessage(code, buf, start, end);
    const l = this.listener;
    if (l === null) return this.onIdleMessage(code, buf, start, end);

    switch (code) {
      case BackendCode.NoticeResponse:
        // "terminating connection because of crash of another server process" (57P02) precedes
        // the close: the client will hear of the loss through us, not through a stray warning.
        if (errorCodeIs(buf, start, end, "57P02")) return;
        l.forwardAsync(buf, start, end);
        return;
      case BackendCode.NotificationResponse:
        // A NOTIFY the client's own session sent names the client's (proxy-issued) pid.
        if (l.ownNotification && end - start >= 9 && buf.readInt32BE(start + 5) === this.pid) {
          l.ownNotification(buf, start, end);
        } else l.forwardAsync(buf, start, end);
        return;
      case BackendCode.ParameterStatus: {
        const ignored = !this.owed.empty && this.owed.headAction === Action.Ignore;
        this.recordParameter(buf, start, end, l, ignored);
        if (!ignored) l.forwardAsync(buf, start, end);
        return;
      }
      case BackendCode.ErrorResponse:
        if (isFatal(buf, start, end)) {
          this.fatal = serverErrorFrom(buf, start, end);
          this.bad = true;
          return; // never forwarded: the close that follows is reported as a lost connection
        }
        this.errors++;
        if (errorCodeIs(buf, start, end, "25006")) this.readOnlyRefusals++;
        break;
    }

    this.emitSimulated(l);
    const ex = this.owed;
    if (ex.empty) {
      // Nothing owed (e.g. after a client's CopyDone the server still completes): pass it on.
      l.forward(buf, start, end);
      return;
    }
    const action = ex.headAction;
    this.streamAction = action;
    // Errors always reach the client, even for requests we injected (a re-Parse that now fails).
    if (
      code === BackendCode.ErrorResponse &&
      l.renamedError &&
      namesServerStatement(buf, start, end)
    ) {
      l.renamedError(buf, start, end);
    } else if (action === Action.Forward || code === BackendCode.ErrorResponse) {
      l.forward(buf, start, end);
    }
    if (code === BackendCode.CopyInResponse || code === BackendCode.CopyBothResponse) {
      l.mustFlush?.(); // the client must now send data: nothing may be held back
    }

    // Extended protocol: after an error the server discards messages until Sync (settle()).
    if (!this.settle(code)) return;
    if (code === BackendCode.ReadyForQuery) {
      this.txStatus = buf[start + 5];
      this.emitSimulated(l);
      if (ex.empty) l.ready(this.txStatus);
      else l.synced?.(this.txStatus);
      return;
    }
    this.emitSimulated(l);
  }

  onContinuation(buf: Buffer, start: number, end: number): void {
    const l = this.listener;
    if (l !== null && this.streamAction === Action.Forward) l.forward(buf, start, end);
  }

  onChunkEnd(): void {
    this.listener?.chunkEnd();
  }

  onProtocolError(message: string): void {
    this.fail(
      proxyError(ProxyErrorReason.ServerProtocolError, message),
      DisconnectReason.ProtocolError,
    );
  }

  // --- writing ---------------------------------------------------------------------------------

  /** Writes bytes to the server; false means its buffer is full (wait for 'drain'). */
  write(bytes: Buffer): boolean {
    const s = this.socket;
    if (s === null || this.closed) return true;
    this.bytesSent += bytes.length;
    this.lastSentAt = clock.now();
    return s.write(bytes);
  }

  cork(): void {
    this.socket?.cork();
  }

  uncork(): void {
    this.socket?.uncork();
  }

  /** Backpressure: stop reading server bytes until the client catches up. */
  pauseReading(): void {
    this.socket?.pause();
  }

  resumeReading(): void {
    this.socket?.resume();
  }

  onDrain(fn: () => void): void {
    this.socket?.once("drain", fn);
  }

  /**
   * Bytes written but not yet taken by the kernel (queued, or corked): while this is above 0 a
   * buffer written earlier may still be read, and must not be reused.
   */
  get queuedBytes(): number {
    return this.socket?.writableLength ?? 0;
  }

  get writableNeedDrain(): boolean {
    return this.socket?.writableNeedDrain ?? false;
  }

  /** Queues the simulated replies owed at the head right away (nothing from the server precedes them). */
  flushSimulated(): void {
    if (this.listener) this.emitSimulated(this.listener);
  }

  /** Closes the connection for good. Idempotent. */
  destroy(reason: DisconnectReason): void {
    if (this.closed) return;
    this.bad = true;
    this.closeReason ??= reason;
    const s = this.socket;
    if (s && !s.destroyed && this.loggedIn && reason !== DisconnectReason.Network) {
      // A polite Terminate lets the server end the session without logging an EOF.
      s.end(msg.terminateMessage);
      clock.after(1000, () => s.destroy());
    } else {
      s?.destroy();
    }
    this.finish();
  }

  /**
   * Sends a CancelRequest for whatever this server is running, on a new connection. The server
   * may move on while that connection opens (a round trip): `stillWanted` is asked again right
   * before the packet is written, so a cancel whose reason has passed is dropped instead of
   * hitting what the server runs next. Without it the cancel is sent unconditionally (for a
   * server about to be closed: its cancel key dies with its process, so no one else is hit).
   */
  cancel(stillWanted?: () => boolean): void {
    const a = this.options.address;
    const sock =
      "path" in a ? net.connect({ path: a.path }) : net.connect({ host: a.host, port: a.port });
    sock.on("error", () => sock.destroy());
    sock.setTimeout(5000, () => sock.destroy());
    sock.once("connect", () => {
      if (stillWanted !== undefined && !stillWanted()) {
        sock.destroy();
        return;
      }
      sock.end(msg.cancelRequest(this.pid, this.secret));
    });
  }

  // --- internals -------------------------------------------------------------------------------

  private emitSimulated(l: BackendListener): void {
    const ex = this.owed;
    while (!ex.empty && ex.headAction === Action.Simulate) {
      l.insert(ex.headPayload as Buffer);
      ex.shift();
    }
  }

  private recordParameter(
    buf: Buffer,
    start: number,
    end: number,
    l: BackendListener | null,
    ignored: boolean,
  ): void {
    const nameEnd = buf.indexOf(0, start + 5);
    if (nameEnd < 0 || nameEnd >= end) return;
    const name = buf.toString("utf8", start + 5, nameEnd);
    const value = buf.toString("utf8", nameEnd + 1, end - 1);
    this.params.set(name, value);
    this.settingsChanged();
    if (name === "in_hot_standby" || name === "default_transaction_read_only") this.checkRole();
    l?.parameter?.(name, value, ignored);
  }

  /**
   * A reported change of role (a writer turned read-only, a standby promoted) after login: a
   * server that no longer fits the pool's target_session_attrs is retired, at once when idle,
   * else when its client is done with it (or the client replays what it refused, see
   * UnitLoss.replayOnWriter).
   */
  private checkRole(): void {
    if (!this.loggedIn || this.roleMismatch) return;
    if (roleFits(this.options.target.targetSessionAttrs, serverRole(this.params))) return;
    this.roleMismatch = true;
    this.bad = true;
    this.closeReason ??= DisconnectReason.RoleChanged;
    if (this.listener === null) this.destroy(DisconnectReason.RoleChanged);
  }

  /** A message from an idle pooled server: only FATALs and parameter changes are expected. */
  private onIdleMessage(code: number, buf: Buffer, start: number, end: number): void {
    switch (code) {
      case BackendCode.ParameterStatus:
        this.recordParameter(buf, start, end, null, true);
        return;
      case BackendCode.NoticeResponse:
      case BackendCode.NotificationResponse:
        return;
      case BackendCode.ErrorResponse:
        this.fatal = serverErrorFrom(buf, start, end);
        this.bad = true;
        return;
      default:
        this.fail(
          proxyError(
            ProxyErrorReason.ServerProtocolError,
            `unexpected message '${String.fromCharCode(code)}' from idle server`,
          ),
          DisconnectReason.ProtocolError,
        );
    }
  }

  private onLoginMessage(code: number, buf: Buffer, start: number, end: number): void {
    switch (code) {
      case BackendCode.Authentication:
        this.login?.onAuthRequest(buf, start, end);
        return;
      case BackendCode.ParameterStatus:
        this.recordParameter(buf, start, end, null, true);
        return;
      case BackendCode.BackendKeyData:
        this.pid = buf.readInt32BE(start + 5);
        this.secret = Buffer.from(buf.subarray(start + 9, end));
        return;
      case BackendCode.ErrorResponse: {
        const err = serverErrorFrom(buf, start, end);
        this.closeReason = DisconnectReason.LoginFailed;
        this.login?.failed(err);
        this.destroy(DisconnectReason.LoginFailed);
        return;
      }
      case BackendCode.ReadyForQuery:
        this.txStatus = buf[start + 5];
        this.loggedIn = true;
        this.idleSince = clock.now();
        this.login?.succeeded();
        this.login = null;
        return;
      case BackendCode.NoticeResponse:
      case BackendCode.NegotiateProtocolVersion:
        return;
      default:
        this.fail(
          proxyError(
            ProxyErrorReason.ServerProtocolError,
            "unexpected message during server login",
          ),
          DisconnectReason.ProtocolError,
        );
    }
  }

  private fail(err: Error, reason: DisconnectReason): void {
    this.closeReason ??= reason;
    this.scanner.stop();
    this.socket?.destroy();
    this.login?.failed(err);
    this.finish();
  }

  private onSocketGone(err: NodeJS.ErrnoException | null): void {
    if (this.closed) return;
    if (err?.code === "ECONNRESET" || err?.code === "EPIPE") this.resetByPeer = true;
    let reason: DisconnectReason;
    if (this.fatal) reason = reasonForFatal(this.fatal.sqlstate);
    else reason = DisconnectReason.Network;
    if (!this.loggedIn) {
      const detail = err
        ? `${err.code ?? ""} ${err.message}`.trim()
        : "server closed the connection";
      // A certificate that fails verification will fail again: report it at once, no backoff.
      const failure = proxyError(
        isCertificateError(err) ? ProxyErrorReason.TlsVerify : ProxyErrorReason.ConnectFailed,
        `could not connect to server: ${detail}`,
      );
      if (err) failure.cause = err; // its code names the connect-failure reason
      this.fail(this.fatal ?? failure, reason);
      return;
    }
    this.closeReason ??= reason;
    this.finish();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.bad = true;
    this.socket?.destroy();
    const l = this.listener;
    this.listener = null;
    l?.lost(this.closeReason ?? DisconnectReason.Network, this.fatal);
    this.onClose?.(this);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get lastError(): ServerError | null {
    return this.fatal;
  }
}
