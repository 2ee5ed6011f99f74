// HTTP side of the admin surface: /metrics (Prometheus), the probes (/startup, /livez, /readyz,
// /healthz), /status (JSON) and POST /quitquitquit (drain and exit, from this machine only).

import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import http from "node:http";
import { isLoopbackHost } from "../loopback.js";
import type { Metrics } from "../metrics.js";

export interface HttpHandlers {
  metrics: Metrics;
  /** Listening and not draining (and, when configured, the upstream reachable). */
  ready(): boolean;
  /**
   * Started: listening (and, with startup_checks_upstream, each database reached once). Stays true
   * once true, through a drain. Absent: /startup answers as /livez.
   */
  started?(): boolean;
  /** Starts the drain SIGTERM starts (the process then exits 0). Absent: no /quitquitquit. */
  quit?(): void;
  status(): unknown;
  /** The password of `user` if it is an admin (admin_users, or admin: true in users), else null. */
  adminPassword(user: string): string | null;
}

/** Compared against when the user is unknown, so timing does not tell which users exist. */
const NO_PASSWORD = randomBytes(32);

export class AdminHttpServer {
  private server: http.Server | null = null;
  port = 0;

  constructor(
    private readonly handlers: HttpHandlers,
    /** Which peers count as this machine's own (tests pass another rule: they dial loopback only). */
    private readonly isLocalPeer: (address: string) => boolean = isLoopbackHost,
  ) {}

  async start(host: string, port: number): Promise<void> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: Error) => {
        res.statusCode = 500;
        res.end(`${err.message}\n`);
      });
    });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) =>
        reject(
          new Error(
            `cannot listen on ${host}:${port} (http_listen): ${err.code === "EADDRINUSE" ? "address already in use" : err.message}`,
          ),
        ),
      );
      server.listen(port, host, () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections?.();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = (req.url ?? "/").split("?")[0];
    switch (url) {
      case "/metrics": {
        const body = await this.handlers.metrics.registry.metrics();
        res.setHeader("Content-Type", this.handlers.metrics.registry.contentType);
        res.end(body);
        return;
      }
      case "/startup": {
        const ok = this.handlers.started?.() ?? true;
        res.statusCode = ok ? 200 : 503;
        res.end(ok ? "started\n" : "starting\n");
        return;
      }
      // Liveness: the process answers. Not tied to the upstream or to a drain: a restart would
      // not bring the database back, and a kill during a drain would cut what it lets finish.
      case "/livez":
      case "/healthz":
        res.end("ok\n");
        return;
      case "/readyz": {
        const ok = this.handlers.ready();
        res.statusCode = ok ? 200 : 503;
        res.end(ok ? "ready\n" : "not ready\n");
        return;
      }
      case "/status":
        // Every client's and server's address, user and database: /metrics and the probes stay
        // open (kubelet and Prometheus reach them from outside the pod), /status does not.
        if (!this.mayReadStatus(req)) {
          res.statusCode = 401;
          res.setHeader("WWW-Authenticate", 'Basic realm="pgsidecar", charset="UTF-8"');
          res.end("/status needs a loopback connection or an admin user's credentials\n");
          return;
        }
        res.setHeader("Content-Type", "application/json");
        res.end(`${JSON.stringify(this.handlers.status(), null, 2)}\n`);
        return;
      case "/quitquitquit":
        this.quit(req, res);
        return;
      default:
        res.statusCode = 404;
        res.end("not found\n");
    }
  }

  /**
   * POST /quitquitquit (as Cloud SQL Auth Proxy and Istio's pilot-agent): for a Job whose main
   * container finished, or a preStop hook. Only a peer on this machine may stop the sidecar, and
   * not a browser page on it: a cross-site form POST carries an Origin header.
   */
  private quit(req: http.IncomingMessage, res: http.ServerResponse): void {
    const quit = this.handlers.quit;
    if (quit === undefined) {
      res.statusCode = 404;
      res.end("not found\n");
      return;
    }
    if (req.method !== "POST") {
      res.statusCode = 405;
      res.setHeader("Allow", "POST");
      res.end("use POST\n");
      return;
    }
    const peer = req.socket.remoteAddress;
    if (peer === undefined || !this.isLocalPeer(peer) || req.headers.origin !== undefined) {
      res.statusCode = 403;
      res.end("/quitquitquit is accepted only from a loopback peer\n");
      return;
    }
    res.end("draining\n");
    // After the reply is handed to the socket: the drain ends by closing this server.
    setImmediate(quit);
  }

  /** A peer on this machine, or HTTP basic auth (RFC 7617) as an admin user. */
  private mayReadStatus(req: http.IncomingMessage): boolean {
    const peer = req.socket.remoteAddress;
    if (peer !== undefined && this.isLocalPeer(peer)) return true;
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(req.headers.authorization ?? "");
    if (m === null) return false;
    const decoded = Buffer.from(m[1], "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) return false;
    const expected = this.handlers.adminPassword(decoded.slice(0, colon));
    // Digests have one length, so the comparison takes as long for any password and any user.
    const given = sha256(decoded.slice(colon + 1));
    const match = timingSafeEqual(given, expected === null ? NO_PASSWORD : sha256(expected));
    return match && expected !== null;
  }
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}
